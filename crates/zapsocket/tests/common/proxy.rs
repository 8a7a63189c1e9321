//! A tiny HTTP CONNECT proxy (RFC 9110 §9.3.6) on port 0, and a TLS test CA.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a [`TestProxy`] answers `CONNECT`.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// The `Proxy-Authorization` value required; without it (or with another), 407.
    pub authorization: Option<&'static str>,
    /// Refuse every `CONNECT` with this status line (`403 Forbidden`).
    pub refuse: Option<&'static str>,
    /// Where every tunnel goes, whatever name was asked for (the client does not resolve
    /// the server's name: the proxy does).
    pub to: Option<SocketAddr>,
}

/// A proxy that tunnels to the target of each `CONNECT` with `copy_bidirectional`; it
/// stops with the test's runtime.
pub struct TestProxy {
    pub addr: SocketAddr,
    /// The request head of each `CONNECT`, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub async fn start(options: ProxyOptions) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, options.clone(), seen.clone()));
            }
        });
        TestProxy { addr, requests }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The authorities asked for (`host:port`), in order.
    pub fn targets(&self) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        requests.iter().map(|head| head.split(' ').nth(1).unwrap_or_default().to_owned()).collect()
    }
}

async fn serve(mut client: TcpStream, options: ProxyOptions, seen: Arc<Mutex<Vec<String>>>) {
    let head = read_head(&mut client).await;
    seen.lock().unwrap().push(head.clone());
    let authority = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let authorization = head
        .lines()
        .find_map(|line| {
            line.strip_prefix("Proxy-Authorization: ").or(line.strip_prefix("proxy-authorization: "))
        })
        .map(str::trim);
    let refusal = match (options.refuse, options.authorization) {
        (Some(status), _) => Some(status),
        (None, Some(expected)) if authorization != Some(expected) => {
            Some("407 Proxy Authentication Required")
        }
        _ => None,
    };
    if !head.starts_with("CONNECT ") {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n").await;
        return;
    }
    if let Some(status) = refusal {
        let answer = format!(
            "HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 6\r\n\r\nno way"
        );
        let _ = client.write_all(answer.as_bytes()).await;
        return;
    }
    let upstream = match options.to {
        Some(to) => TcpStream::connect(to).await,
        None => TcpStream::connect(authority.as_str()).await,
    };
    let Ok(mut upstream) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Reads a request head byte by byte (nothing past it), as text.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A CA, and a certificate for `localhost`/127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
pub fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "zapsocket test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}
