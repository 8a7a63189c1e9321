//! The client: connect to a `ws://` or `wss://` URL.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket_proto::deflate::DeflateConfig;
use zapsocket_proto::handshake::ClientHandshake;
use zapsocket_proto::{CloseCode, Connection, Role};

use crate::config::WebSocketConfig;
use crate::driver::Driver;
use crate::error::{Error, Kind, Result};
use crate::server::next_id;
use crate::shared::Shared;
use crate::socket::{Info, WebSocket};
use crate::tls::{Certificate, ClientTls};

/// Opens client connections.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// let ws = zapsocket::Client::builder()
///     .header("Authorization", "Bearer t0ken")
///     .protocol("chat.v1")
///     .connect("ws://127.0.0.1:8080/chat")
///     .await?;
/// println!("subprotocol: {:?}", ws.protocol());
/// # Ok(()) }
/// ```
pub struct Client;

impl Client {
    /// Connects to `url` with the defaults.
    pub async fn connect(url: &str) -> Result<WebSocket> {
        Client::builder().connect(url).await
    }

    /// A builder for headers, subprotocols and settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            headers: Vec::new(),
            protocols: Vec::new(),
            config: WebSocketConfig::default(),
            connect_timeout: Duration::from_secs(10),
            deflate: Some(DeflateConfig::default()),
            roots: Vec::new(),
            builtin_roots: true,
            tls_config: None,
            accept_invalid_certs: false,
        }
    }
}

/// Settings for a client connection.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    config: WebSocketConfig,
    connect_timeout: Duration,
    deflate: Option<DeflateConfig>,
    roots: Vec<Certificate>,
    builtin_roots: bool,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    accept_invalid_certs: bool,
}

impl ClientBuilder {
    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (may be given several times, in order of preference).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// The connection's settings. Default: [`WebSocketConfig::default`] (no heartbeat).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// permessage-deflate (RFC 7692): the offer to make, or `None` to offer nothing.
    /// Default: on, `permessage-deflate; client_max_window_bits` (like browsers, `ws` and
    /// `websockets`). Compression is used only if the server agrees; an invalid answer
    /// fails the connection (close 1010 and an error).
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Trusts `cert` for `wss://` (say, your own CA), besides the system's roots.
    pub fn add_root_certificate(mut self, cert: Certificate) -> Self {
        self.roots.push(cert);
        self
    }

    /// Whether `wss://` trusts the system's root certificates. Default: true. With
    /// false, only those given to [`ClientBuilder::add_root_certificate`] are trusted.
    pub fn tls_built_in_root_certs(mut self, trust: bool) -> Self {
        self.builtin_roots = trust;
        self
    }

