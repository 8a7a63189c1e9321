//! The client: connect to a `ws://` or `wss://` URL.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket_proto::deflate::DeflateConfig;
use zapsocket_proto::handshake::{ClientHandshake, HandshakeError};
use zapsocket_proto::{CloseCode, Connection, Role};

use crate::config::WebSocketConfig;
use crate::driver::Driver;
use crate::error::{Error, Kind, Result};
use crate::proxy::ProxyChoice;
use crate::redirect;
use crate::server::next_id;
use crate::shared::{Info, Shared};
use crate::socket::WebSocket;
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
///
/// A connection goes through the HTTP proxy the environment names (`HTTPS_PROXY` for
/// `wss://`, `HTTP_PROXY` for `ws://`, `ALL_PROXY`, `NO_PROXY`: see
/// [`ClientBuilder::proxy`]), or the one given, or none ([`ClientBuilder::no_proxy`]).
/// Redirects are not followed unless [`ClientBuilder::follow_redirects`] asks for it.
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
            proxy: ProxyChoice::Environment,
            max_redirects: 0,
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
    proxy: ProxyChoice,
    max_redirects: usize,
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

    /// How long the whole connect may take: the TCP connect, the proxy's tunnel, TLS and
    /// the handshake, and every redirect followed. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects through the HTTP proxy at `url`, `http://[user:password@]host[:port]`
    /// (port 80 by default; a URL without a scheme is taken as `http://`), for every
    /// connection: the proxy opens a tunnel to the server with `CONNECT host:port`
    /// (RFC 9110 §9.3.6), then TLS (for `wss://`, end to end with the server) and the
    /// handshake go through it. The user and password, percent-decoded, go to the proxy
    /// only, as `Proxy-Authorization: Basic`. Replaces [`ClientBuilder::no_proxy`].
    ///
    /// A proxy that answers anything but 2xx fails the connection with an error that has
    /// its status ([`Error::is_proxy`], [`Error::status`]: 407 for missing or wrong
    /// credentials). An invalid URL, or an `https://` or `socks5://` proxy (not
    /// supported), fails [`ClientBuilder::connect`] as [`Error::is_invalid`]. Through a
    /// proxy, [`WebSocket::peer_addr`] is the proxy's address.
    ///
    /// **Default: the environment**, read at each connect as curl and reqwest read it:
    /// `HTTPS_PROXY` for `wss://`, `HTTP_PROXY` for `ws://`, `ALL_PROXY` for both (a
    /// scheme's own variable first), each lower-case name before its upper-case one, as
    /// curl; upper-case `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set (a CGI
    /// program, where a request's `Proxy:` header would set it: "httpoxy"), as reqwest
    /// does (curl never reads it). `NO_PROXY` (or `no_proxy`) lists the hosts that go direct,
    /// separated by commas: `example.com` for it and its subdomains (`.example.com` and
    /// `*.example.com` the same), `*` for all, IP addresses and networks (`10.1.2.3`,
    /// `10.0.0.0/8`, `[::1]`), each optionally with `:PORT`. `localhost` and loopback
    /// addresses always go direct, as in Go's `net/http`: a proxy would reach its own
    /// loopback, not this machine's. An explicit proxy ignores `NO_PROXY`.
    ///
    /// ```no_run
    /// # async fn run() -> zapsocket::Result<()> {
    /// let ws = zapsocket::Client::builder()
    ///     .proxy("http://ada:s3cret@proxy.internal:3128")
    ///     .connect("wss://example.com/chat")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = ProxyChoice::url(url);
        self
    }

    /// Connects directly, whatever the environment says (`HTTP_PROXY`…). Replaces
    /// [`ClientBuilder::proxy`].
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// Follows up to `max` redirects of the upgrade request; 0 (the default, as Node's
    /// `ws`: `followRedirects: false`) follows none.
    ///
    /// Followed: a 301, 302, 303, 307 or 308 answer whose `Location` is a `ws`, `wss`,
    /// `http` (as `ws`) or `https` (as `wss`) URL, or one relative to the request's. To
    /// another origin (scheme, host or port), the `Authorization` and `Cookie` headers
    /// are dropped, for that request and the ones after (as curl and `ws` do); the
    /// proxy, if any, is chosen again for the new host, and only it sees its
    /// credentials. Past `max`, or to another scheme, the connection fails with an error
    /// that says so ([`Error::is_handshake`], [`Error::status`] the last 3xx). Without
    /// it, a redirect is a failed handshake with its status (301…).
    pub fn follow_redirects(mut self, max: usize) -> Self {
        self.max_redirects = max;
        self
    }

    /// Connects and performs the handshake, through a proxy and following redirects
    /// as this builder says.
    pub async fn connect(self, url: &str) -> Result<WebSocket> {
        let target = Target::parse(url)?;
        let timeout = self.connect_timeout;
        crate::time::timeout(timeout, self.connect_following(target))
            .await
            .map_err(|_| Error::new(Kind::Timeout("connect")))?
    }

    /// Opens `target`, then each redirect's target while they are followed.
    async fn connect_following(mut self, mut target: Target) -> Result<WebSocket> {
        let mut followed = 0;
        loop {
            let error = match self.open(&target).await {
                Ok(ws) => return Ok(ws),
                Err(error) => error,
            };
            let Some((status, location)) = error.redirect().filter(|_| self.max_redirects > 0) else {
                return Err(error);
            };
            let redirected = |why: String| Error::new(Kind::Redirect(status, why));
            if followed == self.max_redirects {
                return Err(redirected(format!("too many redirects: {followed} followed, then another")));
            }
            let next = Target::from_url(redirect::next_url(&target.url, location).map_err(redirected)?)?;
            if !redirect::same_origin(&target.url, &next.url) {
                self.headers.retain(|(name, _)| !redirect::is_credential(name));
            }
            tracing::debug!(status, from = %target.url, to = %next.url, "following a redirect");
            followed += 1;
            target = next;
        }
    }

    /// One connection to `target`: TCP (or a proxy's tunnel), TLS, the handshake.
    async fn open(&self, target: &Target) -> Result<WebSocket> {
        let proxy = self.proxy.resolve(target.secure, &target.host, target.port)?;
        let stream = match &proxy {
            Some(proxy) => crate::proxy::tunnel(proxy, &target.authority()).await?,
            None => TcpStream::connect((target.connect_host(), target.port)).await?,
        };
        let _ = stream.set_nodelay(true);
        let peer_addr = stream.peer_addr().ok();
        if target.secure {
            let tls = match (&self.tls_config, self.accept_invalid_certs) {
                (_, true) => ClientTls::NoCheck,
                (Some(config), false) => ClientTls::Config(config.clone()),
                (None, false) => ClientTls::Roots { builtin: self.builtin_roots, extra: self.roots.clone() },
            };
            let tls = crate::tls::connect(stream, target.connect_host(), &tls).await?;
            self.handshake(tls, peer_addr, target).await
        } else {
            self.handshake(stream, peer_addr, target).await
        }
    }

    async fn handshake<S>(
        &self,
        mut stream: S,
        peer_addr: Option<std::net::SocketAddr>,
        target: &Target,
    ) -> Result<WebSocket>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut handshake = ClientHandshake::new(
            &target.host_header(),
            &target.request_target(),
            &self.headers,
            &self.protocols,
        );
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
                    if e.is_refusal() && !self.follows(&e) {
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
        let info = Info {
            request: None,
            protocol: response.protocol,
            peer_addr,
            deflate: response.deflate,
            extensions: Default::default(),
            alone: None, // a client masks each frame: nothing to share or make ahead
        };
        let shared = Shared::new(next_id(), conn, &self.config, stream, info);
        let ws = WebSocket::new(shared.clone());
        tokio::spawn(Driver::new(shared));
        Ok(ws)
    }

    /// Whether this refusal is a redirect to follow (its body is then not waited for).
    fn follows(&self, refusal: &HandshakeError) -> bool {
        self.max_redirects > 0 && redirect::location(refusal).is_some()
    }
}

