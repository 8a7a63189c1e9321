//! The hub of `zap serve` (docs/PROTOCOL.md, *zap serve's built-in chat*).

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{Recorder, serve};
use serde_json::{Value, json};
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, ReplyError, demo};

#[tokio::test]
async fn chat_goes_to_the_senders_rooms_with_its_name() {
    let hub = demo::hub(Hub::new());
    let url = serve(&hub).await;
    let mut ada = Recorder::connect(&format!("{url}?name=ada")).await;
    let mut bob = Recorder::connect(&format!("{url}?name=%20bob%20")).await;
    let mut guest = Recorder::connect(&url).await;
    let members = ada.client.join("lobby").await.unwrap();
    assert_eq!(members.members[0].data, json!({"name": "ada"}));
    bob.client.join("lobby").await.unwrap();
    bob.client.join("games").await.unwrap();
    guest.client.join("games").await.unwrap();
    let reply: Value = bob.client.emit_with_ack("chat", &json!({"text": "hi"})).await.unwrap();
    assert_eq!(reply, json!({"rooms": ["games", "lobby"]}));
    assert_eq!(ada.next_app().await, ("chat".into(), json!({"from": "bob", "text": "hi", "room": "lobby"})));
    let guest_got = guest.next_app().await.1;
    assert_eq!(guest_got["room"], "games");
    assert_eq!(bob.next_app().await.0, "chat", "the sender gets its own message");
    let reply: Value =
        bob.client.emit_with_ack("chat", &json!({"text": "lobby only", "room": "lobby"})).await.unwrap();
    assert_eq!(reply, json!({"rooms": ["lobby"]}));
    assert!(guest_got["from"].as_str().unwrap().starts_with("bob"));
    let name: Value = guest.client.emit_with_ack("set_name", &json!({"name": "cy"})).await.unwrap();
    assert_eq!(name, json!({"name": "cy"}));
    guest.client.emit("chat", &json!({"text": "yo"})).await.unwrap();
    assert_eq!(bob.next_app().await.1["text"], "hi");
    assert_eq!(bob.next_app().await.1["text"], "lobby only");
    assert_eq!(bob.next_app().await.1, json!({"from": "cy", "text": "yo", "room": "games"}));
}

#[tokio::test]
async fn chat_errors_follow_the_contract() {
    let hub = demo::hub(Hub::new());
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    let me = hub.socket(&client.session()).unwrap();
    assert!(me.public_data()["name"].as_str().unwrap().starts_with("guest-"));
    let code = |r: Result<Value, ReplyError>| r.unwrap_err().code.as_str().to_owned();
    assert_eq!(code(client.emit_with_ack("chat", &json!({"text": "x"})).await), "forbidden");
    client.join("a").await.unwrap();
    assert_eq!(code(client.emit_with_ack("chat", &json!({"text": "x", "room": "b"})).await), "forbidden");
    assert_eq!(code(client.emit_with_ack("chat", &json!({"text": ""})).await), "bad_payload");
    assert_eq!(code(client.emit_with_ack("chat", &json!({"text": "x".repeat(4097)})).await), "bad_payload");
    assert_eq!(code(client.emit_with_ack("set_name", &json!({"name": "  "})).await), "bad_payload");
    assert_eq!(code(client.emit_with_ack("set_name", &json!({"name": "x".repeat(33)})).await), "bad_payload");
}

#[tokio::test]
async fn helpers_echo_add_sleep_ask_fail() {
    let hub = demo::hub(Hub::new());
    let url = serve(&hub).await;
    let mut r = Recorder::connect(&url).await;
    let echoed: Value = r.client.emit_with_ack("echo", &json!([1, "two"])).await.unwrap();
    assert_eq!(echoed, json!([1, "two"]));
    r.client.emit("echo", &json!({"k": 1})).await.unwrap();
    assert_eq!(r.next().await, ("echo".into(), json!({"k": 1})));
    assert_eq!(r.client.offsets()[&format!("$s:{}", r.client.session())], 1);
    assert_eq!(r.client.call::<_, f64>("add", &json!({"a": 2, "b": 3.5})).await.unwrap(), 5.5);
    let err = r.client.call::<_, f64>("add", &json!({"a": 2})).await.unwrap_err();
    assert_eq!(err.code.as_str(), "bad_payload");
    let _: () = r.client.call("sleep", &json!({"ms": 10})).await.unwrap();
    assert_eq!(
        r.client.call::<_, ()>("sleep", &json!({"ms": 10001})).await.unwrap_err().code.as_str(),
        "bad_payload"
    );
    let err = r.client.call::<_, ()>("fail", &json!({"message": "boom"})).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.message.as_str()), ("handler_error", "boom"));

    r.client.on("q", |n: u32| Ok::<_, ReplyError>(n + 1));
    r.client.on("no", |_: Value| {
        Err::<(), _>(ReplyError::new(zapsocket_realtime::ErrorCode::new("nope"), "said no"))
    });
    let asked: Value = r.client.emit_with_ack("ask", &json!({"event": "q", "data": 41})).await.unwrap();
    assert_eq!(asked, json!(42));
    let err = r.client.emit_with_ack::<_, Value>("ask", &json!({"event": "no"})).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.message.as_str()), ("nope", "said no"));
    let err = r
        .client
        .emit_with_ack::<_, Value>("ask", &json!({"event": "unhandled_here", "timeout_ms": 100}))
        .await;
    assert_eq!(err.unwrap_err().code.as_str(), "unknown_event", "the client answers unknown_event");
    // A client that does not answer: `ask` fails with timeout.
    let (mut ws, _) = common::raw(&url).await;
    ws.send(r#"{"event":"ask","data":{"event":"q","timeout_ms":100},"ack":1}"#).await.unwrap();
    let asked = common::recv_json(&mut ws).await;
    assert_eq!((asked["event"].as_str(), asked["data"].is_null()), (Some("q"), true));
    let started = std::time::Instant::now();
    let reply = common::recv_json(&mut ws).await;
    assert_eq!(reply["error"]["code"], "timeout", "{reply}");
    assert!(started.elapsed() >= Duration::from_millis(50));
}
