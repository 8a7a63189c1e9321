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
