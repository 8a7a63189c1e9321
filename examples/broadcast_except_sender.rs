//! Broadcast to every other client: each message goes to everyone but its sender.
//!
//! Run it with `cargo run --example broadcast_except_sender [PORT]` (default 8080), open
//! two `zap connect ws://127.0.0.1:8080` and type in one: the other one prints it, the
//! sender does not. Ctrl-C stops it.
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
//!       if (client !== ws && client.readyState === WebSocket.OPEN) {
//!         client.send(data, { binary: isBinary });
//!       }
//!     });
//!   });
//! });
//! ```

use zapsocket::{Clients, Server, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let server = Server::builder().host("127.0.0.1").port(port()).bind().await?;
    tracing::info!("broadcast-except-sender server on ws://{}", server.local_addr());
    let clients = server.clients();
    let serving = server.serve(move |ws| relay(ws, clients.clone()));
    tokio::select! {
        result = serving => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    Ok(())
}

async fn relay(mut ws: WebSocket, clients: Clients) {
    // Connection ids are unique in the process: `client !== ws` becomes an id check.
    let me = ws.id();
    let joined = clients.broadcast_except(me, format!("client {me} joined"));
    tracing::info!(id = me, told = joined, "joined");
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() {
            clients.broadcast_except(me, message);
        }
    }
    clients.broadcast_except(me, format!("client {me} left"));
    tracing::info!(id = me, "left");
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
