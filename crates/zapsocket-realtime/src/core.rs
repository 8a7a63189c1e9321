//! The hub's parts, held together: configuration, this node's registry, the adapter
//! (broker and history), the routes (handlers, procedures, hooks), counters and types.
//! Each concern adds its methods in its own module: `publish`, `presence`, `recovery`,
//! `cluster`; the connection loop is `conn`; `hub` is the public facade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::binary::Json;
use crate::broker::{Broker, Deliver, History};
use crate::config::HubConfig;
use crate::error::ReplyError;
use crate::expiring::{Expiring, Sweep};
use crate::handler::{BoxFuture, Reply};
use crate::metrics::Counters;
use crate::registry::Registry;
use crate::state::{Private, SocketState};
use crate::typescript::Types;

/// The hub's shared state. Reached through [`crate::Hub`] and [`crate::Socket`].
pub(crate) struct Core {
    pub(crate) config: HubConfig,
    pub(crate) registry: Registry,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) history: Arc<dyn History>,
    pub(crate) routes: Routes,
    pub(crate) counters: Counters,
    pub(crate) types: Mutex<Types>,
    /// The private data of sessions that ended here, kept for the recovery window (it
    /// cannot cross nodes), by session id, bounded by
    /// [`HubConfig::max_detached_sessions`].
    pub(crate) parked: Mutex<Expiring<Arc<str>, Private>>,
    /// The last [`RECENT_DISCONNECTS`] disconnects, oldest first.
    pub(crate) disconnects: Mutex<std::collections::VecDeque<Disconnect>>,
    /// What the broker calls back (it holds it weakly).
    pub(crate) link: Arc<dyn Deliver>,
}

/// How many disconnects [`crate::Hub::recent_disconnects`] keeps.
pub(crate) const RECENT_DISCONNECTS: usize = 32;

/// A socket's disconnect: who, when, and why (the close code and reason exchanged, or
/// what ended the connection without one).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnect {
    /// The session id.
    pub session: String,
    /// The close code (the peer's, or the one this server sent); `None` when the
    /// connection ended without a close frame.
    pub code: Option<u16>,
    /// The close reason, or what ended the connection.
    pub reason: String,
    /// When.
    pub at: std::time::SystemTime,
}

/// What a route is called with: the hub, the socket, and the request's ack (if any).
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) core: Arc<Core>,
    pub(crate) state: Arc<SocketState>,
    pub(crate) ack: Option<u64>,
    /// The upgrade request, where the socket's connection does not keep it: the
    /// connect middlewares on the reactor ([`crate::HubHandler::keep_requests`]).
    pub(crate) request: Option<Arc<zapsocket::Request>>,
}

/// A handler or procedure with its input type erased: reads `data` (JSON, and the byte
/// arrays of a binary message) or refuses it with `bad_payload`, and starts.
pub(crate) type Route =
    Arc<dyn Fn(Ctx, &str, &[bytes::Bytes]) -> Result<BoxFuture<Reply>, ReplyError> + Send + Sync>;

/// A connect middleware.
pub(crate) type ConnectHook = Arc<dyn Fn(Ctx) -> BoxFuture<Result<(), ReplyError>> + Send + Sync>;

/// An event middleware: sees the socket, the name and the raw data; at once, or later
/// (an async one).
#[derive(Clone)]
pub(crate) enum EventHook {
    Now(NowHook),
    Later(LaterHook),
}

/// A middleware that answers at once ([`crate::Hub::use_event`]).
pub(crate) type NowHook = Arc<dyn Fn(&Ctx, &str, &str) -> Result<(), ReplyError> + Send + Sync>;

/// A middleware that may wait ([`crate::Hub::use_event_async`]).
pub(crate) type LaterHook =
    Arc<dyn Fn(Ctx, String, String) -> BoxFuture<Result<(), ReplyError>> + Send + Sync>;

/// A catch-all listener of client events: the socket, the name and the raw data.
pub(crate) type AnyHook = Arc<dyn Fn(&Ctx, &str, &str) + Send + Sync>;

/// A disconnect hook.
pub(crate) type DisconnectHook = Arc<dyn Fn(&Ctx) + Send + Sync>;

/// A handler of events that other nodes send (server-side emit): gets the sender node and
/// the data, returns the answer's JSON.
pub(crate) type ServerRoute = Arc<dyn Fn(String, &str) -> Result<BoxFuture<Reply>, ReplyError> + Send + Sync>;

/// Everything registered by name or in order.
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) handlers: RwLock<HashMap<String, Route>>,
    pub(crate) procedures: RwLock<HashMap<String, Route>>,
    pub(crate) server_events: RwLock<HashMap<String, ServerRoute>>,
    pub(crate) on_connect: RwLock<Vec<ConnectHook>>,
    pub(crate) on_event: RwLock<Vec<EventHook>>,
    pub(crate) on_any: RwLock<Vec<AnyHook>>,
    pub(crate) on_disconnecting: RwLock<Vec<DisconnectHook>>,
    pub(crate) on_disconnect: RwLock<Vec<DisconnectHook>>,
}

/// Reads a lock's value, whatever a panicking holder left.
pub(crate) fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Changes a lock's value.
pub(crate) fn update<T>(lock: &RwLock<T>, f: impl FnOnce(&mut T)) {
    f(&mut lock.write().unwrap_or_else(|p| p.into_inner()))
}

impl Core {
    /// The route of `name` in `table`.
    pub(crate) fn route(table: &RwLock<HashMap<String, Route>>, name: &str) -> Option<Route> {
        table.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Queues an unrecorded message on one socket (a reply, an error, `$hello`), counted:
    /// a binary frame when it has byte arrays and the socket speaks version 2.
    pub(crate) fn send_direct(&self, socket: &SocketState, json: Json) {
        let len = json.len();
        let frame = zapsocket::encode(json.into_message(socket.binary));
        let queued = socket.sender.send_encoded(&frame);
        self.counters.sent(u64::from(queued), len, u64::from(!queued));
    }

    /// Records a disconnect for [`crate::Hub::recent_disconnects`].
    pub(crate) fn record_disconnect(&self, disconnect: Disconnect) {
        let mut recent = self.disconnects.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_DISCONNECTS {
            recent.pop_front();
        }
        recent.push_back(disconnect);
    }

    /// The epoch of the history now.
    pub(crate) fn epoch(&self) -> Arc<str> {
        self.history.epoch()
    }
}

impl Sweep for Core {
    /// Forgets the private data of sessions past their window, and lets the history
    /// forget what expired.
    fn sweep(&self, now: Instant) {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).expire(now);
        self.history.sweep(now);
    }
}