    /// Uses this rustls configuration for `wss://`, as it is: client certificates
    /// (mutual TLS), one's own certificate verification, protocol versions, ALPN (offer
    /// `http/1.1`, or nothing). Replaces [`ClientBuilder::add_root_certificate`] and
    /// [`ClientBuilder::tls_built_in_root_certs`]. `zapsocket::rustls` is the rustls this
    /// crate uses.
    ///
    /// ```no_run
    /// # fn f(roots: zapsocket::rustls::RootCertStore,
    /// #      chain: Vec<zapsocket::rustls::pki_types::CertificateDer<'static>>,
    /// #      key: zapsocket::rustls::pki_types::PrivateKeyDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use zapsocket::rustls;
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ClientConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_client_auth_cert(chain, key)?; // mutual TLS
    /// let builder = zapsocket::Client::builder().tls_config(Arc::new(config));
    /// # Ok(()) }
    /// ```
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// **Dangerous**: accepts any certificate for `wss://`, whoever it names and
    /// whoever signed it (a self-signed test server; `zap connect --no-check`). Anyone
    /// on the path can then read and change the traffic. Default: false. Overrides the
    /// other TLS settings.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// How long the TCP connect and the handshake may take. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects and performs the handshake.
    pub async fn connect(self, url: &str) -> Result<WebSocket> {
        let url = url::Url::parse(url).map_err(|e| Error::invalid(format!("bad URL {url:?}: {e}")))?;
        let secure = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(Error::invalid(format!("unsupported scheme {other:?}"))),
        };
        let host = url.host_str().ok_or_else(|| Error::invalid("URL has no host"))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut target = url.path().to_owned();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let timeout = self.connect_timeout;
        crate::time::timeout(timeout, self.open(secure, &host, port, &host_header, &target))
            .await
            .map_err(|_| Error::new(Kind::Timeout("connect")))?
    }

    async fn open(
        self,
        secure: bool,
        host: &str,
        port: u16,
        host_header: &str,
        target: &str,
    ) -> Result<WebSocket> {
        let connect_host = host.trim_matches(['[', ']']);
        let stream = TcpStream::connect((connect_host, port)).await?;
        let _ = stream.set_nodelay(true);
        let peer_addr = stream.peer_addr().ok();
        if secure {
            let tls = match (&self.tls_config, self.accept_invalid_certs) {
                (_, true) => ClientTls::NoCheck,
                (Some(config), false) => ClientTls::Config(config.clone()),
                (None, false) => ClientTls::Roots { builtin: self.builtin_roots, extra: self.roots.clone() },
            };
            let tls = crate::tls::connect(stream, connect_host, &tls).await?;
            self.handshake(tls, peer_addr, host_header, target).await
        } else {
            self.handshake(stream, peer_addr, host_header, target).await
        }
    }

    async fn handshake<S>(
        self,
        mut stream: S,
        peer_addr: Option<std::net::SocketAddr>,
        host_header: &str,
        target: &str,
    ) -> Result<WebSocket>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut handshake = ClientHandshake::new(host_header, target, &self.headers, &self.protocols);
        if let Some(config) = &self.deflate {
            handshake = handshake.deflate(config.clone());
        }
        stream.write_all(handshake.request()).await?;
        let mut buf = [0u8; 2048];
        let response = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            match handshake.feed(&buf[..n]) {
                Ok(Some(response)) => break response,
                Ok(None) => {}
                Err(e) => {
                    if let Some(code) = e.close_code() {
                        fail_open_connection(&mut stream, code).await;
                    }
                    if e.is_refusal() {
                        let body =
                            refusal_body(&mut stream, handshake.take_leftover(), e.content_length()).await;
                        return Err(Error::refused(e, body));
                    }
                    return Err(e.into());
                }
            }
        };
        let mut conn = Connection::new(Role::Client, self.config.protocol.clone());
        if let (Some(params), Some(config)) = (response.deflate, &self.deflate) {
            conn.set_deflate(params, config);
        }
        conn.feed(&handshake.take_leftover());
        let shared = Shared::new(next_id(), conn, &self.config, stream);
        let info = Info {
            request: None,
            protocol: response.protocol,
            peer_addr,
            deflate: response.deflate,
            extensions: Default::default(),
            alone: None, // a client masks each frame: nothing to share or make ahead
        };
        let ws = WebSocket::new(shared.clone(), info);
        tokio::spawn(Driver::new(shared));
        Ok(ws)
    }
}

/// The start of a refusal's body: what came with the head, then what arrives within a
/// second, up to `MAX_REFUSAL_BODY` bytes, its `Content-Length` or the end of the stream.
async fn refusal_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut body: Vec<u8>,
    content_length: Option<usize>,
) -> bytes::Bytes {
    let want = content_length.unwrap_or(usize::MAX).min(crate::error::MAX_REFUSAL_BODY);
    let _ = crate::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 1024];
        while body.len() < want {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    body.truncate(want);
    body.into()
}

/// The server sent a 101 we cannot accept (an invalid extension answer): for the server
/// the connection is open, so it is failed as RFC 6455 §7.1.7 says, with a close frame
/// carrying `code`, before the TCP connection is dropped.
async fn fail_open_connection<S: AsyncWrite + Unpin>(stream: &mut S, code: CloseCode) {
    let mut conn = Connection::new(Role::Client, Default::default());
    if conn.close(std::time::Instant::now(), code, "unacceptable Sec-WebSocket-Extensions").is_ok() {
        let bytes = conn.outbound().first_chunk().to_vec();
        let _ = crate::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}
