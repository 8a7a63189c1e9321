//! Graceful shutdown: stop accepting, close every client with 1001 after what it has
//! queued, wait for the close handshakes up to a deadline, then terminate the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zapsocket_proto::CloseCode;

use super::builder::Settings;
use crate::socket::WebSocketSender;

/// Starts a graceful shutdown of a server from anywhere: cheap to clone. See
/// [`Server::shutdown_handle`](crate::Server::shutdown_handle).
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(crate) settings: Arc<Settings>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle").field("started", &self.is_started()).finish()
    }
}

impl ShutdownHandle {
    /// Shuts down gracefully and returns once every connection has ended: the server
    /// stops accepting, every client gets a 1001 (Going Away) close frame after the
    /// messages already queued for it, and clients that have not answered within the
    /// shutdown timeout ([`ServerBuilder::shutdown_timeout`](crate::ServerBuilder::shutdown_timeout))
    /// are terminated. Sends after the close frame fail; none accepted before it is lost.
    /// Calling it again (or from several tasks) waits for the same shutdown.
    pub async fn shutdown(&self) {
        drain(&self.settings).await;
    }

    /// Whether shutdown has started.
    pub fn is_started(&self) -> bool {
        self.settings.shutdown.is_cancelled()
    }
}

/// Starts the close handshake without waiting; a connection already closing is left
/// as it is.
pub(crate) fn start_close(sender: &WebSocketSender, code: CloseCode) {
    let mut inner = sender.shared().lock();
    if !inner.is_done() && inner.conn.close(std::time::Instant::now(), code, "server shutting down").is_ok() {
        inner.wake_driver();
    }
}

pub(crate) async fn drain(settings: &Settings) {
    settings.shutdown.cancel();
    let clients = &settings.clients;
    let count = clients.len();
    for sender in clients.senders() {
        start_close(&sender, CloseCode::GOING_AWAY);
    }
    tracing::info!(connections = count, "shutting down: sent 1001 to every client");
    let deadline = Instant::now() + settings.shutdown_timeout;
    if !wait_empty(settings, deadline).await {
        let left = clients.senders();
        tracing::info!(connections = left.len(), "shutdown timeout: terminating the rest");
        for sender in left {
            sender.terminate();
        }
        wait_empty(settings, Instant::now() + Duration::from_secs(1)).await;
    }
}

/// Waits until no connection is left, or `deadline`; returns whether none is left.
async fn wait_empty(settings: &Settings, deadline: Instant) -> bool {
    while !settings.clients.is_empty() {
        if Instant::now() >= deadline {
            return false;
        }
        crate::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
