//! The Rust client keeps going: reconnection with backoff, session recovery, rejoin
//! after a server restart, the offline buffer, and the close codes that stop it.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use zapsocket::CloseCode;
use zapsocket_realtime::client::{Client, ConnState, Reconnect};
use zapsocket_realtime::{Hub, ReplyError, SUBPROTOCOL, Socket};

const PATIENCE: Duration = Duration::from_secs(10);

/// Serves `hub` on `port` (0: any); returns the port and the serving task.
async fn serve_on(hub: &Hub, port: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let server = zapsocket::Server::builder().port(port).subprotocol(SUBPROTOCOL).bind().await.unwrap();
    let port = server.local_addr().port();
    let hub = hub.clone();
    let task = tokio::spawn(async move {
        let _ = server.serve(move |ws| hub.clone().handle(ws)).await;
    });
    (port, task)
}

fn fast() -> Reconnect {
    let mut policy = Reconnect::default();
    policy.initial_delay = Duration::from_millis(50);
    policy.max_delay = Duration::from_millis(200);
    policy
}

async fn connect(port: u16, policy: Reconnect) -> Client {
    Client::builder().reconnect(Some(policy)).connect(&format!("ws://127.0.0.1:{port}/")).await.unwrap()
}

async fn wait_state(client: &Client, wanted: fn(&ConnState) -> bool) {
    let mut states = client.state_changes();
    tokio::time::timeout(PATIENCE, states.wait_for(wanted)).await.expect("state in time").unwrap();
}

