//! The `zap` binary, run for real: `zap serve` on a free port driven by the zapsocket
//! client, and `zap connect` piped against `zap serve`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use zapsocket::{Client, CloseCode, Message, WebSocket};

mod common;
use common::{PATIENCE, Serve, ZAP, http_get, wait_exit};

async fn connect(url: &str) -> WebSocket {
    tokio::time::timeout(PATIENCE, Client::connect(url)).await.expect("connect in time").expect("connect")
}

async fn next(ws: &mut WebSocket) -> Option<Message> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.recv()).await.expect("a message in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(e)) => panic!("receive failed: {e}"),
            None => return None,
        }
    }
}

#[tokio::test]
async fn echoes_text_and_binary_with_their_type_on_root_and_echo() {
    let serve = Serve::start(&[]);
    for path in ["/", "/echo"] {
        let mut ws = connect(&serve.url(path)).await;
        for message in [
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 255]),
            Message::text(""),
            Message::binary(Bytes::new()),
            Message::text("κόσμε"),
            Message::binary(vec![7u8; 100_000]),
        ] {
            ws.send(message.clone()).await.expect("send");
            assert_eq!(next(&mut ws).await, Some(message), "on {path}");
        }
        ws.close(CloseCode::NORMAL, "").await.expect("close");
    }
}

#[tokio::test]
async fn echoes_a_burst_in_order() {
    let serve = Serve::start(&[]);
    let ws = connect(&serve.url("/echo")).await;
    let (mut tx, mut rx) = ws.split();
    for i in 0..500 {
        tx.feed(Message::text(format!("m{i}"))).await.expect("feed");
    }
    tx.flush().await.expect("flush");
    for i in 0..500 {
        let message =
            tokio::time::timeout(PATIENCE, rx.next()).await.expect("in time").expect("open").expect("ok");
        assert_eq!(message.as_text(), Some(format!("m{i}").as_str()));
    }
}

/// Closes with 4000 "bye" and returns the server's answer.
async fn close_with_4000_bye(serve: &Serve) -> zapsocket::CloseFrame {
    let mut ws = connect(&serve.url("/echo")).await;
    ws.close(CloseCode(4000), "bye").await.expect("close");
    assert_eq!(next(&mut ws).await, None);
    ws.close_frame().expect("a close frame")
}

#[tokio::test]
async fn echoes_the_close_code() {
    let serve = Serve::start(&[]);
    assert_eq!(close_with_4000_bye(&serve).await.code, CloseCode(4000));
}

#[tokio::test]
async fn echoes_the_close_reason() {
    let serve = Serve::start(&[]);
    let frame = close_with_4000_bye(&serve).await;
    assert_eq!((frame.code, frame.reason.as_str()), (CloseCode(4000), "bye"));
}

#[tokio::test]
async fn broadcast_reaches_every_client_once_in_order_sender_included() {
    let serve = Serve::start(&[]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&serve.url("/broadcast")).await;
        // The pong is sent by the server's handler task, so it has joined the set.
        ws.ping("joined").await.expect("ping");
        let pong = tokio::time::timeout(PATIENCE, ws.recv()).await.expect("in time");
        assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "{pong:?}");
        clients.push(ws);
    }
    for (sender, ws) in clients.iter().enumerate() {
        for n in 0..5 {
            ws.send(format!("{sender}:{n}")).await.expect("send");
        }
    }
    for ws in &mut clients {
        let mut last = [None::<u32>; 3];
        for _ in 0..15 {
            let message = next(ws).await.expect("a relayed message");
            let text = message.as_text().expect("text stays text");
            let (sender, n) = text.split_once(':').expect("sender:n");
            let (sender, n): (usize, u32) = (sender.parse().expect("sender"), n.parse().expect("n"));
            assert_eq!(last[sender].map_or(0, |l| l + 1), n, "in order, once each: {text}");
            last[sender] = Some(n);
        }
        assert_eq!(last, [Some(4); 3]);
    }
    // Sent once every text is relayed: messages of different senders are read on different
    // connections, so their relative order is not defined.
    clients[1].send(vec![1u8, 2, 3]).await.expect("send binary");
    for ws in &mut clients {
        assert_eq!(next(ws).await, Some(Message::binary(vec![1u8, 2, 3])), "binary stays binary");
    }
    // Nothing more: no message was delivered twice.
    for ws in &mut clients {
        let extra = tokio::time::timeout(Duration::from_millis(200), ws.recv()).await;
        assert!(extra.is_err(), "unexpected {extra:?}");
    }
}

