//! An echo server: every text or binary message goes back to its sender, with its type.
//!
//! Run it with `cargo run --example echo_server [PORT]` (or `PORT=9000`; default 8080),
//! then talk to it with `zap connect ws://127.0.0.1:8080`. Ctrl-C stops it.
//!
//! The same server with Node's `ws`:
//!
//! ```js
//! import { WebSocketServer } from 'ws';
//!
//! const wss = new WebSocketServer({ host: '127.0.0.1', port: 8080 });
//! wss.on('connection', (ws) => {
//!   ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
//! });
//! ```

use zapsocket::{Server, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let server = Server::builder().host("127.0.0.1").port(port()).bind().await?;
    tracing::info!("echo server on ws://{}", server.local_addr());
    tokio::select! {
        result = server.serve(echo) => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    Ok(())
}

/// One connection: `ws.on('message', ...)` becomes a `recv()` loop.
async fn echo(mut ws: WebSocket) {
    tracing::info!(id = ws.id(), peer = ?ws.peer_addr(), "connected");
    while let Some(Ok(message)) = ws.recv().await {
        // Pings and pongs come through `recv()` too; the library already answered pings.
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
    // `recv()` returned `None`: the peer closed (or the connection failed).
    tracing::info!(id = ws.id(), close = ?ws.close_frame(), "disconnected");
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
