//! Redirects of the upgrade request, through real sockets: a raw server in the test
//! answers 301/302/303/307/308 on some paths and hands every other request to the real
//! WebSocket server (so a redirect to its own origin ends at a real upgrade); the
//! WebSocket server reports the headers it got.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::proxy::{ProxyOptions, TestProxy, read_head};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use zapsocket::{Client, Server, WebSocket};

/// A WebSocket server that sends the path and the credential headers it got, then
/// closes: `"/final auth=Some(..) cookie=Some(..) other=Some(..)"`.
async fn final_server() -> SocketAddr {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(|ws: WebSocket| async move {
        let request = ws.request().unwrap();
        let seen = format!(
            "{} auth={:?} cookie={:?} other={:?}",
            request.path(),
            request.header("authorization"),
            request.header("cookie"),
            request.header("x-other"),
        );
        let _ = ws.send(seen).await;
    }));
    addr
}

/// A redirect rule: a path, the status answered for it and its `Location` (none if empty).
type Rule = (&'static str, u16, String);

/// The raw server: redirect rules, made from its own address; a request for any other
/// path is passed, head and all, to `backend`. Keeps every request head it got.
struct Redirector {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Redirector {
    async fn start(backend: SocketAddr, rules: impl FnOnce(SocketAddr) -> Vec<Rule>) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let rules = Arc::new(rules(addr));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, backend, rules.clone(), seen.clone()));
            }
        });
        Redirector { addr, heads }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

async fn answer(
    mut stream: TcpStream,
    backend: SocketAddr,
    rules: Arc<Vec<Rule>>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let head = read_head(&mut stream).await;
    seen.lock().unwrap().push(head.clone());
    let path = head.split(' ').nth(1).unwrap_or_default();
    match rules.iter().find(|(p, _, _)| *p == path) {
        Some((_, status, location)) => {
            let location = match location.as_str() {
                "" => String::new(),
                location => format!("Location: {location}\r\n"),
            };
            let answer = format!("HTTP/1.1 {status} Moved\r\n{location}Content-Length: 5\r\n\r\nmoved");
            let _ = stream.write_all(answer.as_bytes()).await;
            // Keep the connection open, as a server with keep-alive does: the client
            // must not wait for more.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read_head(&mut stream)).await;
        }
        None => {
            let mut upstream = TcpStream::connect(backend).await.unwrap();
            upstream.write_all(head.as_bytes()).await.unwrap();
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
        }
    }
}

async fn first_text(mut ws: WebSocket) -> String {
    let message = zapsocket::time::timeout(std::time::Duration::from_secs(5), ws.recv()).await.unwrap();
    message.unwrap().unwrap().as_text().unwrap().to_owned()
}

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let backend = final_server().await;
    let redirector =
        Redirector::start(backend, |_| vec![("/old", 301, format!("ws://{backend}/final"))]).await;
    let error = Client::connect(&redirector.url("/old")).await.unwrap_err();
    assert!(error.is_handshake(), "{error}");
    assert_eq!(error.status(), Some(301));
    assert_eq!(error.body(), Some(&b"moved"[..]), "the refusal's body, as for any status");
    assert_eq!(redirector.requests(), 1);
}

#[tokio::test]
async fn each_redirect_status_is_followed_to_an_absolute_or_relative_location() {
    let backend = final_server().await;
    let redirector = Redirector::start(backend, |own| {
        let mut rules: Vec<Rule> =
            [("/301", 301), ("/302", 302), ("/303", 303), ("/307", 307), ("/308", 308)]
                .into_iter()
                .map(|(path, status)| (path, status, format!("ws://{backend}/final")))
                .collect();
        rules.push(("/relative", 302, "/final".to_owned()));
        rules.push(("/dir/relative", 307, "../final?x=1".to_owned()));
        rules.push(("/http", 308, format!("http://{own}/final")));
        rules
    })
    .await;
    for path in ["/301", "/302", "/303", "/307", "/308", "/relative", "/dir/relative", "/http"] {
        let ws = Client::builder().follow_redirects(1).connect(&redirector.url(path)).await.unwrap();
        assert!(first_text(ws).await.starts_with("/final "), "{path}");
    }
}

