//! Several hubs on one server, each on its own path: socket.io's namespaces.

use std::future::Future;
use std::sync::Arc;

use zapsocket::{CloseCode, ServerBuilder, WebSocket};

use crate::hub::Hub;

/// Hubs by path, served by one server: the equivalent of socket.io's namespaces. Each hub
/// has its own handlers, middlewares ([`Hub::use_connect`], [`Hub::use_event`]), rooms,
/// presence and sessions; a client picks one by the path it connects to
/// (`ws://host/chat`, `ws://host/admin`). Paths no hub serves are refused at the
/// handshake with 404 when the server is set up with [`Hubs::configure`].
///
/// Hubs that share one Redis need their own key prefix each
/// (`zapsocket_redis::RedisConfig::prefix`).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use zapsocket_realtime::{Hub, Hubs, ReplyError, Socket};
///
/// let chat = Hub::new();
/// let admin = Hub::new();
/// admin.use_connect(|socket: Socket| async move {
///     let token = socket.request().and_then(|r| r.query_param("token"));
///     if token.as_deref() == Some("secret") { Ok(()) } else { Err(ReplyError::forbidden("no")) }
/// });
/// let hubs = Hubs::new().at("/chat", chat).at("/admin", admin);
/// let server = hubs.configure(zapsocket::Server::builder().port(8080)).bind().await?;
/// server.serve(move |ws| hubs.handle(ws)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Hubs {
    hubs: Arc<Vec<(String, Hub)>>,
}

impl std::fmt::Debug for Hubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.paths()).finish()
    }
}

impl Hubs {
    /// No hubs yet.
    pub fn new() -> Self {
        Hubs::default()
    }

    /// Serves `hub` on `path` (a later hub on the same path replaces it).
    pub fn at(mut self, path: impl Into<String>, hub: Hub) -> Self {
        let path = path.into();
        let hubs = Arc::make_mut(&mut self.hubs);
        hubs.retain(|(p, _)| *p != path);
        hubs.push((path, hub));
        self
    }

    /// The hub on `path`.
    pub fn get(&self, path: &str) -> Option<&Hub> {
        self.hubs.iter().find(|(p, _)| p == path).map(|(_, hub)| hub)
    }

    /// The paths served, in the order they were added.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.hubs.iter().map(|(p, _)| p.as_str())
    }

    /// Sets a server up for these hubs: their paths (others get 404 at the handshake) and
    /// the realtime subprotocol.
    pub fn configure(&self, mut builder: ServerBuilder) -> ServerBuilder {
        for path in self.paths() {
            builder = builder.path(path);
        }
        builder.subprotocol(crate::SUBPROTOCOL_V2).subprotocol(crate::SUBPROTOCOL)
    }

    /// Serves one WebSocket with the hub of its request's path; a path no hub serves is
    /// closed with 1008 (a server set up with [`Hubs::configure`] refuses it before).
    /// Made to be given to [`zapsocket::Server::serve`].
    pub fn handle(&self, ws: WebSocket) -> impl Future<Output = ()> + Send + 'static + use<> {
        let hub = ws.request().and_then(|r| self.get(r.path())).cloned();
        async move {
            match hub {
                Some(hub) => Box::pin(hub.handle(ws)).await,
                None => {
                    let _ = ws.close(CloseCode::POLICY_VIOLATION, "no hub on this path").await;
                }
            }
        }
    }
}
