//! Binary data: echo binary messages, and send a file-like buffer to each new client,
//! whole or streamed in fragments.
//!
//! The "file" is one `Bytes` built at startup; sending it to a client clones the handle,
//! not the data. A client that sends the text `stream` gets it again in 64 KiB
//! fragments of one message (how `ws` streams with `send(chunk, { fin })`), useful when
//! the data is produced piece by piece.
//!
//! Run it with `cargo run --example binary_data [PORT]` (default 8080), then
//! `zap connect ws://127.0.0.1:8080` and type `stream`. Ctrl-C stops it.
//!
//! The same server with Node's `ws`:
//!
//! ```js
//! const file = Buffer.alloc(256 * 1024, 'z');
//! wss.on('connection', (ws) => {
//!   ws.send(file);                                    // a Buffer is sent as binary
//!   ws.on('message', (data, isBinary) => {
//!     if (isBinary) return ws.send(data);             // binary echo
//!     if (data.toString() === 'stream') {
//!       for (let at = 0; at < file.length; at += 65536) {
//!         ws.send(file.subarray(at, at + 65536), { fin: at + 65536 >= file.length });
//!       }
//!     }
//!   });
//! });
//! ```

use bytes::Bytes;
use zapsocket::{Message, Server, WebSocket};

/// The size of each fragment when streaming.
const CHUNK: usize = 64 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    // 256 KiB of data standing in for a file read once (`tokio::fs::read` would do).
    let file: Bytes = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect::<Vec<u8>>().into();
    let server = Server::builder().host("127.0.0.1").port(port()).bind().await?;
    tracing::info!("binary server on ws://{}", server.local_addr());
    let serving = server.serve(move |ws| handle(ws, file.clone()));
    tokio::select! {
        result = serving => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    Ok(())
}

async fn handle(mut ws: WebSocket, file: Bytes) {
    // `Bytes` is reference-counted: every client shares the one buffer.
    if ws.send(Message::Binary(file.clone())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = ws.recv().await {
        let sent = match message {
            Message::Binary(data) => {
                tracing::info!(id = ws.id(), bytes = data.len(), "binary message, echoing it");
                ws.send(Message::Binary(data)).await
            }
            Message::Text(text) if text.as_str() == "stream" => stream(&ws, &file).await,
            Message::Text(_) => ws.send("send binary data, or `stream`").await,
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
}

/// Sends `file` as one binary message in [`CHUNK`]-sized fragments. Each `slice` shares
/// the buffer; the first fragment gives the message its type, `fin` ends it.
async fn stream(ws: &WebSocket, file: &Bytes) -> zapsocket::Result<()> {
    let mut at = 0;
    loop {
        let end = (at + CHUNK).min(file.len());
        let last = end == file.len();
        ws.send_fragment(Message::Binary(file.slice(at..end)), last).await?;
        if last {
            return Ok(());
        }
        at = end;
    }
}

/// The port: the first argument, else `$PORT`, else 8080.
fn port() -> u16 {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

/// `RUST_LOG`, or `info`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}
