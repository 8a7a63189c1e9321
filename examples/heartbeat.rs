//! Heartbeat: the server pings every client on an interval and drops the ones that stop
//! answering (a laptop that went to sleep, a cable pulled: TCP alone may not notice for
//! hours).
//!
//! With `ServerBuilder::heartbeat(interval, timeout)` the library does what `ws` users
//! write by hand: a ping every `interval`, and a peer that stays silent for `timeout`
//! after it is terminated without a close handshake. Its handler then sees `recv()`
//! return `None` and [`zapsocket::WebSocket::close_frame`] report 1006 (abnormal
//! closure). Any frame from the peer counts as a sign of life, not only the pong.
//!
//! To show it, this example also starts a client that stops answering: a zapsocket
//! client answers pings while its application reads (`recv()`), and this one never
//! reads. About `INTERVAL + TIMEOUT` later the server logs that it dropped it with 1006.
//! A live client (`zap connect ws://127.0.0.1:8080`) stays connected.
//!
//! Run it with `cargo run --example heartbeat [PORT]` (default 8080). Ctrl-C stops it.
//!
//! The same server with Node's `ws`:
//!
//! ```js
//! function heartbeat() { this.isAlive = true; }
//!
//! wss.on('connection', (ws) => {
//!   ws.isAlive = true;
//!   ws.on('pong', heartbeat);
//!   ws.on('close', (code) => console.log('closed', code));   // 1006 once terminated
//! });
//!
//! const interval = setInterval(() => {
//!   wss.clients.forEach((ws) => {
//!     if (ws.isAlive === false) return ws.terminate();
//!     ws.isAlive = false;
//!     ws.ping();
//!   });
//! }, 2000);
//! wss.on('close', () => clearInterval(interval));
//! ```

use std::time::Duration;

use zapsocket::{Client, CloseCode, Server, WebSocket};

/// How often the server pings. Short here for the demonstration; 30 s is the default.
const INTERVAL: Duration = Duration::from_secs(2);
/// How long a peer may stay silent after a ping.
const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let server = Server::builder().host("127.0.0.1").port(port()).heartbeat(INTERVAL, TIMEOUT).bind().await?;
    let url = format!("ws://{}", server.local_addr());
    tracing::info!("heartbeat server on {url}: ping every {INTERVAL:?}, {TIMEOUT:?} to answer");
    let serving = tokio::spawn(server.serve(handle));

    // The unresponsive client: connected, but it never reads, so it never answers.
    let frozen = Client::connect(&url).await?;
    tracing::info!(id = frozen.id(), "started a client that will not answer pings");

    tokio::select! {
        result = serving => result??,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    drop(frozen);
    Ok(())
}

async fn handle(mut ws: WebSocket) {
    let peer = ws.peer_addr();
    tracing::info!(id = ws.id(), ?peer, "connected");
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
    match ws.close_frame() {
        Some(frame) if frame.code == CloseCode::ABNORMAL => {
            tracing::warn!(id = ws.id(), ?peer, reason = %frame.reason, "dropped a dead peer (1006)")
        }
        Some(frame) => {
            tracing::info!(id = ws.id(), code = %frame.code, reason = %frame.reason, "closed")
        }
        None => tracing::info!(id = ws.id(), "closed without a close frame"),
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
