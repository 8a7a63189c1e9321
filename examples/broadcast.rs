//! Broadcast to every client, the sender included: a minimal chat room.
//!
//! The server keeps the set of its open connections ([`zapsocket::Server::clients`]).
//! A broadcast encodes the message once and queues the same buffer on every connection
//! without waiting, so a slow client never holds back the others (a client whose send
//! queue is full is cut off: see `zapsocket::SlowConsumer`).
//!
//! Run it with `cargo run --example broadcast [PORT]` (default 8080), then open
//! several `zap connect ws://127.0.0.1:8080` and type. Ctrl-C stops it.
//!
//! The same server with Node's `ws`:
//!
//! ```js
//! import WebSocket, { WebSocketServer } from 'ws';
//!
//! const wss = new WebSocketServer({ host: '127.0.0.1', port: 8080 });
//! wss.on('connection', (ws) => {
//!   ws.on('message', (data, isBinary) => {
//!     wss.clients.forEach((client) => {
//!       if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
//!     });
//!   });
//! });
//! ```

use zapsocket::{Clients, Server, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let server = Server::builder().host("127.0.0.1").port(port()).bind().await?;
    tracing::info!("broadcast server on ws://{}", server.local_addr());
    // `wss.clients`: every open connection; closed ones leave the set by themselves.
    let clients = server.clients();
    let serving = server.serve(move |ws| relay(ws, clients.clone()));
    tokio::select! {
        result = serving => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    Ok(())
}

async fn relay(mut ws: WebSocket, clients: Clients) {
    tracing::info!(id = ws.id(), online = clients.len(), "joined");
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() {
            // Text stays text, binary stays binary; returns how many queued it.
            let delivered = clients.broadcast(message);
            tracing::debug!(id = ws.id(), delivered, "relayed");
        }
    }
    tracing::info!(id = ws.id(), "left");
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
