//! The realtime hub on the reactor server (`Hub::reactor_handler`): each session is a
//! state machine on its connection's event loop, not a task; a handler that waits runs on
//! the tokio runtime beside the loop.
//!
//! The connect middleware reads the request (a `name` query parameter) and keeps what the
//! handlers need in the socket's data: on the reactor the request is not kept after the
//! connect middlewares (unless `keep_requests(true)`).
//!
//! ```sh
//! cargo run --example realtime_reactor             # a scripted exchange between two clients
//! cargo run --example realtime_reactor -- --serve  # keep serving on ws://127.0.0.1:8080/ws
//! ```
//!
//! `zap serve --reactor` serves its whole hub this way.

use std::time::Duration;

use serde_json::{Value, json};
use zapsocket::reactor::Reactor;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, ReplyError, SUBPROTOCOL, SUBPROTOCOL_V2, Socket};

fn hub() -> Hub {
    let hub = Hub::new();
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_else(|| "anonymous".into());
        socket.set_public_data(json!({ "name": name }));
        Ok(())
    });
    // Answered from the loop, in place: nothing in it waits.
    hub.on("chat", |socket: Socket, text: String| async move {
        let from = socket.public_data()["name"].clone();
        socket.to("lobby").emit("chat", &json!({ "from": from, "text": text }))
    });
    // Waits: spawned on the runtime, and its reply comes back through the connection's
    // handle; the socket's other messages go on meanwhile.
    hub.procedure("slow_add", |_: Socket, (a, b): (i64, i64)| async move {
        zapsocket::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, ReplyError>(a + b)
    });
    hub
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let handler = hub().reactor_handler(tokio::runtime::Handle::current());
    let running = Reactor::builder()
        .host("127.0.0.1")
        .port(if serve { 8080 } else { 0 })
        .path("/ws")
        .subprotocol(SUBPROTOCOL_V2)
        .subprotocol(SUBPROTOCOL)
        .start(move |_| handler.clone())?;
    let url = format!("ws://{}/ws", running.local_addr());
    if serve {
        println!("chat on {url}?name=YOU (on the reactor)");
        tokio::task::spawn_blocking(move || running.join()).await?;
        return Ok(());
    }

    let ada = Client::connect(&format!("{url}?name=ada")).await?;
    let bob = Client::connect(&format!("{url}?name=bob")).await?;
    bob.on("chat", |said: Value| println!("[bob] {}: {}", said["from"], said["text"]));
    ada.join("lobby").await?;
    bob.join("lobby").await?;
    ada.emit_with_ack::<_, Value>("chat", &"hello from the loop").await?;
    let sum: i64 = ada.call("slow_add", &(2, 3)).await?;
    println!("[ada] slow_add(2, 3) = {sum}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.shutdown();
    tokio::task::spawn_blocking(move || running.join()).await?;
    Ok(())
}