#[tokio::test]
async fn plain_http_get_on_root_returns_the_html_page() {
    let serve = Serve::start(&[]);
    let response = http_get(&serve.addr, "/");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-type: text/html"), "{response}");
    assert!(response.contains("data-testid=\"status\""), "the demo chat page: {response:.300}");
    let missing = http_get(&serve.addr, "/nothing-here");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn upgrades_on_an_unknown_path_get_404() {
    let serve = Serve::start(&[]);
    let error = Client::connect(&serve.url("/nope")).await.expect_err("no endpoint there");
    assert_eq!(error.status(), Some(404), "{error}");
}

#[tokio::test]
async fn messages_over_max_message_close_with_1009() {
    let serve = Serve::start(&["--max-message", "1000"]);
    let mut ws = connect(&serve.url("/")).await;
    ws.send(vec![1u8; 1000]).await.expect("send");
    assert_eq!(next(&mut ws).await.map(|m| m.len()), Some(1000));
    ws.send(vec![1u8; 1001]).await.expect("send");
    assert_eq!(next(&mut ws).await, None);
    assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::MESSAGE_TOO_BIG));
}

#[test]
fn serve_exits_cleanly_on_sigint_and_sigterm() {
    for signal in ["-INT", "-TERM"] {
        let mut serve = Serve::start(&[]);
        let killed = Command::new("kill").args([signal, &serve.pid()]).status().expect("run kill");
        assert!(killed.success());
        let status = wait_exit(&mut serve.child);
        assert!(status.success(), "{signal}: {status}");
    }
}

#[test]
fn connect_pipes_stdin_lines_to_the_server_and_replies_to_stdout() {
    let serve = Serve::start(&[]);
    let mut child = Command::new(ZAP)
        .args(["connect", &serve.url("/echo")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zap connect");
    let lines: Vec<String> = (0..200).map(|i| format!("line {i} ü")).collect();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all((lines.join("\n") + "\n").as_bytes()).expect("write stdin");
    drop(stdin);
    let status = wait_exit(&mut child);
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    assert!(status.success(), "{status}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), lines);
}

/// wscat's -x/-w: the messages given (text, hex, a file) go out in command-line order,
/// what arrives within the wait is printed (binary readably), then a clean close.
#[test]
fn connect_executes_messages_in_order_and_prints_the_answers() {
    let serve = Serve::start(&[]);
    let file = std::env::temp_dir().join(format!("zap-connect-x-{}.bin", std::process::id()));
    std::fs::write(&file, b"file\x00\x01").expect("write");
    let output = Command::new(ZAP)
        .args(["connect", &serve.url("/echo"), "-x", "hello", "--hex", "68 69 ff", "-x", "bye", "--file"])
        .arg(&file)
        .args(["-w", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run zap connect");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["hello", "[binary 3 bytes] 68 69 ff |hi.|", "bye", "[binary 6 bytes] 66 69 6c 65 00 01 |file..|"]
    );
    let bad = Command::new(ZAP)
        .args(["connect", &serve.url("/echo"), "--hex", "6g"])
        .stdin(Stdio::null())
        .output()
        .expect("run zap connect");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad hex"), "{bad:?}");
}

/// The interactive mode, under a pseudo-terminal (`script` from util-linux): the prompt,
/// a text echoed, a binary message from hex, a ping's pong, `/quit`.
#[test]
fn connect_is_interactive_on_a_terminal() {
    let serve = Serve::start(&[]);
    let command = format!("{ZAP} connect {}", serve.url("/echo"));
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script (util-linux)");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let mut wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !screen.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => screen.push_str(&chunk),
                Err(_) => panic!("{needle:?} not on the terminal in time:\n{screen}"),
            }
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    wait_for("connected");
    for (line, answer) in [
        ("hello there", "< hello there"),
        ("/binary 68 69 00", "< [binary 3 bytes] 68 69 00 |hi.|"),
        ("/ping abc", "< pong: abc"),
        ("/help", "/binary HEX"),
    ] {
        stdin.write_all(format!("{line}\n").as_bytes()).expect("type");
        wait_for(answer);
    }
    stdin.write_all(b"/quit\n").expect("type");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
}

#[test]
fn connect_fails_with_a_clear_message() {
    let serve = Serve::start(&[]);
    let output = Command::new(ZAP)
        .args(["connect", &serve.url("/nope")])
        .stdin(Stdio::null())
        .output()
        .expect("run zap connect");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: handshake failed (404)"), "{stderr}");
}

/// An HTTP CONNECT proxy on port 0 that tunnels every request to `to`, whatever name it
/// asks for, and records the authorities asked for; and a server that answers every
/// request with a 301 to `location`. Both run on the caller's runtime.
async fn proxy_and_redirector(to: String, location: String) -> (String, String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok() {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("address"));
    let redirector_url = format!("ws://{}/old", redirector.local_addr().expect("address"));
    let targets = Arc::new(Mutex::new(Vec::new()));
    let seen = targets.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = proxy.accept().await {
            let (to, seen) = (to.clone(), seen.clone());
            tokio::spawn(async move {
                let head = read_head(&mut client).await;
                seen.lock().expect("lock").push(head.split(' ').nth(1).unwrap_or_default().to_owned());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&to).await else { return };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut client, _)) = redirector.accept().await {
            let _ = read_head(&mut client).await;
            let answer = format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = client.write_all(answer.as_bytes()).await;
        }
    });
    (proxy_url, redirector_url, targets)
}

/// `zap connect` with the proxy variables of the environment set to `env` only.
fn zap_connect(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(ZAP);
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(name);
    }
    command.arg("connect").args(args).envs(env.iter().copied()).stdin(Stdio::null());
    command.output().expect("run zap connect")
}

