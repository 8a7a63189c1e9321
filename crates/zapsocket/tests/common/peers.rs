//! Peers not written here (`tests/interop/`, installed by `scripts/setup.sh`): finding
//! them and running them. With `ZAPSOCKET_INTEROP=1` a missing peer fails the test;
//! without it, the test says so and passes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A peer's interpreter and the script it runs.
pub struct Peer {
    pub kind: String,
    pub program: PathBuf,
    pub script: PathBuf,
}

fn interop_dir() -> PathBuf {
    std::env::var_os("ZAPSOCKET_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop"))
}

/// The peer `kind` (`node`, `python` or `browser`) running `script`, or `None` with a
/// note when it is not installed.
pub fn peer(kind: &str, script: &str) -> Option<Peer> {
    let dir = interop_dir();
    let node = || std::env::var_os("ZAPSOCKET_NODE").map_or("node".into(), PathBuf::from);
    let program = match kind {
        "node" => dir.join("node/node_modules/ws/package.json").exists().then(node),
        "browser" => {
            let chromium = std::env::var_os("CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
            (dir.join("browser/node_modules/playwright-core/package.json").exists() && chromium.exists())
                .then(node)
        }
        _ => std::env::var_os("ZAPSOCKET_PYTHON")
            .map(PathBuf::from)
            .or_else(|| Some(dir.join("python/.venv/bin/python")).filter(|p| p.exists()))
            .or_else(|| Some(dir.join("python/site/python")).filter(|p| p.exists())),
    };
    let Some(program) = program else {
        let required = std::env::var("ZAPSOCKET_INTEROP").as_deref() == Ok("1");
        assert!(!required, "{kind} interop peer not installed: run scripts/setup.sh");
        eprintln!("skipped: {kind} interop peer not installed (scripts/setup.sh installs it)");
        return None;
    };
    Some(Peer { kind: kind.to_owned(), program, script: dir.join(kind).join(script) })
}

/// Kills the child process on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a peer client with `args` to the end; checks that it succeeded and reported
/// `"ok": true`, and returns what it printed.
pub async fn run_client(peer: Peer, args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&peer.program).arg(&peer.script).args(&args).output().expect("spawn peer")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "peer failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("\"ok\":true") || stdout.contains("\"ok\": true"), "{stdout}");
    stdout
}

/// Starts a peer echo server on a free port; returns it, its port and the rest of its
/// output.
pub fn start_server(peer: &Peer) -> (Guard, u16, BufReader<ChildStdout>) {
    let mut child = Command::new(&peer.program)
        .arg(&peer.script)
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn peer server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let guard = Guard(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).expect("listening PORT");
    (guard, port, stdout)
}
