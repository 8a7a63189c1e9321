//! socket.io's event API on the server: catch-all listeners (`on_any`), async
//! middlewares, the `disconnecting` and `disconnect` hooks, and several hubs on one
//! server as namespaces. Through real sockets.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, exchange, raw, recv_json, serve};
use serde_json::{Value, json};
use zapsocket_realtime::{Hub, Hubs, ReplyError, Socket};

/// What the hooks saw, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn on_any_sees_every_client_event_after_the_middlewares_and_before_its_handler() {
    let hub = Hub::new();
    let seen = log();
    let s = seen.clone();
    hub.use_event(
        |_: &Socket, name: &str, _: &str| {
            if name == "blocked" { Err(ReplyError::forbidden("not this one")) } else { Ok(()) }
        },
    );
    hub.on_any(move |socket: &Socket, name: &str, data: &str| {
        assert!(!socket.id().is_empty());
        s.lock().unwrap().push(format!("any {name} {data}"));
    });
    let s = seen.clone();
    hub.on("greet", move |_: Socket, who: String| {
        s.lock().unwrap().push(format!("handler {who}"));
        async move { Ok::<_, ReplyError>(format!("hi {who}")) }
    });
    hub.on("blocked", |_: Socket, _: Value| async move { Ok::<_, ReplyError>(()) });
    hub.procedure("add", |_: Socket, (a, b): (i64, i64)| async move { Ok::<_, ReplyError>(a + b) });
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;

    let reply = exchange(&mut ws, r#"{"event":"greet","data":"ada","ack":1}"#).await;
    assert_eq!(reply, json!({"reply": 1, "data": "hi ada"}));
    assert_eq!(take(&seen), ["any greet \"ada\"", "handler ada"]);

    // No handler, no ack: the catch-all listener had it; no unknown_event warning.
    ws.send(r#"{"event":"note","data":{"x":1}}"#).await.unwrap();
    // With an ack it still needs a handler to answer.
    let reply = exchange(&mut ws, r#"{"event":"note","data":2,"ack":2}"#).await;
    assert_eq!(reply["error"]["code"], "unknown_event", "{reply}");
    // Refused by a middleware: never seen. Procedure calls and room requests are not events.
    let reply = exchange(&mut ws, r#"{"event":"blocked","data":null,"ack":3}"#).await;
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    assert_eq!(exchange(&mut ws, r#"{"call":"add","data":[2,3],"ack":4}"#).await["data"], 5);
    assert_eq!(exchange(&mut ws, r#"{"event":"$join","data":{"room":"r"},"ack":5}"#).await["reply"], 5);
    assert_eq!(take(&seen), [r#"any note {"x":1}"#]);
}

#[tokio::test]
async fn async_middlewares_run_in_order_with_the_others_before_events_calls_and_room_requests() {
    let hub = Hub::new();
    let order = log();
    let o = order.clone();
    hub.use_event(move |_: &Socket, name: &str, _: &str| {
        o.lock().unwrap().push(format!("first {name}"));
        Ok(())
    });
    let o = order.clone();
    hub.use_event_async(move |socket: Socket, name: String, data: String| {
        let o = o.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await; // as a database would
            o.lock().unwrap().push(format!("async {name}"));
            let refused = data.contains("secret") || (name == "admin" && socket.data::<bool>() != Some(true));
            if refused { Err(ReplyError::forbidden(format!("no {name}"))) } else { Ok(()) }
        }
    });
    let o = order.clone();
    hub.use_event(move |_: &Socket, name: &str, _: &str| {
        o.lock().unwrap().push(format!("last {name}"));
        Ok(())
    });
    hub.on("echo", |_: Socket, v: Value| async move { Ok::<_, ReplyError>(v) });
    hub.on("admin", |_: Socket, _: Value| async move { Ok::<_, ReplyError>("done") });
    hub.procedure("add", |_: Socket, (a, b): (i64, i64)| async move { Ok::<_, ReplyError>(a + b) });
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;

    assert_eq!(
        exchange(&mut ws, r#"{"event":"echo","data":7,"ack":1}"#).await,
        json!({"reply": 1, "data": 7})
    );
    assert_eq!(take(&order), ["first echo", "async echo", "last echo"]);
    let refused = exchange(&mut ws, r#"{"event":"admin","data":null,"ack":2}"#).await;
    assert_eq!(refused["error"], json!({"code": "forbidden", "message": "no admin"}));
    assert_eq!(take(&order), ["first admin", "async admin"], "a refusal stops the chain");
    assert_eq!(exchange(&mut ws, r#"{"call":"add","data":[1,2],"ack":3}"#).await["data"], 3);
    let join = exchange(&mut ws, r#"{"event":"$join","data":{"room":"secret"},"ack":4}"#).await;
    assert_eq!(join["error"]["code"], "forbidden", "{join}");
    let join = exchange(&mut ws, r#"{"event":"$join","data":{"room":"open"},"ack":5}"#).await;
    assert_eq!(join["reply"], 5, "{join}");
    // Without an ack, a refusal is an $error event.
    ws.send(r#"{"event":"admin","data":null}"#).await.unwrap();
    let error = recv_json(&mut ws).await;
    assert_eq!(
        (error["event"].as_str(), error["data"]["code"].as_str()),
        (Some("$error"), Some("forbidden"))
    );
}

#[tokio::test]
async fn disconnecting_still_sees_the_rooms_and_disconnect_comes_after_they_were_left() {
    let hub = Hub::new();
    let events = log();
    let e = events.clone();
    let h = hub.clone();
    hub.on_disconnecting(move |socket: &Socket| {
        let mut rooms = socket.rooms();
        rooms.retain(|r| !r.starts_with('$'));
        rooms.sort();
        let here = h.socket(socket.id()).is_some();
        e.lock().unwrap().push(format!("disconnecting {} {here}", rooms.join(",")));
    });
    let e = events.clone();
    let h = hub.clone();
    hub.on_disconnect(move |socket: &Socket| {
        let mut rooms = socket.rooms();
        rooms.retain(|r| !r.starts_with('$'));
        let still_member = h.socket(socket.id()).is_some();
        e.lock().unwrap().push(format!("disconnect {} {still_member}", rooms.join(",")));
    });
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    for (ack, room) in [(1, "game"), (2, "chat")] {
        let reply =
            exchange(&mut ws, &format!(r#"{{"event":"$join","data":{{"room":"{room}"}},"ack":{ack}}}"#))
                .await;
        assert_eq!(reply["reply"], ack);
    }
    assert!(take(&events).is_empty());
    ws.close(zapsocket::CloseCode::NORMAL, "bye").await.unwrap();
    eventually(|| events.lock().unwrap().len() == 2).await;
    assert_eq!(take(&events), ["disconnecting chat,game true", "disconnect  false"]);
}

#[tokio::test]
async fn hubs_on_their_own_paths_are_namespaces_with_their_own_middlewares_and_rooms() {
    let chat = Hub::new();
    chat.on("where", |_: Socket, _: Value| async move { Ok::<_, ReplyError>("chat") });
    let admin = Hub::new();
    admin.use_connect(|socket: Socket| async move {
        let token = socket.request().and_then(|r| r.query_param("token"));
        if token.as_deref() == Some("secret") { Ok(()) } else { Err(ReplyError::forbidden("admins only")) }
    });
    admin.on("where", |_: Socket, _: Value| async move { Ok::<_, ReplyError>("admin") });
    let hubs = Hubs::new().at("/chat", chat.clone()).at("/admin", admin.clone());
    assert_eq!(hubs.paths().collect::<Vec<_>>(), ["/chat", "/admin"]);
    let server = hubs.configure(zapsocket::Server::builder()).bind().await.unwrap();
    let base = format!("ws://{}", server.local_addr());
    let h = hubs.clone();
    tokio::spawn(server.serve(move |ws| h.handle(ws)));

    let (mut in_chat, _) = raw(&format!("{base}/chat")).await;
    let (mut in_admin, _) = raw(&format!("{base}/admin?token=secret")).await;
    assert_eq!(exchange(&mut in_chat, r#"{"event":"where","data":null,"ack":1}"#).await["data"], "chat");
    assert_eq!(exchange(&mut in_admin, r#"{"event":"where","data":null,"ack":1}"#).await["data"], "admin");
    // Rooms and broadcasts are each hub's own.
    for ws in [&mut in_chat, &mut in_admin] {
        assert_eq!(exchange(ws, r#"{"event":"$join","data":{"room":"lobby"},"ack":2}"#).await["reply"], 2);
    }
    chat.to("lobby").emit("news", &"for chat").unwrap();
    let got = recv_json(&mut in_chat).await;
    assert_eq!((got["event"].as_str(), &got["data"]), (Some("news"), &json!("for chat")));
    assert_eq!(admin.members("lobby").await.unwrap().len(), 1);
    // The admin hub's middleware refuses a client without the token; chat's does not run.
    let mut refused = zapsocket::Client::builder()
        .protocol(zapsocket_realtime::SUBPROTOCOL)
        .connect(&format!("{base}/admin"))
        .await
        .unwrap();
    let error = recv_json(&mut refused).await;
    assert_eq!(error["data"]["code"], "forbidden", "{error}");
    // A path no hub serves is refused at the handshake.
    let unknown = zapsocket::Client::connect(&format!("{base}/nowhere")).await.unwrap_err();
    assert!(unknown.to_string().contains("404"), "{unknown}");
    // In the admin hub, the chat emit was never seen.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ws_is_quiet(&mut in_admin).await;
}

async fn ws_is_quiet(ws: &mut zapsocket::WebSocket) {
    if let Ok(message) = tokio::time::timeout(Duration::from_millis(200), ws.recv()).await {
        panic!("unexpected {message:?}");
    }
}

#[tokio::test]
async fn rooms_and_recent_disconnects_are_listed_with_counts_and_reasons() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let (mut ada, ada_hello) = raw(&url).await;
    let (mut bob, _) = raw(&url).await;
    for (ws, rooms) in [(&mut ada, ["lobby", "games"]), (&mut bob, ["lobby", "chess"])] {
        for (ack, room) in rooms.iter().enumerate() {
            let join = format!(r#"{{"event":"$join","data":{{"room":"{room}"}},"ack":{}}}"#, ack + 1);
            ws.send(join).await.unwrap();
        }
    }
    eventually(|| hub.rooms().len() == 3).await;
    let rooms = hub.rooms();
    assert_eq!(rooms, [("chess".to_owned(), 1), ("games".to_owned(), 1), ("lobby".to_owned(), 2)]);
    ada.close(zapsocket::CloseCode(4001), "gone fishing").await.unwrap();
    eventually(|| !hub.recent_disconnects().is_empty()).await;
    let d = &hub.recent_disconnects()[0];
    assert_eq!(
        (d.session.as_str(), d.code, d.reason.as_str()),
        (ada_hello["session"].as_str().unwrap(), Some(4001), "gone fishing")
    );
    assert!(d.at.elapsed().unwrap() < Duration::from_secs(5));
    eventually(|| hub.rooms() == [("chess".to_owned(), 1), ("lobby".to_owned(), 1)]).await;
    drop(bob); // a dropped WebSocket closes politely
    eventually(|| hub.recent_disconnects().len() == 2).await;
    assert_eq!(hub.recent_disconnects()[1].code, Some(1000), "{:?}", hub.recent_disconnects());
}
