//! Test helpers: a real `redis-server` on a free port (no persistence) that tests can
//! stop, freeze and restart; a TCP proxy that cuts a node from Redis; nodes (hubs on the
//! Redis adapter, served on port 0) in this process; clients that record what they get.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use zapsocket::{Message, WebSocket};
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, HubConfig, SUBPROTOCOL};
use zapsocket_redis::{RedisAdapter, RedisConfig};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of its own (Debian's package; `scripts/setup.sh` installs it).
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut redis = Redis { port: free_port(), child: None };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run scripts/setup.sh (Debian's redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// SIGSTOP: Redis stops answering, connections stay open.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// SIGKILL, then a new empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command through redis-cli (for what the tests inspect).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
    }
}

/// A TCP proxy in front of Redis that can cut every connection through it.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let changed = Arc::new(Notify::new());
        let (c, n) = (cut.clone(), changed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if c.load(SeqCst) {
                    continue; // refused: dropped at once
                }
                let (c, n) = (c.clone(), n.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let pipe = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut cr, &mut sw) => {}
                            _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        }
                    };
                    let cut = async {
                        while !c.load(SeqCst) {
                            n.notified().await;
                        }
                    };
                    tokio::select! { () = pipe => {}, () = cut => {} }
                });
            }
        });
        Proxy { port, cut, changed }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, SeqCst);
        self.changed.notify_waiters();
    }

    pub fn restore(&self) {
        self.cut.store(false, SeqCst);
        self.changed.notify_waiters();
    }
}

/// A node: a hub on the Redis adapter, served on 127.0.0.1 (any port) until dropped.
pub struct Node {
    pub hub: Hub,
    pub redis: RedisAdapter,
    pub url: String,
    server: Served,
}

/// What serves a node's hub: the async server's task, or a reactor
/// (`ZAP_HUB_HOST=reactor`: `scripts/test.sh` runs these tests both ways).
enum Served {
    Task(tokio::task::JoinHandle<()>),
    Reactor(zapsocket::reactor::Running),
}

impl Drop for Node {
    fn drop(&mut self) {
        match &self.server {
            Served::Task(task) => task.abort(),
            Served::Reactor(running) => running.shutdown(),
        }
    }
}

/// Adapter settings for tests: short leases so that deaths show within a second or two.
pub fn fast() -> RedisConfig {
    let mut config = RedisConfig::default();
    config.lease_ttl = Duration::from_millis(1000);
    config.timeout = Duration::from_millis(500);
    config
}

impl Node {
    pub async fn start(redis_url: &str) -> Node {
        Node::with(redis_url, fast(), HubConfig::default()).await
    }

    pub async fn with(redis_url: &str, config: RedisConfig, hub_config: HubConfig) -> Node {
        let redis = RedisAdapter::connect(redis_url, config).await.unwrap();
        let hub = Hub::builder().config(hub_config).adapter(redis.adapter()).build();
        hub.use_connect(|socket: zapsocket_realtime::Socket| async move {
            let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_default();
            socket.set_public_data(serde_json::json!({ "name": name }));
            Ok(())
        });
        if std::env::var("ZAP_HUB_HOST").as_deref() == Ok("reactor") {
            let handler = hub.reactor_handler(tokio::runtime::Handle::current());
            let running = zapsocket::reactor::Reactor::builder()
                .host("127.0.0.1")
                .port(0)
                .threads(2)
                .subprotocol(zapsocket_realtime::SUBPROTOCOL_V2)
                .subprotocol(SUBPROTOCOL)
                .start(move |_| handler.clone())
                .unwrap();
            let url = format!("ws://{}/", running.local_addr());
            return Node { hub, redis, url, server: Served::Reactor(running) };
        }
        let server = zapsocket::Server::builder()
            .subprotocol(zapsocket_realtime::SUBPROTOCOL_V2)
            .subprotocol(SUBPROTOCOL)
            .bind()
            .await
            .unwrap();
        let url = format!("ws://{}/", server.local_addr());
        let h = hub.clone();
        let server = tokio::spawn(async move {
            let _ = server.serve(move |ws| h.clone().handle(ws)).await;
        });
        Node { hub, redis, url, server: Served::Task(server) }
    }
}

/// A client and every event it receives, in order, as (name, data, rooms).
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

    pub async fn named(url: &str, name: &str) -> Recorder {
        Recorder::connect(&format!("{url}?name={name}")).await
    }

    /// The next event, within `secs` seconds.
    pub async fn next_within(&mut self, secs: u64) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event in {secs} s"))
            .unwrap()
    }

    pub async fn next(&mut self) -> (String, Value) {
        self.next_within(5).await
    }

    /// The next event named `name`, skipping others.
    pub async fn next_named(&mut self, name: &str) -> Value {
        loop {
            let (event, data) = self.next().await;
            if event == name {
                return data;
            }
        }
    }

    /// Every event up to the event `end` (excluded), skipping presence.
    pub async fn until(&mut self, end: &str) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        loop {
            let event = self.next().await;
            if event.0 == end {
                return got;
            }
            if !event.0.starts_with('$') {
                got.push(event);
            }
        }
    }

    /// The next `n` events that are not the protocol's (`$...`): messages from several
    /// nodes have no order among them, so no end marker can follow them all.
    pub async fn take(&mut self, n: usize) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        while got.len() < n {
            let event = self.next().await;
            if !event.0.starts_with('$') {
                got.push(event);
            }
        }
        got
    }

    /// Asserts that no event arrives within `ms`.
    pub async fn assert_silent(&mut self, ms: u64) {
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(ms), self.rx.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }
}

/// Waits until `check` holds (polled every 20 ms), at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address of a node's server (for raw clients).
pub fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap()
}

/// A raw connection to `url` that sends `$resume` and returns every message up to the
/// reply (included last).
pub async fn resume(
    url: &str,
    session: &str,
    epoch: &str,
    offsets: &HashMap<String, u64>,
) -> (WebSocket, Vec<Value>) {
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(url).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "$hello");
    let request = json!({"event": "$resume", "ack": 1, "data": {"session": session, "epoch": epoch, "offsets": offsets}});
    ws.send(request.to_string()).await.unwrap();
    let mut got = Vec::new();
    loop {
        let message = next_json(&mut ws).await;
        let done = message["reply"] == 1;
        got.push(message);
        if done {
            return (ws, got);
        }
    }
}

pub async fn next_json(ws: &mut WebSocket) -> Value {
    match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.expect("nothing in 10 s") {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}