#[tokio::test]
async fn a_redirect_loop_fails_after_max_hops_naming_the_count() {
    let backend = final_server().await;
    let redirector = Redirector::start(backend, |_| vec![("/loop", 302, "/loop".to_owned())]).await;
    let error = Client::builder().follow_redirects(3).connect(&redirector.url("/loop")).await.unwrap_err();
    assert!(error.is_handshake(), "{error}");
    assert_eq!(error.status(), Some(302));
    assert_eq!(error.to_string(), "handshake failed (302): too many redirects: 3 followed, then another");
    assert_eq!(redirector.requests(), 4, "the first request and 3 redirects");
}

fn with_credentials() -> zapsocket::ClientBuilder {
    Client::builder()
        .follow_redirects(2)
        .header("Authorization", "Bearer t0ken")
        .header("Cookie", "session=1")
        .header("X-Other", "kept")
}

#[tokio::test]
async fn authorization_and_cookie_are_dropped_across_origins_and_kept_on_the_same_one() {
    let backend = final_server().await;
    let redirector = Redirector::start(backend, |own| {
        vec![
            ("/same", 307, "/final".to_owned()),
            ("/same-absolute", 301, format!("http://{own}/final")),
            ("/other-port", 307, format!("ws://{backend}/final")),
            ("/other-host", 302, format!("ws://localhost:{}/final", own.port())),
            ("/chain", 302, "/other-port".to_owned()),
        ]
    })
    .await;
    for path in ["/same", "/same-absolute"] {
        let same = first_text(with_credentials().connect(&redirector.url(path)).await.unwrap()).await;
        assert_eq!(same, r#"/final auth=Some("Bearer t0ken") cookie=Some("session=1") other=Some("kept")"#);
    }
    // Another port, another host on the same port (localhost for 127.0.0.1), and a
    // same-origin hop before another origin.
    for path in ["/other-port", "/other-host", "/chain"] {
        let other = first_text(with_credentials().connect(&redirector.url(path)).await.unwrap()).await;
        assert_eq!(other, r#"/final auth=None cookie=None other=Some("kept")"#, "{path}");
    }
    let heads = redirector.heads.lock().unwrap().clone();
    let to_first_origin: Vec<&String> =
        heads.iter().filter(|head| head.contains("Host: 127.0.0.1")).collect();
    assert!(to_first_origin.iter().all(|head| head.contains("Authorization: Bearer t0ken")), "{heads:?}");
    let to_localhost: Vec<&String> = heads.iter().filter(|head| head.contains("Host: localhost")).collect();
    assert_eq!(to_localhost.len(), 1, "{heads:?}");
    assert!(!to_localhost[0].contains("Authorization") && !to_localhost[0].contains("Cookie"));
}

#[tokio::test]
async fn a_location_that_cannot_be_followed_is_a_clear_error() {
    let backend = final_server().await;
    let redirector = Redirector::start(backend, |_| {
        vec![("/ftp", 301, "ftp://files.example/x".to_owned()), ("/nowhere", 302, String::new())]
    })
    .await;
    let error = Client::builder().follow_redirects(5).connect(&redirector.url("/ftp")).await.unwrap_err();
    assert!(error.is_handshake() && error.status() == Some(301), "{error}");
    assert!(error.to_string().contains("ftp: is not ws, wss, http or https"), "{error}");
    let error = Client::builder().follow_redirects(5).connect(&redirector.url("/nowhere")).await.unwrap_err();
    assert_eq!(error.status(), Some(302), "without a Location, the 3xx itself: {error}");
}

/// Each hop goes through the proxy, asked for the hop's host and port.
#[tokio::test]
async fn redirects_are_followed_through_a_proxy() {
    let backend = final_server().await;
    let redirector =
        Redirector::start(backend, |_| vec![("/old", 301, format!("ws://{backend}/final"))]).await;
    let proxy = TestProxy::start(ProxyOptions::default()).await;
    let ws = Client::builder()
        .proxy(&proxy.url())
        .follow_redirects(1)
        .connect(&redirector.url("/old"))
        .await
        .unwrap();
    assert!(first_text(ws).await.starts_with("/final "));
    assert_eq!(proxy.targets(), [redirector.addr.to_string(), backend.to_string()]);
}
