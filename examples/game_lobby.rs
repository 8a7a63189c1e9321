//! A game lobby with acks in both directions.
//!
//! Players `join_lobby` (the ack's reply is the lobby), mark themselves `ready`; once
//! every player is ready the server asks each one to `confirm` with an ack and a
//! 500 ms timeout, and starts the game with those who answered in time. Two players use
//! the Rust client and confirm; the third, on a raw WebSocket, never answers.
//!
//! ```sh
//! cargo run --example game_lobby
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, ReplyError, Socket};

const LOBBY: &str = "lobby";
const PLAYERS: usize = 3;

#[derive(Serialize, Deserialize, TS, Debug)]
struct Lobby {
    players: usize,
    needed: usize,
}

#[derive(Serialize, Deserialize, TS, Debug)]
struct Started {
    players: Vec<String>,
}

/// Whether a player is ready (private per-socket data).
#[derive(Clone)]
struct Ready;

fn hub() -> Hub {
    let hub = Hub::new();
    hub.on("join_lobby", |socket: Socket, (): ()| async move {
        let joined = socket.join(LOBBY).await?;
        Ok::<_, ReplyError>(Lobby { players: joined.count, needed: PLAYERS })
    });
    hub.on("ready", |socket: Socket, (): ()| async move {
        socket.set_data(Ready);
        let hub = socket.hub();
        let players: Vec<Socket> =
            hub.members(LOBBY).await?.iter().filter_map(|m| hub.socket(&m.id)).collect();
        if players.len() < PLAYERS || players.iter().any(|p| p.data::<Ready>().is_none()) {
            return Ok(false);
        }
        // Everyone is ready: ask each to confirm, at most 500 ms each, all at once.
        let asks = players.iter().map(|p| async move {
            let answer = p.timeout(Duration::from_millis(500)).emit_with_ack::<_, bool>("confirm", &()).await;
            (p.id().to_owned(), answer)
        });
        let mut confirmed = Vec::new();
        for (id, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(true) => confirmed.push(id),
                Ok(false) => println!("[server] {id} declined"),
                Err(e) => println!("[server] {id}: {e}"),
            }
        }
        hub.to(LOBBY).emit("started", &Started { players: confirmed })?;
        Ok::<_, ReplyError>(true)
    });
    hub.declare_event::<Started>("started");
    hub
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = zapsocket::Server::builder().subprotocol(zapsocket_realtime::SUBPROTOCOL).bind().await?;
    let url = format!("ws://{}/", server.local_addr());
    let hub = hub();
    tokio::spawn(server.serve(move |ws| hub.clone().handle(ws)));

    // Two players with the Rust client: they confirm.
    let mut waiting = Vec::new();
    for i in 0..2 {
        let client = Client::connect(&url).await?;
        client.on("confirm", |(): ()| Ok::<_, ReplyError>(true));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        client.on("started", move |s: Started| {
            let _ = tx.send(s);
        });
        let lobby: Lobby = client.emit_with_ack("join_lobby", &()).await?;
        println!("[player {i}] in the lobby: {}/{}", lobby.players, lobby.needed);
        let starting: bool = client.emit_with_ack("ready", &()).await?;
        println!("[player {i}] ready; starting: {starting}");
        waiting.push((i, client, rx));
    }
    // A third player on a raw WebSocket: it joins and is ready, but never answers
    // `confirm`, so the server's ack times out and the game starts without it.
    let mut raw =
        zapsocket::Client::builder().protocol(zapsocket_realtime::SUBPROTOCOL).connect(&url).await?;
    raw.send(r#"{"event":"join_lobby","ack":1}"#).await?;
    raw.send(r#"{"event":"ready","ack":2}"#).await?;
    while let Some(Ok(message)) = raw.recv().await {
        let text = message.as_text().unwrap_or_default();
        println!("[player 2] <- {text}");
        if text.starts_with(r#"{"reply":2"#) {
            break;
        }
    }
    for (i, _client, mut rx) in waiting {
        let started = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("closed")?;
        println!("[player {i}] game started with {} players", started.players.len());
    }
    Ok(())
}
