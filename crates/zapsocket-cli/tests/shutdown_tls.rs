//! `zap serve` for real: graceful shutdown on SIGTERM with 100 clients (each gets every
//! queued message, then 1001), and wss:// with a test CA (the zapsocket client, `zap
//! connect --ca`, and Node's `ws` with NODE_EXTRA_CA_CERTS), the origin allow-list.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use zapsocket::{Certificate, Client, CloseCode, Message, WebSocket};

mod common;
use common::{PATIENCE, Serve, ZAP};

/// Sent until every client has one: `/broadcast` relays only to clients whose handler
/// has registered them, which happens just after their handshake.
const PROBE: &str = "probe";

/// The next data message, skipping pings, pongs and the registration probes.
async fn data(ws: &mut WebSocket) -> Option<Message> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.recv()).await.expect("a message in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) if message.as_text() == Some(PROBE) => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(e)) => panic!("receive failed: {e}"),
            None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_clients_closes_each_with_1001_after_every_queued_message() {
    const CLIENTS: usize = 100;
    const MESSAGES: usize = 100;
    // A generous deadline: under load the 100 readers may be slow; the property is the order.
    let serve = Serve::start(&["--shutdown-timeout", "60"]);
    let url = format!("ws://{}/broadcast", serve.addr);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect(&url).await.expect("connect"));
    }
    // Wait until the server relays to every client (each has seen a probe).
    for n in 1..CLIENTS {
        loop {
            clients[0].send(PROBE).await.expect("probe");
            let seen = tokio::time::timeout(Duration::from_millis(200), clients[n].recv()).await;
            if matches!(seen, Ok(Some(Ok(Message::Text(t)))) if t == PROBE) {
                break;
            }
        }
    }
    // One sender; the server relays each message to all 100, which do not read yet: the
    // messages wait in the server's queues and the TCP buffers.
    let payload = "m".repeat(1000);
    let sender = &mut clients[0];
    for i in 0..MESSAGES {
        sender.send(format!("{i}:{payload}")).await.expect("send");
    }
    // The sender's own copy of the last message: the server has relayed them all.
    for i in 0..MESSAGES {
        let text = data(sender).await.expect("relayed back");
        assert!(text.as_text().unwrap_or_default().starts_with(&format!("{i}:")));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Command::new("kill").args(["-TERM", &serve.child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let mut serve = serve;
    let readers = clients.into_iter().enumerate().map(|(n, mut ws)| {
        tokio::spawn(async move {
            let expected = if n == 0 { 0 } else { MESSAGES };
            for i in 0..expected {
                let message =
                    data(&mut ws).await.unwrap_or_else(|| panic!("client {n}: closed before message {i}"));
                assert!(message.as_text().unwrap_or_default().starts_with(&format!("{i}:")), "client {n}");
            }
            assert!(data(&mut ws).await.is_none(), "client {n}: nothing after the queued messages");
            ws.close_frame().map(|f| f.code)
        })
    });
    for (n, reader) in readers.enumerate() {
        let code = reader.await.expect("reader");
        assert_eq!(code, Some(CloseCode::GOING_AWAY), "client {n}");
    }
    let status = tokio::task::spawn_blocking(move || serve.exit_in_time()).await.expect("wait");
    assert!(status.success(), "{status}");
}

/// A CA and a certificate for localhost that it signed, written to a fresh directory:
/// (dir, ca.pem, cert.pem, key.pem).
fn test_pki(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("zap-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer equals its subject looks self-signed to OpenSSL.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "zapsocket test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".into()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    (dir, paths.0, paths.1, paths.2)
}

#[tokio::test]
async fn serve_speaks_wss_to_clients_that_trust_its_ca() {
    let (dir, ca, cert, key) = test_pki("wss");
    let serve = Serve::start(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let url = format!("wss://localhost:{}/echo", serve.port());

    let trusted = Certificate::from_pem_file(&ca).expect("ca");
    let mut ws = Client::builder().add_root_certificate(trusted).connect(&url).await.expect("wss connect");
    ws.send("secure").await.expect("send");
    assert_eq!(data(&mut ws).await.and_then(|m| m.as_text().map(str::to_owned)).as_deref(), Some("secure"));
    let err = Client::connect(&url).await.expect_err("the test CA is not a system root");
    assert!(err.is_tls(), "{err}");

    // zap connect --ca, piped.
    let mut child = Command::new(ZAP)
        .args(["connect", &url, "--ca", ca.to_str().unwrap_or_default()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zap connect");
    child.stdin.take().expect("stdin").write_all(b"over wss\n").expect("write");
    let output = child.wait_with_output().expect("zap connect");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("over wss"), "{stdout}");

    // zap connect --no-check: the test CA is not trusted, and the server is reached
    // anyway; without the flag, a clear refusal.
    let output = Command::new(ZAP)
        .args(["connect", &url, "-x", "unchecked", "-w", "1", "--no-check"])
        .stdin(Stdio::null())
        .output()
        .expect("zap connect --no-check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("unchecked"), "{stdout}");
    let output = Command::new(ZAP)
        .args(["connect", &url, "-x", "x"])
        .stdin(Stdio::null())
        .output()
        .expect("zap connect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("UnknownIssuer"), "{stderr}");

    node_client_over_wss(&url, &ca);
    let _ = std::fs::remove_dir_all(dir);
}

/// Node's `ws` (tests/interop/node) runs its echo script over wss:// with the test CA.
fn node_client_over_wss(url: &str, ca: &std::path::Path) {
    let (Some(node), Some(dir)) =
        (std::env::var_os("ZAPSOCKET_NODE"), std::env::var_os("ZAPSOCKET_INTEROP_DIR"))
    else {
        assert_ne!(std::env::var("ZAPSOCKET_INTEROP").as_deref(), Ok("1"), "ZAPSOCKET_NODE is needed");
        eprintln!("skipped: Node ws peer not configured (scripts/interop-env.sh)");
        return;
    };
    let script = PathBuf::from(dir).join("node/echo_client.mjs");
    if !script.exists() || node.is_empty() {
        eprintln!("skipped: Node ws peer not installed");
        return;
    }
    let output =
        Command::new(node).arg(script).arg(url).env("NODE_EXTRA_CA_CERTS", ca).output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node ws over wss: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""ok":true"#), "{stdout}");
}

#[tokio::test]
async fn serve_refuses_origins_outside_the_allow_list_with_403() {
    let serve =
        Serve::start(&["--allowed-origin", "https://a.example", "--allowed-origin", "https://b.example"]);
    let url = format!("ws://{}/echo", serve.addr);
    let err =
        Client::builder().header("Origin", "https://evil.example").connect(&url).await.expect_err("refused");
    assert_eq!(err.status(), Some(403));
    Client::builder().header("Origin", "https://b.example").connect(&url).await.expect("allowed origin");
}

#[tokio::test]
async fn serve_accepts_a_subprotocol_given_on_the_command_line() {
    let serve = Serve::start(&["--subprotocol", "chat.v2"]);
    let url = format!("ws://{}/echo", serve.addr);
    let ws = Client::builder().protocol("chat.v1").protocol("chat.v2").connect(&url).await.expect("connect");
    assert_eq!(ws.protocol(), Some("chat.v2"));
}

/// A client that trusts `ca` (a PEM file), with a client certificate if given.
fn trusting(ca: &std::path::Path, identity: Option<(&str, &str)>) -> zapsocket::ClientBuilder {
    use std::sync::Arc;
    use zapsocket::rustls::{
        self, pki_types::CertificateDer, pki_types::PrivateKeyDer, pki_types::pem::PemObject,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).expect("ca")).expect("root");
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    Client::builder().tls_config(Arc::new(config))
}

/// SIGHUP reads the certificate files again: the next handshakes get the new
/// certificate, without a restart.
#[tokio::test]
async fn serve_reloads_its_certificate_on_sighup() {
    let (dir, old_ca, cert, key) = test_pki("reload");
    let (new_dir, new_ca, new_cert, new_key) = test_pki("reload-new");
    let serve = Serve::start(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let url = format!("wss://localhost:{}/echo", serve.port());
    trusting(&old_ca, None).connect(&url).await.expect("the first certificate");
    std::fs::copy(&new_cert, &cert).expect("renew cert");
    std::fs::copy(&new_key, &key).expect("renew key");
    assert!(Command::new("kill").args(["-HUP", &serve.pid()]).status().expect("kill").success());
    let deadline = std::time::Instant::now() + PATIENCE;
    while trusting(&new_ca, None).connect(&url).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the renewed certificate was not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = trusting(&old_ca, None).connect(&url).await.expect_err("the old certificate is gone");
    assert!(err.is_tls(), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(new_dir);
}

/// --tls-client-ca: a client certificate signed by that CA is required.
#[tokio::test]
async fn serve_requires_client_certificates_with_a_client_ca() {
    let (dir, ca, cert, key) = test_pki("mtls");
    let client_ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "zapsocket client CA");
    let client_ca = params.self_signed(&client_ca_key).expect("client ca");
    let client_ca_path = dir.join("client-ca.pem");
    std::fs::write(&client_ca_path, client_ca.pem()).expect("write");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = CertificateParams::new(vec!["ada".into()])
        .expect("params")
        .signed_by(&client_key, &client_ca, &client_ca_key)
        .expect("client cert");
    let serve = Serve::start(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
        "--tls-client-ca",
        client_ca_path.to_str().unwrap_or_default(),
    ]);
    let url = format!("wss://localhost:{}/echo", serve.port());
    let (pem, key_pem) = (client_cert.pem(), client_key.serialize_pem());
    let mut ws =
        trusting(&ca, Some((&pem, &key_pem))).connect(&url).await.expect("with a client certificate");
    ws.send("mutual").await.expect("send");
    assert_eq!(data(&mut ws).await.and_then(|m| m.as_text().map(str::to_owned)).as_deref(), Some("mutual"));
    let without = match trusting(&ca, None).connect(&url).await {
        Err(e) => e.to_string(),
        Ok(mut ws) => format!("{:?}", ws.recv().await), // TLS 1.3: the alert may come after
    };
    assert!(without.contains("CertificateRequired") || without.contains("certificate"), "{without}");
    let _ = std::fs::remove_dir_all(dir);
}
