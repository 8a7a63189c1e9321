//! JSON events: every message is an `{ "event": ..., "data": ... }` envelope, parsed with
//! serde into a typed enum. Some events get a reply, some are broadcast; anything that
//! does not parse gets an `error` event back. Bad input never panics the server.
//!
//! Events a client may send:
//!
//! | event   | data                           | what happens                                 |
//! |---------|--------------------------------|----------------------------------------------|
//! | `echo`  | any JSON                       | `{ "event": "echo", "data": <same> }` back   |
//! | `chat`  | `{ "user": ..., "text": ... }` | `chat` broadcast to every client             |
//! | `count` | none                           | `{ "event": "count", "data": <clients> }`    |
//!
//! Run it with `cargo run --example json_messages [PORT]` (default 8080), then:
//!
//! ```text
//! $ zap connect ws://127.0.0.1:8080
//! > {"event":"chat","data":{"user":"ada","text":"hi"}}
//! < {"event":"chat","data":{"user":"ada","text":"hi"}}
//! > {"event":"nope"}
//! < {"event":"error","data":{"message":"unknown variant `nope`, expected one of ..."}}
//! ```
//!
//! The same server with Node's `ws`:
//!
//! ```js
//! wss.on('connection', (ws) => {
//!   ws.on('message', (raw) => {
//!     let msg;
//!     try { msg = JSON.parse(raw); } catch (e) {
//!       return ws.send(JSON.stringify({ event: 'error', data: { message: e.message } }));
//!     }
//!     switch (msg.event) {
//!       case 'echo': return ws.send(JSON.stringify({ event: 'echo', data: msg.data }));
//!       case 'chat': {
//!         const out = JSON.stringify({ event: 'chat', data: msg.data });
//!         return wss.clients.forEach((c) => c.send(out));
//!       }
//!       case 'count': return ws.send(JSON.stringify({ event: 'count', data: wss.clients.size }));
//!       default: ws.send(JSON.stringify({ event: 'error', data: { message: 'unknown event' } }));
//!     }
//!   });
//! });
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zapsocket::{Clients, Message, Server, WebSocket};

/// What clients send: the `event` field picks the variant, `data` is its content.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "lowercase")]
enum Incoming {
    Echo(Value),
    Chat(Chat),
    Count,
}

/// What the server sends, in the same envelope.
#[derive(Debug, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "lowercase")]
enum Outgoing {
    Echo(Value),
    Chat(Chat),
    Count(usize),
    Error { message: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Chat {
    user: String,
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let server = Server::builder().host("127.0.0.1").port(port()).bind().await?;
    tracing::info!("JSON events on ws://{}", server.local_addr());
    let clients = server.clients();
    let serving = server.serve(move |ws| handle(ws, clients.clone()));
    tokio::select! {
        result = serving => result?,
        _ = tokio::signal::ctrl_c() => tracing::info!("bye"),
    }
    Ok(())
}

async fn handle(mut ws: WebSocket, clients: Clients) {
    while let Some(Ok(message)) = ws.recv().await {
        // Text or binary, the payload must be a JSON envelope; pings and pongs are not.
        if !message.is_data() {
            continue;
        }
        let reply = match serde_json::from_slice::<Incoming>(message.as_bytes()) {
            Ok(Incoming::Echo(data)) => Outgoing::Echo(data),
            Ok(Incoming::Chat(chat)) => {
                // Encoded once, sent to everyone (the sender included).
                clients.broadcast(encode(&Outgoing::Chat(chat)));
                continue;
            }
            Ok(Incoming::Count) => Outgoing::Count(clients.len()),
            // Invalid JSON, an unknown event or a bad `data`: tell the client why.
            Err(e) => Outgoing::Error { message: e.to_string() },
        };
        if ws.send(encode(&reply)).await.is_err() {
            break;
        }
    }
}

/// Serializes an event as a text message.
fn encode(event: &Outgoing) -> Message {
    // Serializing these types cannot fail (plain structs, string keys); should it ever,
    // the client gets an error event rather than the server a panic.
    let json = serde_json::to_string(event).unwrap_or_else(|e| {
        serde_json::json!({ "event": "error", "data": { "message": format!("cannot encode: {e}") } })
            .to_string()
    });
    Message::text(json)
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
