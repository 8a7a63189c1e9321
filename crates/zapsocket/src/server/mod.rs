//! The server: bind a port, answer handshakes, track clients, shut down gracefully.

mod admission;
mod builder;
#[cfg(feature = "http2")]
mod h2;
mod handshake;
mod response;
mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub(crate) use admission::origin_allowed;
pub use admission::{Accept, MAX_RATE_ADDRESSES};
pub use builder::ServerBuilder;
pub(crate) use builder::Settings;
#[cfg(any(feature = "hyper", feature = "http2"))]
pub(crate) use handshake::Refusal;
#[cfg(feature = "hyper")]
pub(crate) use handshake::{Admitted, admit, count, open};
pub(crate) use handshake::{PeerCertificates, handshake};
pub use response::HttpResponse;
pub use shutdown::ShutdownHandle;

use crate::clients::Clients;
use crate::error::{Error, Kind, Result};
use crate::socket::WebSocket;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A WebSocket server, like `ws`'s `WebSocketServer`.
///
/// Take connections one by one with [`Server::accept`], or hand each to a function with
/// [`Server::serve`]. Each connection comes with its upgrade request
/// ([`WebSocketSender::request`](crate::WebSocketSender::request)): peer address, headers,
/// path, query, cookies. The server tracks its clients for iteration and broadcast.
///
/// ```no_run
/// # async fn run() -> zapsocket::Result<()> {
/// let server = zapsocket::Server::bind("127.0.0.1:8080").await?;
/// server.serve(|mut ws| async move {
///     while let Some(Ok(msg)) = ws.recv().await {
///         if ws.send(msg).await.is_err() { break; }
///     }
/// }).await
/// # }
/// ```
pub struct Server {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    settings: Arc<Settings>,
    incoming: Option<(mpsc::Receiver<Result<WebSocket>>, JoinHandle<()>)>,
}

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Binds `addr` (`"host:port"`) with the defaults.
    pub async fn bind(addr: &str) -> Result<Server> {
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| Error::invalid("expected host:port"))?;
        let port = port.parse().map_err(|_| Error::invalid("bad port"))?;
        Server::builder().host(host.trim_matches(['[', ']'])).port(port).bind().await
    }

    fn from_listener(listener: TcpListener, settings: Arc<Settings>) -> Result<Server> {
        let local_addr = listener.local_addr()?;
        Ok(Server { listener: Some(listener), local_addr, settings, incoming: None })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The open connections (empty when tracking is off).
    pub fn clients(&self) -> Clients {
        if self.settings.track_clients { self.settings.clients.clone() } else { Clients::new() }
    }

    /// A handle that shuts the server down gracefully from another task.
    ///
    /// ```no_run
    /// # async fn run() -> zapsocket::Result<()> {
    /// let server = zapsocket::Server::bind("127.0.0.1:8080").await?;
    /// let handle = server.shutdown_handle();
    /// tokio::spawn(async move {
    ///     let _ = tokio::signal::ctrl_c().await;
    ///     handle.shutdown().await; // 1001 to every client, then wait for them
    /// });
    /// server.serve(|ws| async move { /* ... */ }).await // returns once shut down
    /// # }
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { settings: self.settings.clone() }
    }

    /// The next connection, once its handshake succeeded. Handshakes run concurrently
    /// in the background; failed ones are answered with their HTTP status and never
    /// show up here. After a shutdown began, an error.
    pub async fn accept(&mut self) -> Result<WebSocket> {
        if self.incoming.is_none() {
            let (tx, rx) = mpsc::channel(128);
            let listener = self.listener.take().ok_or_else(|| Error::new(Kind::Closed))?;
            let settings = self.settings.clone();
            let task = tokio::spawn(accept_loop(listener, settings, move |ws| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Ok(ws)).await;
                }
            }));
            self.incoming = Some((rx, task));
        }
        match &mut self.incoming {
            Some((rx, _)) => rx.recv().await.unwrap_or_else(|| Err(Error::new(Kind::Closed))),
            None => Err(Error::new(Kind::Closed)),
        }
    }

    /// Runs `handler` for every connection, each in its own task, until a shutdown
    /// started with [`Server::shutdown_handle`] has finished.
    ///
    /// The handler runs up to its first `.await` that waits before the 101 is written
    /// (like `ws`'s `connection` event): a socket it adds to a broadcast set there is in
    /// the set before the client sees the connection open.
    pub async fn serve<F, Fut>(self, handler: F) -> Result<()>
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_with_shutdown(handler, std::future::pending()).await
    }

    /// Like [`Server::serve`], and shuts down gracefully once `signal` resolves (or a
    /// [`ShutdownHandle`] is used): returns when every connection has ended. See
    /// [`ShutdownHandle::shutdown`] for the steps.
    ///
    /// ```no_run
    /// # async fn run() -> zapsocket::Result<()> {
    /// let server = zapsocket::Server::bind("127.0.0.1:8080").await?;
    /// let ctrl_c = async { let _ = tokio::signal::ctrl_c().await; };
    /// server.serve_with_shutdown(|ws| async move { /* ... */ }, ctrl_c).await
    /// # }
    /// ```
    pub async fn serve_with_shutdown<F, Fut>(
        mut self,
        handler: F,
        signal: impl Future<Output = ()>,
    ) -> Result<()>
    where
        F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = self.listener.take().ok_or_else(|| Error::new(Kind::Closed))?;
        tokio::select! {
            () = accept_loop(listener, self.settings.clone(), handler) => {}
            () = signal => {}
        }
        shutdown::drain(&self.settings).await;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.incoming {
            task.abort();
        }
    }
}

/// Accepts TCP connections until shutdown starts; each handshake (TLS first, if on) and
/// connection runs in its own task.
async fn accept_loop<F, Fut>(listener: TcpListener, settings: Arc<Settings>, handler: F)
where
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = settings.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                crate::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (settings, handler) = (settings.clone(), handler.clone());
        tokio::spawn(async move {
            match settings.tls.as_ref().map(crate::tls::Identity::acceptor) {
                None => handshake::serve_stream(stream, peer, None, settings, handler).await,
                // Boxed: a TLS connection's state would otherwise size every task.
                Some(acceptor) => {
                    Box::pin(async move {
                        if let Some(tls) = tls_accept(&acceptor, stream, peer, &settings).await {
                            let certs = tls.get_ref().1.peer_certificates().map(Arc::from);
                            #[cfg(feature = "http2")]
                            if tls.get_ref().1.alpn_protocol() == Some(h2::ALPN) {
                                return h2::serve(tls, peer, certs, settings, handler).await;
                            }
                            handshake::serve_stream(tls, peer, certs, settings, handler).await;
                        }
                    })
                    .await
                }
            }
        });
    }
}

async fn tls_accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match crate::time::timeout(settings.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
