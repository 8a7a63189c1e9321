//! Malformed, oversized, unknown and refused input: always the documented error, the
//! connection still serving.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use common::{exchange, raw, recv_json, serve};
use serde_json::{Value, json};
use zapsocket::Message;
use zapsocket_realtime::client::{Client, ConnectError};
use zapsocket_realtime::{Hub, HubConfig, ReplyError, Socket};

fn hub(config: HubConfig) -> Hub {
    let hub = Hub::builder().config(config).build();
    hub.on("ping", |_: Socket, n: u32| async move { Ok::<_, ReplyError>(n + 1) });
    hub
}

fn error_event(v: &Value) -> &str {
    assert_eq!(v["event"], "$error", "{v}");
    v["data"]["code"].as_str().unwrap()
}

fn error_reply(v: &Value, id: u64) -> &str {
    assert_eq!(v["reply"], id, "{v}");
    v["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn malformed_envelopes_get_their_error() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    let cases: &[(&str, &str)] = &[
        ("not json", "bad_json"),
        ("[1,2]", "bad_json"),
        ("\"text\"", "bad_json"),
        ("{\"event\":", "bad_json"),
        ("{}", "bad_envelope"),
        (r#"{"event":1}"#, "bad_envelope"),
        (r#"{"event":"ping","ack":"1"}"#, "bad_envelope"),
        (r#"{"event":"ping","ack":-1}"#, "bad_envelope"),
        (r#"{"call":"ping"}"#, "bad_envelope"),
        (r#"{"reply":"x"}"#, "bad_envelope"),
        (r#"{"event":"ping","event":"ping"}"#, "bad_envelope"),
        (r#"{"event":"nope"}"#, "unknown_event"),
        (r#"{"event":"ping","data":"x"}"#, "bad_payload"),
        (r#"{"event":"$nope"}"#, "reserved"),
    ];
    for (text, code) in cases {
        let answer = exchange(&mut ws, text).await;
        assert_eq!(error_event(&answer), *code, "for {text}");
    }
    // With an ack, the error is a reply to it.
    let answer = exchange(&mut ws, r#"{"event":"ping","call":"x","ack":7}"#).await;
    assert_eq!(error_reply(&answer, 7), "bad_envelope");
    let answer = exchange(&mut ws, r#"{"event":"nope","ack":8}"#).await;
    assert_eq!(error_reply(&answer, 8), "unknown_event");
    assert_eq!(answer["error"]["message"], "no handler for event \"nope\"");
    let answer = exchange(&mut ws, r#"{"event":"ping","data":{},"ack":9}"#).await;
    assert_eq!(error_reply(&answer, 9), "bad_payload");
    assert!(
        answer["error"]["message"].as_str().unwrap().starts_with("invalid type: map, expected u32"),
        "{answer}"
    );
    let long = format!(r#"{{"event":"{}","ack":10}}"#, "e".repeat(129));
    assert_eq!(error_reply(&exchange(&mut ws, &long).await, 10), "bad_envelope");
    // Still serving.
    assert_eq!(
        exchange(&mut ws, r#"{"event":"ping","data":1,"ack":11}"#).await,
        json!({"reply": 11, "data": 2})
    );
}

#[tokio::test]
async fn unknown_events_without_ack_are_reported_once_per_name() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    for _ in 0..3 {
        ws.send(r#"{"event":"nope"}"#).await.unwrap();
    }
    ws.send(r#"{"event":"other"}"#).await.unwrap();
    let first = recv_json(&mut ws).await;
    assert_eq!(first["data"]["message"], "no handler for event \"nope\"");
    let second = recv_json(&mut ws).await;
    assert_eq!(second["data"]["message"], "no handler for event \"other\"");
}

#[tokio::test]
async fn oversized_envelopes_get_too_large_and_binary_gets_unsupported() {
    let mut config = HubConfig::default();
    config.max_message = 1024;
    let hub = hub(config);
    let url = serve(&hub).await;
    let (mut ws, hello) = raw(&url).await;
    assert_eq!(hello["limits"]["max_message"], 1024);
    let big = format!(r#"{{"event":"ping","data":"{}","ack":1}}"#, "x".repeat(2000));
    let answer = exchange(&mut ws, &big).await;
    assert_eq!(error_event(&answer), "too_large");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(error_event(&recv_json(&mut ws).await), "unsupported");
    assert_eq!(exchange(&mut ws, r#"{"event":"ping","data":1,"ack":2}"#).await["data"], 2);
}

#[tokio::test]
async fn over_the_websocket_limit_the_connection_closes_with_1009() {
    let hub = hub(HubConfig::default());
    let server = zapsocket::Server::builder()
        .subprotocol(zapsocket_realtime::SUBPROTOCOL)
        .max_message_size(4096)
        .bind()
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let h = hub.clone();
    tokio::spawn(server.serve(move |ws| h.clone().handle(ws)));
    let (mut ws, _) = raw(&url).await;
    let big = format!(r#"{{"event":"ping","data":"{}"}}"#, "x".repeat(5000));
    ws.send(big).await.unwrap();
    while let Some(Ok(_)) = ws.recv().await {}
    assert_eq!(ws.close_frame().map(|f| f.code.0), Some(1009));
}

#[tokio::test]
async fn connect_middleware_refuses_with_forbidden_and_1008() {
    let hub = hub(HubConfig::default());
    hub.use_connect(|socket: Socket| async move {
        let token = socket.request().and_then(|r| r.query_param("token"));
        if token.as_deref() != Some("secret") {
            return Err(ReplyError::forbidden("bad token"));
        }
        socket.set_public_data(json!({"name": "trusted"}));
        Ok(())
    });
    let url = serve(&hub).await;
    let refused = Client::connect(&format!("{url}?token=wrong")).await.unwrap_err();
    match refused {
        ConnectError::Refused(e) => assert_eq!(e, ReplyError::forbidden("bad token")),
        other => panic!("{other:?}"),
    }
    let client = Client::connect(&format!("{url}?token=secret")).await.unwrap();
    let me = hub.socket(&client.session()).unwrap();
    assert_eq!(me.public_data(), json!({"name": "trusted"}));
    // The raw view: $error then close 1008.
    let mut ws = zapsocket::Client::connect(&format!("{url}?token=no")).await.unwrap();
    assert_eq!(error_event(&recv_json(&mut ws).await), "forbidden");
    while let Some(Ok(_)) = ws.recv().await {}
    assert_eq!(ws.close_frame().map(|f| f.code.0), Some(1008));
}

#[tokio::test]
async fn event_middleware_refuses_events_calls_and_joins() {
    let hub = hub(HubConfig::default());
    hub.procedure("secret", |_: Socket, _: Value| async move { Ok::<_, ReplyError>(1) });
    hub.use_event(|_: &Socket, name: &str, data: &str| {
        let room_private = name == "$join" && data.contains("private");
        if name == "secret" || room_private {
            return Err(ReplyError::forbidden(format!("{name} is not allowed")));
        }
        Ok(())
    });
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    let err = client.call::<_, u32>("secret", &()).await.unwrap_err();
    assert_eq!(err, ReplyError::forbidden("secret is not allowed"));
    let err = client.join("private").await.unwrap_err();
    assert_eq!(err.code.as_str(), "forbidden");
    assert_eq!(client.join("public").await.unwrap().count, 1);
    assert_eq!(client.emit_with_ack::<_, u32>("ping", &1).await.unwrap(), 2);
}

#[tokio::test]
async fn room_names_are_checked() {
    let mut config = HubConfig::default();
    config.max_rooms = 2;
    let hub = hub(config);
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    assert_eq!(client.join("$all").await.unwrap_err().code.as_str(), "reserved");
    assert_eq!(client.join("").await.unwrap_err().code.as_str(), "bad_envelope");
    assert_eq!(client.join(&"r".repeat(129)).await.unwrap_err().code.as_str(), "bad_envelope");
    client.join("a").await.unwrap();
    client.join("b").await.unwrap();
    client.join("a").await.unwrap();
    assert_eq!(client.join("c").await.unwrap_err().code.as_str(), "limit");
    client.leave("a").await.unwrap();
    client.join("c").await.unwrap();
    let err = client.emit_with_ack::<_, Value>("$join", &json!({"rom": "x"})).await.unwrap_err();
    assert_eq!(err.code.as_str(), "bad_payload");
}

#[tokio::test]
async fn resume_is_answered_with_recovery_unavailable() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, hello) = raw(&url).await;
    let resume = json!({"event": "$resume", "ack": 1,
        "data": {"session": hello["session"], "epoch": hello["epoch"], "offsets": {}}});
    let answer = exchange(&mut ws, &resume.to_string()).await;
    assert_eq!(error_reply(&answer, 1), "recovery_unavailable");
}

/// `$ping` (the liveness check of clients that cannot see WebSocket pings) is answered
/// with a `null` reply; without an ack it gets nothing back.
#[tokio::test]
async fn ping_is_answered_with_a_null_reply() {
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    assert_eq!(
        exchange(&mut ws, r#"{"event":"$ping","data":null,"ack":3}"#).await,
        json!({"reply": 3, "data": null})
    );
    // Without an ack, nothing comes back: the next answer is the next request's.
    ws.send(r#"{"event":"$ping"}"#).await.unwrap();
    let answer = exchange(&mut ws, r#"{"event":"ping","data":1,"ack":4}"#).await;
    assert_eq!(answer, json!({"reply": 4, "data": 2}), "no reply to a $ping without an ack");
}

/// docs/RELIABILITY.md J2: JSON nested 100,000 deep, huge numbers and duplicate keys get
/// their error (serde_json's depth limit of 128 when `data` is decoded), never a stack
/// overflow: the envelope itself is read without recursion (`data` stays raw, unknown fields
/// are skipped), and the connection goes on serving.
#[tokio::test]
async fn deeply_nested_json_huge_numbers_and_duplicate_keys_get_an_error() {
    let hub = hub(HubConfig::default());
    hub.on("any", |_: Socket, v: Value| async move { Ok::<_, ReplyError>(v.is_array()) });
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let text = format!(r#"{{"event":"any","data":{},"ack":1}}"#, deep(100_000));
    let answer = exchange(&mut ws, &text).await;
    assert_eq!(error_reply(&answer, 1), "bad_payload");
    assert!(answer["error"]["message"].as_str().unwrap().starts_with("recursion limit exceeded"), "{answer}");
    let text = format!(r#"{{"event":"any","data":{}}}"#, deep(100_000));
    assert_eq!(error_event(&exchange(&mut ws, &text).await), "bad_payload");
    // A deep value where the server expects nothing is skipped, without recursion.
    let text = format!(r#"{{"event":"any","junk":{},"data":[1],"ack":2}}"#, deep(100_000));
    assert_eq!(exchange(&mut ws, &text).await, json!({"reply": 2, "data": true}));
    let huge = exchange(&mut ws, r#"{"event":"any","data":1e400,"ack":3}"#).await;
    assert_eq!(error_reply(&huge, 3), "bad_payload");
    let huge = exchange(&mut ws, r#"{"event":"ping","data":123456789012345678901234567890,"ack":4}"#).await;
    assert_eq!(error_reply(&huge, 4), "bad_payload");
    let twice = exchange(&mut ws, r#"{"event":"ping","data":1,"data":2,"ack":5}"#).await;
    assert_eq!(error_event(&twice), "bad_envelope");
    assert!(twice["data"]["message"].as_str().unwrap().starts_with("duplicate field `data`"), "{twice}");
    // Still serving, and 100 deep is fine.
    let ok = format!(r#"{{"event":"any","data":{},"ack":9}}"#, deep(100));
    assert_eq!(exchange(&mut ws, &ok).await, json!({"reply": 9, "data": true}));
}

/// docs/RELIABILITY.md J5: a client that reuses an ack id while the request holding it
/// still runs gets `bad_envelope` for the second one; the first is answered as usual, and
/// the id is free again once answered.
#[tokio::test]
async fn an_ack_id_still_in_use_is_refused_and_free_again_once_answered() {
    let hub = hub(HubConfig::default());
    let (release, wait) = tokio::sync::watch::channel(false);
    hub.procedure("slow", move |_: Socket, n: u32| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            Ok::<_, ReplyError>(n * 10)
        }
    });
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    ws.send(r#"{"call":"slow","data":1,"ack":5}"#).await.unwrap();
    // The same id, as a call and as an event with an ack: refused at once.
    let answer = exchange(&mut ws, r#"{"call":"slow","data":2,"ack":5}"#).await;
    assert_eq!(error_reply(&answer, 5), "bad_envelope");
    assert!(answer["error"]["message"].as_str().unwrap().contains("already in use"), "{answer}");
    let answer = exchange(&mut ws, r#"{"event":"ping","data":1,"ack":5}"#).await;
    assert_eq!(error_reply(&answer, 5), "bad_envelope");
    // Another id is served meanwhile.
    let answer = exchange(&mut ws, r#"{"event":"ping","data":1,"ack":6}"#).await;
    assert_eq!(answer, json!({"reply": 6, "data": 2}));
    // The first request is answered, then its id can be used again.
    release.send(true).unwrap();
    assert_eq!(recv_json(&mut ws).await, json!({"reply": 5, "data": 10}));
    let answer = exchange(&mut ws, r#"{"call":"slow","data":3,"ack":5}"#).await;
    assert_eq!(answer, json!({"reply": 5, "data": 30}));
}
