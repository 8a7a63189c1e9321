//! An axum app with a JSON route and a WebSocket route on one port.
//!
//! Run: `cargo run --example axum_app`, then `curl http://127.0.0.1:3000/api/status` and
//! `zap connect ws://127.0.0.1:3000/ws`.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Extension, Json, Router};
use zapsocket::Server;
use zapsocket::axum::WebSocketUpgrade;

async fn status(Extension(upgrader): Extension<zapsocket::Upgrader>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "clients": upgrader.clients().len() }))
}

async fn ws(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if msg.is_data() && socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // The WebSocket settings (origins, caps, authorize hook, heartbeat) for the extractor.
    let upgrader = Server::builder().max_connections_per_ip(20).build_upgrader();
    let app =
        Router::new().route("/api/status", get(status)).route("/ws", get(ws)).layer(Extension(upgrader));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}
