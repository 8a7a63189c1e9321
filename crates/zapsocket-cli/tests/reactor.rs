//! `zap serve --reactor`, run for real: the realtime hub at `/ws` (chat, names, rooms,
//! procedures), echo on `/`, the relay on `/broadcast`, the demo page and `/metrics` over
//! plain HTTP, the options it refuses, and a graceful shutdown.

use std::process::Command;

use serde_json::{Value, json};

mod common;
use common::{PATIENCE, Serve, ZAP, chatter, http_get, next};

async fn recv_text(ws: &mut zapsocket::WebSocket) -> String {
    let message =
        tokio::time::timeout(PATIENCE, ws.recv()).await.expect("in time").expect("open").expect("ok");
    message.as_text().expect("a text message").to_owned()
}

#[tokio::test]
async fn the_chat_echo_relay_and_http_all_work_on_the_reactor() {
    let serve = Serve::start(&["--reactor", "--threads", "2", "--admin-token", "secret"]);
    let (ada, mut ada_rx) = chatter(&serve, "ada").await;
    let (bob, mut bob_rx) = chatter(&serve, "bob").await;
    ada.join("lobby").await.expect("join");
    let joined = bob.join("lobby").await.expect("join");
    let mut names: Vec<&str> = joined.members.iter().filter_map(|m| m.data["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["ada", "bob"]);
    let reply: Value = bob.emit_with_ack("chat", &json!({"text": "hi"})).await.expect("chat");
    assert_eq!(reply, json!({"rooms": ["lobby"]}));
    assert_eq!(next(&mut ada_rx).await, json!({"from": "bob", "text": "hi", "room": "lobby"}));
    assert_eq!(next(&mut bob_rx).await["from"], "bob");
    assert_eq!(ada.call::<_, f64>("add", &json!({"a": 1, "b": 2})).await.expect("add"), 3.0);
    // A procedure that waits (on the runtime, not the loop) answers in time.
    ada.call::<_, Value>("sleep", &json!({"ms": 50})).await.expect("sleep");

    let mut echo = zapsocket::Client::connect(&serve.url("/")).await.expect("connect");
    assert_eq!(echo.protocol(), None);
    echo.send("ping").await.expect("send");
    assert_eq!(recv_text(&mut echo).await, "ping");

    let mut one = zapsocket::Client::connect(&serve.url("/broadcast")).await.expect("connect");
    let mut two = zapsocket::Client::connect(&serve.url("/broadcast")).await.expect("connect");
    // Both subscribed once their first message comes back.
    for ws in [&mut one, &mut two] {
        ws.send("hello").await.expect("send");
        assert_eq!(recv_text(ws).await, "hello");
    }
    // Each gets what the other said, the sender included.
    one.send("to all").await.expect("send");
    for ws in [&mut one, &mut two] {
        while recv_text(ws).await != "to all" {}
    }

    let page = http_get(&serve.addr, "/");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("/zapsocket.js"), "{page:.300}");
    let metrics = http_get(&serve.addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.ends_with("\n# EOF\n"), "{metrics}");
    assert!(metrics.contains("\nzapsocket_connections 2\n"), "{metrics}");
    assert!(metrics.contains("\nzapsocket_rooms 1\n"), "{metrics}");

    // The admin page, with its token only.
    assert!(http_get(&serve.addr, "/admin").starts_with("HTTP/1.1 401"));
    let data = http_get(&serve.addr, "/admin/data?token=secret");
    assert!(data.starts_with("HTTP/1.1 200"), "{data:.300}");
    assert!(data.contains("\"rooms\""), "{data:.600}");
}

#[test]
fn options_it_does_not_support_are_refused_by_name() {
    for (option, value) in [
        ("--memory-budget", "1000000"),
        ("--max-connections-per-ip", "10"),
        ("--max-handshake-rate", "10"),
        ("--max-handshake-rate-per-ip", "10"),
    ] {
        let output = Command::new(ZAP)
            .args(["serve", "--port", "0", "--reactor", option, value])
            .output()
            .expect("run zap");
        assert!(!output.status.success(), "{option}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--reactor does not support") && stderr.contains(option), "{stderr}");
    }
    let output = Command::new(ZAP).args(["serve", "--threads", "2"]).output().expect("run zap");
    assert!(!output.status.success(), "--threads without --reactor");
}

// Multi-thread: the clients answer the close while the test waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_1001_and_exits() {
    let mut serve = Serve::start(&["--reactor"]);
    let (ada, _ada_rx) = chatter(&serve, "ada").await;
    ada.join("lobby").await.expect("join");
    let mut echo = zapsocket::Client::connect(&serve.url("/")).await.expect("connect");
    let killed = Command::new("kill").args(["-TERM", &serve.pid()]).status().expect("run kill");
    assert!(killed.success());
    let end = tokio::time::timeout(PATIENCE, echo.recv()).await.expect("in time");
    assert!(end.is_none(), "{end:?}");
    assert_eq!(echo.close_frame().map(|frame| frame.code.0), Some(1001));
    let started = std::time::Instant::now();
    let status = serve.exit_in_time();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
}