async fn kick(hub: &Hub, session: &str, code: u16) {
    hub.socket(session).unwrap().close(CloseCode(code), "test").await;
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_and_nothing_is_missed_or_repeated() {
    let hub = Hub::new();
    let (port, _server) = serve_on(&hub, 0).await;
    let client = connect(port, fast()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    client.on("n", move |n: u32| {
        let _ = tx.send(n);
    });
    client.join("r").await.unwrap();
    let session = client.session();
    for n in 0..10 {
        hub.to("r").emit("n", &n).unwrap();
    }
    for n in 0..10 {
        assert_eq!(rx.recv().await, Some(n));
    }
    kick(&hub, &session, 1012).await;
    wait_state(&client, |s| matches!(s, ConnState::Reconnecting { .. })).await;
    for n in 10..30 {
        hub.to("r").emit("n", &n).unwrap(); // recorded while the client is away
    }
    wait_state(&client, |s| *s == ConnState::Connected).await;
    for n in 30..40 {
        hub.to("r").emit("n", &n).unwrap();
    }
    for n in 10..40 {
        let got = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap();
        assert_eq!(got, Some(n), "in order, no gap");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "no duplicate");
    assert_eq!(client.session(), session, "the same session");
    assert_eq!(hub.socket(&session).unwrap().rooms(), ["r"]);
}

#[tokio::test]
async fn after_a_server_restart_on_the_same_port_the_client_rejoins_its_rooms() {
    let first = Hub::new();
    let (port, server) = serve_on(&first, 0).await;
    let client = connect(port, fast()).await;
    client.join("lobby").await.unwrap();
    let old_session = client.session();
    server.abort();
    kick(&first, &old_session, 1012).await;
    wait_state(&client, |s| matches!(s, ConnState::Reconnecting { attempt } if *attempt >= 2)).await;
    let second = Hub::new();
    let (_, _server) = serve_on(&second, port).await;
    wait_state(&client, |s| *s == ConnState::Connected).await;
    assert_ne!(client.session(), old_session, "a new epoch: a new session");
    let members = second.members("lobby").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id, client.session(), "rejoined");
    assert_eq!(client.hello().epoch, second.epoch());
}

#[tokio::test]
async fn the_offline_buffer_keeps_order_is_bounded_and_sent_requests_fail() {
    let hub = Hub::new();
    let (tx, mut got) = mpsc::unbounded_channel();
    hub.on("note", move |_: Socket, n: u32| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(n);
        }
    });
    hub.procedure("slow", |_: Socket, (): ()| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, ReplyError>(())
    });
    let (port, _server) = serve_on(&hub, 0).await;
    let mut policy = fast();
    policy.initial_delay = Duration::from_millis(400);
    policy.jitter = 0.0;
    let client = Client::builder()
        .reconnect(Some(policy))
        .max_buffered(5)
        .connect(&format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.call::<_, ()>("slow", &()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    kick(&hub, &client.session(), 1001).await;
    wait_state(&client, |s| matches!(s, ConnState::Reconnecting { .. })).await;
    let err = in_flight.await.unwrap().unwrap_err();
    assert_eq!(err.code.as_str(), "disconnected", "a sent request fails");
    for n in 0..4 {
        client.emit("note", &n).await.unwrap();
    }
    let buffered_ack = {
        let client = client.clone();
        tokio::spawn(async move {
            client.emit_with_ack::<_, Value>("$members", &serde_json::json!({"room": "x"})).await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let full = client.emit("note", &4).await.unwrap_err();
    assert_eq!(full.code.as_str(), "limit", "five envelopes are buffered");
    wait_state(&client, |s| *s == ConnState::Connected).await;
    for n in 0..4 {
        assert_eq!(tokio::time::timeout(PATIENCE, got.recv()).await.unwrap(), Some(n), "in order");
    }
    let members = buffered_ack.await.unwrap().unwrap();
    assert_eq!(members["count"], 0, "a buffered request is sent after reconnecting and answered");
}

#[tokio::test]
async fn close_codes_that_forbid_it_and_a_deliberate_close_do_not_reconnect() {
    let hub = Hub::new();
    let (port, _server) = serve_on(&hub, 0).await;
    let client = connect(port, fast()).await;
    kick(&hub, &client.session(), 1008).await;
    wait_state(&client, |s| *s == ConnState::Closed).await;
    let err = client.emit("x", &1).await.unwrap_err();
    assert_eq!(err.code.as_str(), "disconnected");

    let client = connect(port, fast()).await;
    client.close().await;
    assert_eq!(client.state(), ConnState::Closed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.metrics().connections, 0, "no reconnection");
}

/// A TCP proxy in front of `upstream` that can freeze: while frozen it forwards nothing
/// either way and closes nothing, as a dead network or a suspended server looks.
async fn freezable_proxy(upstream: u16) -> (u16, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (frozen_tx, frozen) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ),
                (Box::new(sr), Box::new(cw)),
            ] {
                let mut frozen = frozen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf).await {
                        // Frozen: hold the bytes (and the connection) until thawed.
                        if frozen.wait_for(|f| !f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (port, frozen_tx)
}

#[tokio::test]
async fn the_heartbeat_finds_a_connection_that_died_without_a_close_and_reconnects() {
    let hub = Hub::new();
    let (port, _server) = serve_on(&hub, 0).await;
    let (proxied, freeze) = freezable_proxy(port).await;
    let client = Client::builder()
        .reconnect(Some(fast()))
        .heartbeat(Duration::from_millis(200), Duration::from_millis(300))
        .connect(&format!("ws://127.0.0.1:{proxied}/"))
        .await
        .unwrap();
    // Idle but healthy: the pings are answered, the connection stays.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(*client.state_changes().borrow(), ConnState::Connected);
    // Everything stops getting through, nothing is closed.
    freeze.send(true).unwrap();
    wait_state(&client, |s| matches!(s, ConnState::Reconnecting { .. })).await;
    // Back: a new connection through the proxy serves requests.
    freeze.send(false).unwrap();
    wait_state(&client, |s| *s == ConnState::Connected).await;
    client.join("after").await.unwrap();
}

/// docs/RELIABILITY.md M5 and L3 (a defect, fixed): a server that refuses the upgrade itself (its
/// `authorize` hook answers 401, an expired token) is not a network failure: the client
/// must stop (or surface the refusal), not dial again forever. Today only a connect
/// middleware's `$error` counts as a refusal (`ConnectError::Refused`); an HTTP 4xx is
/// retried with backoff without end.
#[tokio::test]
async fn an_http_refusal_on_reconnection_stops_the_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let hub = Hub::new();
    let refuse = Arc::new(AtomicBool::new(false));
    let refusals = Arc::new(AtomicUsize::new(0));
    let (r, n) = (refuse.clone(), refusals.clone());
    let server = zapsocket::Server::builder()
        .subprotocol(SUBPROTOCOL)
        .authorize(move |_| {
            let (refuse, refusals) = (r.clone(), n.clone());
            async move {
                if refuse.load(Ordering::SeqCst) {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    return Err(zapsocket::HttpResponse::text(401, "token expired"));
                }
                Ok(zapsocket::Accept::new())
            }
        })
        .bind()
        .await
        .unwrap();
    let port = server.local_addr().port();
    let h = hub.clone();
    tokio::spawn(server.serve(move |ws| h.clone().handle(ws)));
    let client = connect(port, fast()).await;
    refuse.store(true, Ordering::SeqCst);
    kick(&hub, &client.session(), 1001).await;
    wait_state(&client, |s| *s == ConnState::Closed).await;
    let tried = refusals.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(refusals.load(Ordering::SeqCst), tried, "no attempt after the client closed");
    assert!(tried <= 1, "{tried} attempts refused with 401");
}

/// With `retry_first_connect`, a client started before its server keeps trying with the
/// reconnection's backoff and connects once the server is up; without it, the first
/// failure is the answer. A refusal (404) is final either way.
#[tokio::test]
async fn the_first_connection_retries_when_asked() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    assert!(Client::builder().reconnect(Some(fast())).connect(&url).await.is_err(), "no server yet");
    let early = tokio::spawn({
        let url = url.clone();
        async move { Client::builder().reconnect(Some(fast())).retry_first_connect(true).connect(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hub = Hub::new();
    let (_, _server) = serve_on(&hub, port).await;
    let client = tokio::time::timeout(PATIENCE, early).await.expect("in time").unwrap().expect("connected");
    assert_eq!(client.state(), ConnState::Connected);

    let only_chat = zapsocket::Server::builder().path("/chat").bind().await.unwrap();
    let missing = format!("ws://{}/nope", only_chat.local_addr());
    let hub = hub.clone();
    tokio::spawn(only_chat.serve(move |ws| hub.clone().handle(ws)));
    let started = std::time::Instant::now();
    let refused = Client::builder().reconnect(Some(fast())).retry_first_connect(true).connect(&missing).await;
    assert!(refused.is_err() && started.elapsed() < Duration::from_secs(1), "a 404 is not retried");
}

/// A CONNECT proxy on port 0 that answers `status` to every CONNECT (200: tunnels to the
/// target asked for); returns its URL and the targets asked for.
async fn connect_proxy(status: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = targets.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let target = String::from_utf8_lossy(&head).split(' ').nth(1).unwrap_or_default().to_owned();
                seen.lock().unwrap().push(target.clone());
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = client.write_all(answer.as_bytes()).await;
                if status.starts_with("200") {
                    let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, targets)
}

/// `proxy(url)` and `no_proxy()` pass through to the WebSocket client; a proxy's 407 is a
/// refusal, final like a server's 4xx.
#[tokio::test]
async fn the_realtime_client_goes_through_a_proxy() {
    let hub = Hub::new();
    let (port, _server) = serve_on(&hub, 0).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let (proxy, targets) = connect_proxy("200 Connection established").await;
    let client = Client::builder().proxy(&proxy).connect(&url).await.expect("through the proxy");
    assert_eq!(client.state(), ConnState::Connected);
    assert_eq!(*targets.lock().unwrap(), [format!("127.0.0.1:{port}")]);
    let direct = Client::builder().proxy(&proxy).no_proxy().connect(&url).await.expect("direct");
    assert_eq!(direct.state(), ConnState::Connected);
    assert_eq!(targets.lock().unwrap().len(), 1, "no_proxy() went direct");

    let (refusing, asked) = connect_proxy("407 Proxy Authentication Required").await;
    let started = std::time::Instant::now();
    let refused = Client::builder()
        .reconnect(Some(fast()))
        .retry_first_connect(true)
        .proxy(&refusing)
        .connect(&url)
        .await;
    let Err(zapsocket_realtime::client::ConnectError::WebSocket(error)) = refused else {
        panic!("refused by the proxy: {refused:?}")
    };
    assert!(error.is_proxy() && error.status() == Some(407), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1) && asked.lock().unwrap().len() == 1, "not retried");
}

/// The realtime client takes the WebSocket client's TLS options: here the no-check one,
/// against a wss:// hub whose certificate nothing vouches for.
#[tokio::test]
async fn the_realtime_client_takes_tls_options() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let identity =
        zapsocket::Identity::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let server = zapsocket::Server::builder().tls(identity).subprotocol(SUBPROTOCOL).bind().await.unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let hub = Hub::new();
    hub.procedure("add", |_: Socket, (a, b): (i64, i64)| async move { Ok::<_, ReplyError>(a + b) });
    let h = hub.clone();
    tokio::spawn(server.serve(move |ws| h.clone().handle(ws)));
    assert!(Client::builder().reconnect(None).connect(&url).await.is_err(), "self-signed: refused");
    let client =
        Client::builder().reconnect(None).danger_accept_invalid_certs(true).connect(&url).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", &(2, 3)).await.unwrap(), 5);
    let trusted = zapsocket::Certificate::from_pem(cert.pem().as_bytes()).unwrap();
    let client = Client::builder().reconnect(None).add_root_certificate(trusted).connect(&url).await.unwrap();
    assert_eq!(client.call::<_, i64>("add", &(4, 5)).await.unwrap(), 9);
}
