//! The client driver for the Autobahn|Testsuite client cases (`wstest -m fuzzingserver`).
//!
//! Speaks the driver protocol of `shared/conformance/README.md`: read the base URL from
//! `AUTOBAHN_WS_URL` and the agent name from `AUTOBAHN_AGENT`, ask `getCaseCount`, run
//! every case one after the other (`runCase?case=i&agent=A`: echo every message with its
//! type until the connection ends; an error just ends the case), then `updateReports`.
//!
//! ```text
//! cargo build --release --example autobahn_client
//! /work/shared/conformance/client-suite.sh -c core target/release/examples/autobahn_client
//! ```
//!
//! The `ws` equivalent of one case:
//!
//! ```js
//! const ws = new WebSocket(`${base}/runCase?case=${i}&agent=${agent}`);
//! ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
//! await new Promise((resolve) => ws.on('close', resolve));
//! ```

use std::time::Duration;

use futures_util::{FutureExt, SinkExt};
use zapsocket::{Client, ClientBuilder, DeflateConfig, Message, WebSocket, WebSocketSender};

/// How long a case may take before the driver moves on: above wstest's own limit (480 s
/// for the largest 12.*/13.* cases), so that wstest decides. On a busy 2-core machine
/// 12.3.15-17 (1000 compressed 64-128 KiB messages in 256-byte fragments) took over 120 s.
const CASE_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("AUTOBAHN_WS_URL").map_err(|_| "AUTOBAHN_WS_URL is not set")?;
    let agent = std::env::var("AUTOBAHN_AGENT").unwrap_or_else(|_| "zapsocket-client".to_owned());
    // The default client, as users get it (limits included). It offers permessage-deflate
    // (`permessage-deflate; client_max_window_bits`, its default) unless AUTOBAHN_DEFLATE=0
    // (`scripts/autobahn.sh client --no-deflate`: 12.* and 13.* then report UNIMPLEMENTED).
    let deflate = std::env::var("AUTOBAHN_DEFLATE").map_or(true, |v| v != "0");
    let client = Client::builder().deflate(deflate.then(DeflateConfig::default));

    let count = case_count(&client, &base).await?;
    eprintln!("autobahn_client: {count} cases, agent {agent}");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let ws = match client.clone().connect(&url).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("case {case}: cannot connect: {e}");
                continue;
            }
        };
        if tokio::time::timeout(CASE_TIMEOUT, run_case(ws)).await.is_err() {
            eprintln!("case {case}: still running after {CASE_TIMEOUT:?}, moving on");
        }
    }
    let mut ws = client.connect(&format!("{base}/updateReports?agent={agent}")).await?;
    while ws.recv().await.is_some() {}
    eprintln!("autobahn_client: reports updated");
    Ok(())
}

/// `getCaseCount`: one text message with the number of cases.
async fn case_count(client: &ClientBuilder, base: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let mut ws = client.clone().connect(&format!("{base}/getCaseCount")).await?;
    let mut count = None;
    while let Some(message) = ws.recv().await {
        if let Some(text) = message?.as_text() {
            count = Some(text.trim().parse()?);
        }
    }
    Ok(count.ok_or("getCaseCount sent no number")?)
}

/// Echoes until the connection ends, then waits for the transport to be released so
/// that the next case starts on a clean slate.
async fn run_case(ws: WebSocket) {
    let (mut tx, mut rx) = ws.split();
    let _ = echo(&mut tx, &mut rx).await;
    tx.closed().await;
}

/// The echo loop of `autobahn_server`: feed what is ready, flush when nothing is.
async fn echo(tx: &mut WebSocketSender, rx: &mut zapsocket::WebSocketReceiver) -> zapsocket::Result<()> {
    while let Some(message) = rx.recv().await {
        feed(tx, message?).await?;
        while let Some(ready) = rx.recv().now_or_never() {
            match ready {
                Some(message) => feed(tx, message?).await?,
                None => break,
            }
        }
        tx.flush().await?;
    }
    Ok(())
}

/// Queues a text or binary message as it came; pings were answered by the library.
async fn feed(tx: &mut WebSocketSender, message: Message) -> zapsocket::Result<()> {
    if message.is_data() {
        tx.feed(message).await?;
    }
    Ok(())
}
