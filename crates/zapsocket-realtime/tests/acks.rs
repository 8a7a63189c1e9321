//! Acks both ways, their timeouts and limits, typed handlers and procedures.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{Recorder, exchange, raw, recv_json, serve};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::ts_rs::TS;
use zapsocket_realtime::{Hub, HubConfig, ReplyError, Socket};

#[derive(Debug, Deserialize, Serialize, TS)]
struct AddInput {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize, Serialize, TS, PartialEq)]
struct AddOutput {
    sum: i64,
}

#[derive(Debug, Deserialize, TS)]
struct Chat {
    text: String,
}

fn hub(config: HubConfig) -> Hub {
    let hub = Hub::builder().config(config).build();
    hub.procedure("add", |_: Socket, input: AddInput| async move {
        input.a.checked_add(input.b).map(|sum| AddOutput { sum }).ok_or("overflow")
    });
    hub.procedure("slow", |_: Socket, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, ReplyError>(ms)
    });
    hub.on("chat", |_: Socket, chat: Chat| async move { Ok::<_, ReplyError>(chat.text.len()) });
    hub.on("nothing", |_: Socket, _: serde_json::Value| async move {});
    hub.on("refuse", |_: Socket, _: serde_json::Value| async move {
        Err::<(), _>(ReplyError::forbidden("no entry"))
    });
    hub
}

#[tokio::test]
async fn procedures_are_typed_both_ways() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    let out: AddOutput = client.call("add", &AddInput { a: 2, b: 3 }).await.unwrap();
    assert_eq!(out, AddOutput { sum: 5 });
    let err = client.call::<_, AddOutput>("add", &AddInput { a: i64::MAX, b: 1 }).await.unwrap_err();
    assert_eq!((err.code.as_str(), err.message.as_str()), ("handler_error", "overflow"));
    let err = client.call::<_, AddOutput>("add", &json!({"a": 1})).await.unwrap_err();
    assert_eq!(err.code.as_str(), "bad_payload");
    assert!(err.message.contains("missing field `b`"), "serde's message: {}", err.message);
    let err = client.call::<_, AddOutput>("add", &json!({"a": "x", "b": 1})).await.unwrap_err();
    assert!(err.message.contains("invalid type: string \"x\", expected i64"), "{}", err.message);
    let err = client.call::<_, ()>("nope", &1).await.unwrap_err();
    assert_eq!(err.code.as_str(), "unknown_procedure");
}

#[tokio::test]
async fn client_acks_are_answered_by_handler_results() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    let len: usize = client.emit_with_ack("chat", &json!({"text": "hello"})).await.unwrap();
    assert_eq!(len, 5);
    let unit: () = client.emit_with_ack("nothing", &1).await.unwrap();
    assert_eq!(unit, ());
    let err = client.emit_with_ack::<_, ()>("refuse", &1).await.unwrap_err();
    assert_eq!(err, ReplyError::forbidden("no entry"), "a ReplyError keeps its code");
    let err = client.emit_with_ack::<_, usize>("chat", &json!({"txt": 1})).await.unwrap_err();
    assert_eq!(err.code.as_str(), "bad_payload");
    assert!(err.message.contains("missing field `text`"), "{}", err.message);
}

#[tokio::test]
async fn a_client_request_times_out_locally_and_the_late_reply_is_ignored() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let client = Client::builder().ack_timeout(Duration::from_millis(100)).connect(&url).await.unwrap();
    let err = client.call::<_, u64>("slow", &400).await.unwrap_err();
    assert_eq!(err.code.as_str(), "timeout");
    // The late reply arrives and is dropped; later requests still work.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fast: u64 = client.call("slow", &1).await.unwrap();
    assert_eq!(fast, 1);
}

#[tokio::test]
async fn server_acks_resolve_with_the_client_reply() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    client.on("question", |n: u32| Ok::<_, ReplyError>(n * 2));
    client.on("refused", |_: u32| Err::<u32, _>(ReplyError::forbidden("not telling")));
    let socket = hub.socket(&client.session()).unwrap();
    let answer: u32 = socket.emit_with_ack("question", &21).await.unwrap();
    assert_eq!(answer, 42);
    let err = socket.emit_with_ack::<_, u32>("refused", &1).await.unwrap_err();
    assert_eq!(err, ReplyError::forbidden("not telling"));
    let err = socket.emit_with_ack::<_, u32>("unhandled", &1).await.unwrap_err();
    assert_eq!(err.code.as_str(), "unknown_event");
    let err = socket.emit_with_ack::<_, u32>("question", &"not a number").await.unwrap_err();
    assert_eq!(err.code.as_str(), "bad_payload");
}

#[tokio::test]
async fn a_server_ack_times_out_when_the_client_stays_silent() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, hello) = raw(&url).await;
    let socket = hub.socket(hello["session"].as_str().unwrap()).unwrap();
    let started = std::time::Instant::now();
    let ask = tokio::spawn(async move {
        socket.timeout(Duration::from_millis(150)).emit_with_ack::<_, u32>("q", &1).await
    });
    let request = recv_json(&mut ws).await;
    assert_eq!(request, json!({"event": "q", "data": 1, "ack": request["ack"]}), "not recorded: no rooms");
    let err = ask.await.unwrap().unwrap_err();
    assert_eq!(err.code.as_str(), "timeout");
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A late reply is ignored: no error comes back for it.
    ws.send(format!(r#"{{"reply":{},"data":5}}"#, request["ack"])).await.unwrap();
    assert_eq!(exchange(&mut ws, r#"{"call":"add","data":{"a":1,"b":1},"ack":9}"#).await["data"]["sum"], 2);
}

#[tokio::test]
async fn server_acks_fail_when_the_client_disconnects() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (ws, hello) = raw(&url).await;
    let socket = hub.socket(hello["session"].as_str().unwrap()).unwrap();
    let ask = tokio::spawn(async move { socket.emit_with_ack::<_, u32>("q", &1).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(ws);
    let err = tokio::time::timeout(Duration::from_secs(5), ask).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.code.as_str(), "disconnected");
}

#[tokio::test]
async fn pending_server_acks_are_bounded() {
    let mut config = HubConfig::default();
    config.max_pending_acks = 2;
    let hub = hub(config);
    let url = serve(&hub).await;
    let (_ws, hello) = raw(&url).await;
    let socket = hub.socket(hello["session"].as_str().unwrap()).unwrap();
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let socket = socket.clone();
        waiting.push(tokio::spawn(async move { socket.emit_with_ack::<_, u32>("q", &1).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = socket.emit_with_ack::<_, u32>("q", &1).await.unwrap_err();
    assert_eq!(err.code.as_str(), "limit");
    waiting.iter().for_each(|w| w.abort());
}

#[tokio::test]
async fn client_requests_in_flight_are_bounded_by_backpressure() {
    let mut config = HubConfig::default();
    config.max_pending_acks = 2;
    let hub = hub(config);
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    // Four slow calls: two run, two wait unread; all complete, in about two rounds.
    let started = std::time::Instant::now();
    let calls = (0..4).map(|_| client.call::<_, u64>("slow", &200));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.as_ref() == Ok(&200)), "{results:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
}

#[tokio::test]
async fn client_handlers_see_presence_and_errors() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let mut a = Recorder::connect(&url).await;
    a.client.emit("chat", &json!({"oops": 1})).await.unwrap();
    let (name, data) = a.next().await;
    assert_eq!(name, "$error");
    assert_eq!(data["code"], "bad_payload");
}
