//! The echo server for the Autobahn|Testsuite server cases (`wstest -m fuzzingclient`).
//!
//! Echoes text as text and binary as binary on any path, with permessage-deflate on (the
//! 12.* and 13.* cases), the default limits (they pass every case) and no heartbeat.
//! Writes are coalesced: every message already received is queued before one flush.
//! `scripts/autobahn.sh server` runs the suite against `zap serve --deflate` itself; this
//! is the same server written with the library.
//!
//! ```text
//! cargo run --release --example autobahn_server -- 9001
//! /work/shared/conformance/server-suite.sh -c core ws://127.0.0.1:9001
//! ```
//!
//! The `ws` equivalent (Autobahn's own `ws` test server):
//!
//! ```js
//! const wss = new WebSocketServer({ port: 9001, perMessageDeflate: true });
//! wss.on('connection', (ws) => {
//!   ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
//! });
//! ```

use futures_util::{FutureExt, SinkExt};
use zapsocket::{DeflateConfig, Message, Server, WebSocket, WebSocketConfig, WebSocketSender};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let port = std::env::args().nth(1).map(|p| p.parse()).transpose()?.unwrap_or(9001);
    // The default limits (64 MiB messages, 16 MiB frames): Autobahn's 9.* cases pass
    // with them. No heartbeat: wstest answers pings, but a case should see only its own.
    let config = WebSocketConfig::default().no_heartbeat();
    // permessage-deflate on, for the 12.* and 13.* cases.
    let server = Server::builder()
        .host("127.0.0.1")
        .port(port)
        .config(config)
        .deflate(DeflateConfig::default())
        .track_clients(false)
        .bind()
        .await?;
    tracing::info!("autobahn echo server on ws://{}", server.local_addr());
    tokio::select! {
        result = server.serve(|ws| async move {
            if let Err(e) = echo(ws).await {
                tracing::debug!(error = %e, "connection failed");
            }
        }) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Echoes until the connection ends. `recv()` decodes what is already read; each data
/// message is fed into the sink, and the sink is flushed only when no further message
/// is ready, so a burst of messages costs one write.
async fn echo(ws: WebSocket) -> zapsocket::Result<()> {
    let (mut tx, mut rx) = ws.split();
    while let Some(message) = rx.recv().await {
        feed(&mut tx, message?).await?;
        while let Some(ready) = rx.recv().now_or_never() {
            match ready {
                Some(message) => feed(&mut tx, message?).await?,
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

/// `RUST_LOG`, or `info`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}