/// Where a connection goes: a `ws://` or `wss://` URL, taken apart.
struct Target {
    url: url::Url,
    secure: bool,
    /// As in the URL: an IPv6 address in brackets.
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let url = url::Url::parse(url).map_err(|e| Error::invalid(format!("bad URL {url:?}: {e}")))?;
        Target::from_url(url)
    }

    fn from_url(url: url::Url) -> Result<Target> {
        let secure = match url.scheme() {
            "ws" => false,
            "wss" => true,
            other => return Err(Error::invalid(format!("unsupported scheme {other:?}"))),
        };
        let host = url.host_str().ok_or_else(|| Error::invalid("URL has no host"))?.to_owned();
        let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
        Ok(Target { url, secure, host, port })
    }

    /// The host to connect to, and to name in TLS: an IPv6 address without brackets.
    fn connect_host(&self) -> &str {
        self.host.trim_matches(['[', ']'])
    }

    /// `Host`: the host, and the port when it is not the scheme's default.
    fn host_header(&self) -> String {
        match self.url.port() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// `host:port`, what a proxy is asked to `CONNECT` to.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The request target: the path and query.
    fn request_target(&self) -> String {
        match self.url.query() {
            Some(query) => format!("{}?{query}", self.url.path()),
            None => self.url.path().to_owned(),
        }
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
