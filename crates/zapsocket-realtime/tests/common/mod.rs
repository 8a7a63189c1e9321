//! Test helpers: a hub served on port 0, clients that record what they receive, raw
//! WebSocket clients for malformed input.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use zapsocket::{Message, WebSocket};
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, SUBPROTOCOL, SUBPROTOCOL_V2};

/// Serves `handler` on a reactor of two loops on 127.0.0.1, any port, speaking both
/// protocol versions; returns it and `ws://127.0.0.1:PORT/`.
pub fn serve_reactor(handler: zapsocket_realtime::HubHandler) -> (zapsocket::reactor::Running, String) {
    let running = zapsocket::reactor::Reactor::builder()
        .host("127.0.0.1")
        .port(0)
        .threads(2)
        .subprotocol(SUBPROTOCOL_V2)
        .subprotocol(SUBPROTOCOL)
        .start(move |_| handler.clone())
        .unwrap();
    let url = format!("ws://{}/", running.local_addr());
    (running, url)
}

/// Whether [`serve`] runs hubs on the reactor (`ZAP_HUB_HOST=reactor`).
pub fn on_reactor() -> bool {
    std::env::var("ZAP_HUB_HOST").as_deref() == Ok("reactor")
}

/// Serves `hub` on 127.0.0.1, any port, speaking both protocol versions; returns
/// `ws://127.0.0.1:PORT/`. The server stops with the test's runtime.
///
/// With `ZAP_HUB_HOST=reactor` in the environment, the hub runs on the reactor
/// (`Hub::reactor_handler`, two loops) instead: `scripts/test.sh` runs this crate's
/// tests both ways.
pub async fn serve(hub: &Hub) -> String {
    if on_reactor() {
        let (running, url) = serve_reactor(hub.reactor_handler(tokio::runtime::Handle::current()));
        // Stopped when the test's runtime ends (its tasks are gone with it).
        tokio::spawn(async move {
            struct Stop(zapsocket::reactor::Running);
            impl Drop for Stop {
                fn drop(&mut self) {
                    self.0.shutdown();
                }
            }
            let _stop = Stop(running);
            std::future::pending::<()>().await
        });
        return url;
    }
    let server = zapsocket::Server::builder()
        .subprotocol(SUBPROTOCOL_V2)
        .subprotocol(SUBPROTOCOL)
        .bind()
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let hub = hub.clone();
    tokio::spawn(server.serve(move |ws| hub.clone().handle(ws)));
    url
}

/// A client and every event it receives, in order, as (name, data).
pub struct Recorder {
    pub client: Client,
    rx: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Recorder {
    pub async fn connect(url: &str) -> Recorder {
        let client = Client::connect(url).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        client.on_any(move |name, data| {
            let _ = tx.send((name.to_owned(), serde_json::from_str(data).unwrap()));
        });
        Recorder { client, rx }
    }

    /// The next event, within 5 s.
    pub async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await.expect("no event in 5 s").unwrap()
    }

    /// The next event that is not presence (`$joined`, `$left`).
    pub async fn next_app(&mut self) -> (String, Value) {
        loop {
            let event = self.next().await;
            if !event.0.starts_with("$joined") && !event.0.starts_with("$left") {
                return event;
            }
        }
    }

    /// Every event up to the marker event `end` (excluded), skipping presence.
    pub async fn until_end(&mut self) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        loop {
            let event = self.next_app().await;
            if event.0 == "end" {
                return got;
            }
            got.push(event);
        }
    }

    /// Asserts that nothing arrives within 200 ms.
    pub async fn assert_silent(&mut self) {
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }
}

/// A raw WebSocket that has read `$hello`; returns it with the hello's data.
pub async fn raw(url: &str) -> (WebSocket, Value) {
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(url).await.unwrap();
    assert_eq!(ws.protocol(), Some(SUBPROTOCOL));
    let hello = recv_json(&mut ws).await;
    assert_eq!(hello["event"], "$hello");
    (ws, hello["data"].clone())
}

/// A raw version 2 WebSocket (`zap.v2`) that has read `$hello`.
pub async fn raw_v2(url: &str) -> WebSocket {
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL_V2).connect(url).await.unwrap();
    assert_eq!(ws.protocol(), Some(SUBPROTOCOL_V2));
    let hello = recv_json(&mut ws).await;
    assert_eq!(hello["data"]["version"], 2, "{hello}");
    ws
}

/// A version 2 binary frame, built by hand from docs/PROTOCOL.md: 0x02, the JSON's
/// length (u32, big-endian), the JSON, then each attachment's length and bytes.
pub fn frame(json: &Value, attachments: &[&[u8]]) -> Vec<u8> {
    let json = json.to_string();
    let mut out = vec![2];
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json.as_bytes());
    for a in attachments {
        out.extend_from_slice(&(a.len() as u32).to_be_bytes());
        out.extend_from_slice(a);
    }
    out
}

/// The next message, within 5 s: a text one as (JSON, no attachments), a binary one
/// read by hand as (JSON, attachments).
pub async fn recv_any(ws: &mut WebSocket) -> (Value, Vec<Vec<u8>>) {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.expect("nothing in 5 s");
    match message {
        Some(Ok(Message::Text(text))) => (serde_json::from_str(text.as_str()).unwrap(), Vec::new()),
        Some(Ok(Message::Binary(bytes))) => {
            assert_eq!(bytes[0], 2, "the format byte");
            let n = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            let json = serde_json::from_slice(&bytes[5..5 + n]).unwrap();
            let mut at = 5 + n;
            let mut attachments = Vec::new();
            while at < bytes.len() {
                let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                attachments.push(bytes[at + 4..at + 4 + len].to_vec());
                at += 4 + len;
            }
            assert_eq!(at, bytes.len(), "the lengths add up to the frame");
            (json, attachments)
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next text message as JSON, within 5 s.
pub async fn recv_json(ws: &mut WebSocket) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.expect("nothing in 5 s");
    match message {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `text` and returns the next message as JSON.
pub async fn exchange(ws: &mut WebSocket, text: &str) -> Value {
    ws.send(text).await.unwrap();
    recv_json(ws).await
}

/// Waits until `check` holds (polled every 10 ms), at most 5 s.
pub async fn eventually(check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s");
}
