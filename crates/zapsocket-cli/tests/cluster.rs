//! `zap serve --redis`: nodes as separate processes on one real Redis, behind a TCP
//! load balancer as a user would run them. A node killed with SIGKILL mid-stream: its
//! members leave the others' presence within the lease bound, and its clients, coming
//! back through the balancer to another node, resume their sessions and get every
//! message they missed, once, in order.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use zapsocket_realtime::client::{Client, ConnState};

mod common;
#[path = "../../zapsocket-redis/tests/common/mod.rs"]
mod redis_common;

use common::Serve;
use redis_common::Redis;

/// A TCP load balancer: each connection goes to the first backend, in turn from a
/// rotating start, that accepts it (a dead node refuses, the next one takes it).
struct Balancer {
    port: u16,
    backends: Arc<Mutex<(Vec<u16>, usize)>>,
}

impl Balancer {
    async fn start(backends: Vec<u16>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new((backends, 0)));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let order: Vec<u16> = {
                    let mut s = shared.lock().unwrap();
                    let start = s.1;
                    s.1 += 1;
                    (0..s.0.len()).map(|i| s.0[(start + i) % s.0.len()]).collect()
                };
                tokio::spawn(async move {
                    for port in order {
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await {
                            let (mut cr, mut cw) = client.into_split();
                            let (mut sr, mut sw) = server.into_split();
                            tokio::select! {
                                _ = tokio::io::copy(&mut cr, &mut sw) => {}
                                _ = tokio::io::copy(&mut sr, &mut cw) => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, backends: state }
    }
}

fn kill9(serve: &Serve) {
    assert!(std::process::Command::new("kill").args(["-9", &serve.pid()]).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_its_clients_resume_elsewhere_with_nothing_lost() {
    let redis = Redis::start().await;
    let a = Serve::start(&["--redis", &redis.url(), "--node-id", "n-a"]);
    let b = Serve::start(&["--redis", &redis.url(), "--node-id", "n-b"]);
    let balancer = Balancer::start(vec![a.port().parse().unwrap(), b.port().parse().unwrap()]).await;
    assert_eq!(balancer.backends.lock().unwrap().0.len(), 2);

    // x comes through the balancer (to a); y is on b.
    let x = Client::connect(&format!("ws://127.0.0.1:{}/ws?name=x", balancer.port)).await.unwrap();
    assert_eq!(x.hello().node, "n-a");
    let y = Client::connect(&format!("{}?name=y", b.url("/ws"))).await.unwrap();
    let (chats_tx, mut chats) = mpsc::unbounded_channel::<u64>();
    x.on("chat", move |msg: Value| {
        let n = msg["text"].as_str().unwrap().parse().unwrap();
        let _ = chats_tx.send(n);
    });
    let (left_tx, mut left) = mpsc::unbounded_channel::<Value>();
    y.on("$left", move |event: Value| {
        let _ = left_tx.send(event);
    });
    x.join("room").await.unwrap();
    y.join("room").await.unwrap();
    let session = x.session();

    // y chats without pause; a is killed in the middle.
    let sender = {
        let y = y.clone();
        tokio::spawn(async move {
            for n in 1..=150u64 {
                let _: Value =
                    y.emit_with_ack("chat", &json!({"text": n.to_string(), "room": "room"})).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(tokio::time::timeout(Duration::from_secs(5), chats.recv()).await.unwrap().unwrap());
    }
    kill9(&a);
    let killed = Instant::now();

    // The others see x leave within the lease bound (5 s, checked every second).
    let event =
        tokio::time::timeout(Duration::from_secs(10), left.recv()).await.expect("$left in 10 s").unwrap();
    assert_eq!(event["member"]["id"], session.as_str());
    let left_after = killed.elapsed();
    assert!(left_after < Duration::from_secs(8), "$left after {left_after:?}");

    // x comes back through the balancer to b and resumes its session.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(x.state() == ConnState::Connected && x.hello().node == "n-b") {
        assert!(Instant::now() < deadline, "x did not reconnect to b: {:?}", x.state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered_after = killed.elapsed();
    assert_eq!(x.session(), session, "the same session, resumed");
    sender.await.unwrap();
    while got.len() < 150 {
        got.push(tokio::time::timeout(Duration::from_secs(5), chats.recv()).await.expect("all 150").unwrap());
    }
    assert_eq!(got, (1..=150).collect::<Vec<u64>>(), "every chat once, in order, across the kill");
    eprintln!(
        "SIGKILL of a node: $left after {left_after:?}, its client resumed on another node after {recovered_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_the_nodes_deliver_again_by_themselves() {
    let mut redis = Redis::start().await;
    let a = Serve::start(&["--redis", &redis.url()]);
    let b = Serve::start(&["--redis", &redis.url()]);
    let x = Client::connect(&format!("{}?name=x", a.url("/ws"))).await.unwrap();
    let y = Client::connect(&format!("{}?name=y", b.url("/ws"))).await.unwrap();
    let (tx, mut chats) = mpsc::unbounded_channel::<String>();
    y.on("chat", move |msg: Value| {
        let _ = tx.send(msg["text"].as_str().unwrap().to_owned());
    });
    let (resync_tx, mut resyncs) = mpsc::unbounded_channel::<Value>();
    x.on("$resync", move |data: Value| {
        let _ = resync_tx.send(data);
    });
    x.join("room").await.unwrap();
    y.join("room").await.unwrap();
    let _: Value = x.emit_with_ack("chat", &json!({"text": "before"})).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), chats.recv()).await.unwrap().unwrap(), "before");

    redis.restart().await;
    let restarted = Instant::now();
    // x's node tells it that its rooms' history is gone; x and y stay connected.
    let resync =
        tokio::time::timeout(Duration::from_secs(10), resyncs.recv()).await.expect("$resync").unwrap();
    assert!(resync["rooms"].as_array().unwrap().contains(&json!("room")), "{resync}");
    // Chat until it goes through: the nodes are back, with presence written again.
    let mut n = 0;
    let delivered_after = loop {
        n += 1;
        let sent: Result<Value, _> = x.emit_with_ack("chat", &json!({"text": format!("after {n}")})).await;
        if sent.is_ok()
            && let Ok(Some(text)) = tokio::time::timeout(Duration::from_millis(500), chats.recv()).await
        {
            assert!(text.starts_with("after"), "{text}");
            break restarted.elapsed();
        }
        assert!(restarted.elapsed() < Duration::from_secs(15), "no delivery 15 s after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(x.state(), ConnState::Connected);
    assert_eq!(y.state(), ConnState::Connected);
    let members = y.members("room").await.unwrap();
    assert_eq!(members.count, 2, "presence written again by both nodes");
    eprintln!("Redis restarted empty: delivery across nodes again after {delivered_after:?}");
}
