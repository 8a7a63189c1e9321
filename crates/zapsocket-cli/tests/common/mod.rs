//! What the CLI tests share: a real `zap serve` on a free port, killed on drop.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const ZAP: &str = env!("CARGO_BIN_EXE_zap");
/// Upper bound for any single wait in these tests.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running `zap serve`, killed on drop.
pub struct Serve {
    pub child: Child,
    /// `HOST:PORT`, as it printed `listening on ws://HOST:PORT` (or `wss://`).
    pub addr: String,
}

impl Serve {
    /// Starts `zap serve --port 0 EXTRA...` and reads its address from stdout.
    pub fn start(extra: &[&str]) -> Serve {
        let mut child = Command::new(ZAP)
            .args(["serve", "--port", "0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn zap serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout so that logging never blocks the server.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, addr)) =
                    line.split_once("listening on ").and_then(|(_, u)| u.split_once("://"))
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(PATIENCE).expect("zap serve printed its address");
        Serve { child, addr }
    }

    /// `ws://HOST:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The process id, for `kill`.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> &str {
        self.addr.rsplit_once(':').map_or("", |(_, p)| p)
    }

    /// Waits for the process to exit, at most [`PATIENCE`].
    pub fn exit_in_time(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, at most [`PATIENCE`].
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < PATIENCE, "process did not exit in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP GET of `path` on `addr` (`HOST:PORT`); the whole response, head and body.
pub fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read to end");
    response
}

/// The interop Python (`tests/interop/python`, installed by `scripts/setup.sh`) when it
/// can import `module`, with the folder of its scripts. As for the interop peers: with
/// `ZAPSOCKET_INTEROP=1` a missing one fails the test; without it, the test says so and
/// passes.
pub fn python_with(module: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    use std::path::PathBuf;
    let dir = std::env::var_os("ZAPSOCKET_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"));
    let python = std::env::var_os("ZAPSOCKET_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(dir.join("python/.venv/bin/python")).filter(|p| p.exists()))
        .or_else(|| Some(dir.join("python/site/python")).filter(|p| p.exists()))
        .filter(|python| {
            Command::new(python)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if python.is_none() {
        let required = std::env::var("ZAPSOCKET_INTEROP").as_deref() == Ok("1");
        assert!(!required, "python with {module} not installed: run scripts/setup.sh");
        eprintln!("skipped: python with {module} not installed (scripts/setup.sh installs it)");
    }
    python.map(|python| (python, dir.join("python")))
}

/// A realtime client on `serve`'s `/ws` named `name`, with a channel of the `chat`
/// events it receives.
pub async fn chatter(
    serve: &Serve,
    name: &str,
) -> (zapsocket_realtime::client::Client, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    let url = format!("ws://{}/ws?name={name}", serve.addr);
    let client = tokio::time::timeout(PATIENCE, zapsocket_realtime::client::Client::connect(&url))
        .await
        .expect("in time")
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    client.on("chat", move |msg: serde_json::Value| {
        let _ = tx.send(msg);
    });
    (client, rx)
}

/// The next `chat` event of a [`chatter`].
pub async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) -> serde_json::Value {
    tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a chat in time").expect("open")
}
