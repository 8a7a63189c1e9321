//! Malformed, oversized, unknown and refused input: always the documented error, the
//! connection still serving.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{eventually, exchange, raw, recv_json, serve};
use serde_json::{Value, json};
use tokio::time::Instant;
use zapsocket::{Message, WebSocket};
use zapsocket_realtime::client::{Client, ConnectError};
use zapsocket_realtime::{Hub, HubConfig, RateLimit, ReplyError, Socket};

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

/// Reads until the connection ends (within 5 s) and returns its close frame's code and
/// reason, with the error codes that came before it.
async fn close_of(ws: &mut WebSocket) -> (u16, String, Vec<String>) {
    let mut codes = Vec::new();
    let read = async {
        while let Some(Ok(message)) = ws.recv().await {
            if let Message::Text(text) = message {
                let v: Value = serde_json::from_str(text.as_str()).unwrap();
                let error = if v["event"] == "$error" { &v["data"] } else { &v["error"] };
                codes.push(error["code"].as_str().unwrap_or("not an error").to_owned());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("not closed within 5 s");
    let frame = ws.close_frame().expect("a close frame");
    (frame.code.0, frame.reason, codes)
}

/// docs/RELIABILITY.md J1: each protocol violation (binary frame, too large, not JSON, not
/// an envelope, an ack id in use, an undefined `$` event) takes one of `max_violations`;
/// errors of the application or the data do not. Under the limit the socket is served;
/// the violation past it gets its error, then close 1008 with a reason.
#[tokio::test]
async fn past_max_violations_the_socket_is_closed_with_1008_and_not_before() {
    let mut config = HubConfig::default();
    config.max_message = 1024;
    config.max_violations = Some(RateLimit::new(0.0, 6)); // never refilled: 6 in all
    let hub = hub(config);
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    let big = format!(r#"{{"event":"ping","data":"{}"}}"#, "x".repeat(2000));
    for (text, code) in [("not json", "bad_json"), ("{}", "bad_envelope"), (&*big, "too_large")] {
        assert_eq!(error_event(&exchange(&mut ws, text).await), code, "for {text}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(error_event(&recv_json(&mut ws).await), "unsupported");
    assert_eq!(error_event(&exchange(&mut ws, r#"{"event":"$nope"}"#).await), "reserved");
    // Application and data errors, any number: not counted.
    for id in 1..=20 {
        let (text, code) = match id % 5 {
            0 => (format!(r#"{{"event":"nope","ack":{id}}}"#), "unknown_event"),
            1 => (format!(r#"{{"event":"ping","data":"x","ack":{id}}}"#), "bad_payload"),
            2 => (format!(r#"{{"call":"nope","ack":{id}}}"#), "unknown_procedure"),
            3 => (format!(r#"{{"event":"$join","data":{{"room":"$all"}},"ack":{id}}}"#), "reserved"),
            _ => (format!(r#"{{"event":"$join","data":{{"room":""}},"ack":{id}}}"#), "bad_envelope"),
        };
        assert_eq!(error_reply(&exchange(&mut ws, &text).await, id), code, "for {text}");
    }
    // Five violations so far: the sixth is still under the limit, and the socket serves.
    let answer = exchange(&mut ws, r#"{"event":"ping","ack":1.5}"#).await;
    assert_eq!(error_event(&answer), "bad_envelope");
    assert_eq!(
        exchange(&mut ws, r#"{"event":"ping","data":1,"ack":99}"#).await,
        json!({"reply": 99, "data": 2})
    );
    assert_eq!(hub.metrics().violation_closes, 0);
    // Another socket has its own allowance.
    let (mut other, _) = raw(&url).await;
    // The seventh: its error, then the close.
    ws.send("[]").await.unwrap();
    let (code, reason, errors) = close_of(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "too many malformed messages"));
    assert_eq!(errors, ["bad_json"], "the violation is answered before the close");
    assert_eq!(hub.metrics().violation_closes, 1);
    eventually(|| hub.metrics().connections == 1).await;
    for _ in 0..6 {
        assert_eq!(error_event(&exchange(&mut other, "nope").await), "bad_json");
    }
    assert_eq!(
        exchange(&mut other, r#"{"event":"ping","data":5,"ack":1}"#).await,
        json!({"reply": 1, "data": 6})
    );
}

/// The default limit (100 at once, 10 a second back) lets a client send a few bad
/// messages and closes one that sends nothing but garbage.
#[tokio::test]
async fn by_default_a_peer_that_sends_only_garbage_is_closed_after_about_100() {
    assert_eq!(HubConfig::default().max_violations, Some(RateLimit::new(10.0, 100)));
    let hub = hub(HubConfig::default());
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    for _ in 0..20 {
        assert_eq!(error_event(&exchange(&mut ws, "garbage").await), "bad_json");
    }
    assert_eq!(exchange(&mut ws, r#"{"event":"ping","data":1,"ack":1}"#).await["data"], 2);
    // 180 more at once: 100 in all are allowed, plus 10 a second; surviving them all
    // would take 10 s.
    for _ in 0..180 {
        ws.send("garbage").await.unwrap();
    }
    let (code, reason, errors) = close_of(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "too many malformed messages"));
    assert!((81..180).contains(&errors.len()), "closed after {} more", errors.len());
}

/// Violations come back at `per_second`: a client that pauses is forgiven.
#[tokio::test]
async fn violations_are_forgiven_at_the_configured_rate() {
    let mut config = HubConfig::default();
    config.max_violations = Some(RateLimit::new(1.0, 2));
    let hub = hub(config);
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    for _ in 0..2 {
        assert_eq!(error_event(&exchange(&mut ws, "x").await), "bad_json");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await; // both back
    for _ in 0..2 {
        assert_eq!(error_event(&exchange(&mut ws, "x").await), "bad_json");
    }
    assert_eq!(exchange(&mut ws, r#"{"event":"ping","data":1,"ack":1}"#).await["data"], 2);
    // Twenty at once would need about 18 s of forgiveness.
    for _ in 0..20 {
        ws.send("x").await.unwrap();
    }
    let (code, _, errors) = close_of(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(errors.len() < 20, "{errors:?}");
}

/// docs/RELIABILITY.md J8: past `max_message_rate`'s burst a message waits for its token
/// (the socket is not read meanwhile), then is served; after a quiet while the burst is
/// there again. Only lower bounds on time are asserted: a slow machine only delays more.
#[tokio::test]
async fn past_the_message_rate_messages_wait_for_their_token_then_are_served() {
    let mut config = HubConfig::default();
    config.max_message_rate = Some(RateLimit::new(1.0, 3)); // 3 at once, then 1 a second
    let hub = hub(config);
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    let ping = |id: u64| format!(r#"{{"event":"ping","data":{id},"ack":{id}}}"#);
    let sent = Instant::now();
    for id in 1..=5 {
        ws.send(ping(id)).await.unwrap();
    }
    for id in 1..=5 {
        assert_eq!(recv_json(&mut ws).await, json!({"reply": id, "data": id + 1}));
        if id > 3 {
            // The burst's 3 tokens, then one a second from the first message on.
            let due = Duration::from_millis((id - 3) * 1000 - 50);
            assert!(sent.elapsed() >= due, "reply {id} after {:?}", sent.elapsed());
        }
    }
    assert!(hub.metrics().rate_limited >= 1, "{:?}", hub.metrics());
    // A quiet while refills the bucket: a burst of 3 goes through without waiting.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let before = hub.metrics().rate_limited;
    let sent = Instant::now();
    for id in 6..=8 {
        assert_eq!(exchange(&mut ws, &ping(id)).await["reply"], id);
    }
    assert_eq!(hub.metrics().rate_limited, before, "the burst did not wait");
    assert_eq!(exchange(&mut ws, &ping(9)).await["reply"], 9);
    assert!(sent.elapsed() >= Duration::from_millis(950), "the fourth waited: {:?}", sent.elapsed());
}

/// A socket waiting for a token that never comes (no refill) still sees its connection
/// end: it leaves the hub, and what it had sent is read then.
#[tokio::test]
async fn a_socket_waiting_for_its_message_rate_still_leaves_when_its_connection_ends() {
    let mut config = HubConfig::default();
    config.max_message_rate = Some(RateLimit::new(0.0, 1));
    let hub = hub(config);
    let url = serve(&hub).await;
    let (mut ws, _) = raw(&url).await;
    assert_eq!(exchange(&mut ws, r#"{"event":"ping","data":1,"ack":1}"#).await["data"], 2);
    let before = hub.metrics().messages_in;
    for id in 2..=4 {
        ws.send(format!(r#"{{"event":"ping","data":1,"ack":{id}}}"#)).await.unwrap();
    }
    let silent = tokio::time::timeout(Duration::from_millis(300), ws.recv()).await;
    assert!(silent.is_err(), "no token, no reply: {silent:?}");
    assert_eq!(hub.metrics().connections, 1);
    ws.close(zapsocket::CloseCode::NORMAL, "").await.unwrap();
    eventually(|| hub.metrics().connections == 0).await;
    assert_eq!(hub.metrics().messages_in - before, 3, "read once the connection ended");
}
