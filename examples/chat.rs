//! A chat with rooms and names on the realtime layer (`zapsocket-realtime`).
//!
//! Each socket is named by the `name` query parameter (`/ws?name=ada`) or a `set_name`
//! event; it joins rooms with the protocol's `$join`; a `chat` event goes to every room
//! the sender is in, with the sender's name; members see `$joined`/`$left`.
//!
//! ```sh
//! cargo run --example chat             # a scripted conversation between two clients
//! cargo run --example chat -- --serve  # keep serving on ws://127.0.0.1:8080/ws
//! ```
//!
//! `zap serve` runs the same kind of hub at `/ws`, with a browser page at `/`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use ts_rs::TS;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, PresenceEvent, ReplyError, Socket};

/// What a client sends.
#[derive(Deserialize, TS)]
struct Chat {
    text: String,
}

/// What the room gets.
#[derive(Serialize, Deserialize, TS, Debug)]
struct Said {
    from: String,
    text: String,
}

#[derive(Deserialize, TS)]
struct SetName {
    name: String,
}

fn name_of(socket: &Socket) -> String {
    socket.public_data()["name"].as_str().unwrap_or("anonymous").to_owned()
}

/// The chat: names (public per-socket data, shown in presence) and relaying.
fn hub() -> Hub {
    let hub = Hub::new();
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_else(|| "anonymous".into());
        socket.set_public_data(json!({ "name": name }));
        Ok(())
    });
    hub.on("set_name", |socket: Socket, input: SetName| async move {
        socket.set_public_data(json!({ "name": input.name }));
    });
    hub.on("chat", |socket: Socket, chat: Chat| async move {
        let rooms = socket.rooms();
        if rooms.is_empty() {
            return Err(ReplyError::forbidden("join a room first"));
        }
        let said = Said { from: name_of(&socket), text: chat.text };
        // One message to all the sender's rooms: a member of several gets it once.
        let mut to = socket.hub().to(&rooms[0]);
        for room in &rooms[1..] {
            to = to.to(room);
        }
        to.emit("chat", &said)?;
        Ok(rooms.len()) // the reply: how many rooms it went to
    });
    hub.declare_event::<Said>("chat");
    hub
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let port = if serve { 8080 } else { 0 };
    let server =
        zapsocket::Server::builder().port(port).subprotocol(zapsocket_realtime::SUBPROTOCOL).bind().await?;
    let url = format!("ws://{}/ws", server.local_addr());
    let hub = hub();
    let serving = tokio::spawn(server.serve(move |ws| hub.clone().handle(ws)));
    if serve {
        println!("chat on {url}?name=YOU");
        serving.await??;
        return Ok(());
    }

    let ada = Client::connect(&format!("{url}?name=ada")).await?;
    let bob = Client::connect(&format!("{url}?name=bob")).await?;
    for (me, client) in [("ada", &ada), ("bob", &bob)] {
        client.on("chat", move |said: Said| println!("[{me}] {}: {}", said.from, said.text));
        client.on("$joined", move |e: PresenceEvent| {
            println!("[{me}] {} joined {}", e.member.data["name"].as_str().unwrap_or("?"), e.room)
        });
        client.on("$left", move |e: PresenceEvent| {
            println!("[{me}] {} left {}", e.member.data["name"].as_str().unwrap_or("?"), e.room)
        });
    }
    ada.join("lobby").await?;
    let joined = bob.join("lobby").await?;
    println!("[bob] lobby has {} members", joined.count);
    bob.emit_with_ack::<_, usize>("chat", &json!({"text": "hello, ada"})).await?;
    ada.emit_with_ack::<_, usize>("chat", &json!({"text": "hi bob"})).await?;
    bob.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    Ok(())
}