/// `zap connect --proxy URL`; `HTTP_PROXY` from the environment, to a name only the
/// proxy resolves; `--no-proxy` ignoring it; `-L` following a redirect, and without it,
/// the 301 with a hint.
#[test]
fn connect_goes_through_a_proxy_and_follows_redirects_with_l() {
    let serve = Serve::start(&[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (proxy, redirector, targets) =
        runtime.block_on(proxy_and_redirector(serve.addr.clone(), serve.url("/echo")));
    let stdout = |output: &std::process::Output| String::from_utf8_lossy(&output.stdout).trim().to_owned();

    let output = zap_connect(&[&serve.url("/echo"), "--proxy", &proxy, "-x", "via --proxy", "-w", "1"], &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "via --proxy");

    let env = [("HTTP_PROXY", proxy.as_str())];
    let output = zap_connect(&["ws://echo.invalid/echo", "-x", "via HTTP_PROXY", "-w", "1"], &env);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "via HTTP_PROXY");
    let output = zap_connect(&["ws://echo.invalid/echo", "--no-proxy", "-x", "direct", "-w", "1"], &env);
    assert!(!output.status.success(), "echo.invalid does not resolve: {output:?}");
    assert_eq!(*targets.lock().expect("lock"), [serve.addr.clone(), "echo.invalid:80".to_owned()]);

    let output = zap_connect(&[&redirector, "-x", "redirected", "-w", "1"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("handshake failed (301)") && stderr.contains("-L follows it"), "{stderr}");
    let output = zap_connect(&[&redirector, "-L", "-x", "redirected", "-w", "1"], &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "redirected");
}

/// Regression: fragments already assembled used to count against the read-ahead limit,
/// so a fragmented message over 64 KiB stalled when a read ended on a frame boundary
/// (Autobahn 9.3.x, 9.4.x).
#[tokio::test]
async fn echoes_a_fragmented_message_larger_than_the_read_buffer() {
    let serve = Serve::start(&[]);
    let mut ws = connect(&serve.url("/echo")).await;
    ws.send_fragment(vec![1u8; 100_000], false).await.expect("first fragment");
    // Let the server read the first fragment on its own, ending its read on the frame's end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send_fragment(vec![2u8; 10], true).await.expect("last fragment");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await;
    let echoed = echoed.expect("echo within 5 s").expect("open").expect("ok");
    assert_eq!(echoed.len(), 100_010);
}

#[tokio::test]
async fn a_handshake_rate_per_ip_answers_429_past_the_burst() {
    let serve = Serve::start(&["--max-handshake-rate-per-ip", "0.5:2"]);
    let _first = connect(&serve.url("/echo")).await;
    let _second = connect(&serve.url("/echo")).await;
    let err = Client::connect(&serve.url("/echo")).await.expect_err("the third is over the burst");
    assert_eq!(err.status(), Some(429), "{err}");
    // Plain HTTP is not counted.
    assert!(http_get(&format!("127.0.0.1:{}", serve.port()), "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_bad_handshake_rate_is_refused_with_a_clear_message() {
    let out = Command::new(ZAP).args(["serve", "--port", "0", "--max-handshake-rate", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max-handshake-rate") && stderr.contains("above 0"), "{stderr}");
}
