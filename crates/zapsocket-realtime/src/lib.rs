//! # zapsocket-realtime
//!
//! The realtime layer over [`zapsocket`]: JSON events, rooms, acks, typed procedures
//! with TypeScript declarations, presence and metrics, speaking the wire format of
//! `docs/PROTOCOL.md` (versions 1 and 2) — the same document the JavaScript client in
//! `js/` follows. Version 2 (`zap.v2`) carries byte arrays ([`Binary`]) as bytes, in
//! one binary frame per message; a server offers both and serves each client in the
//! version it chose.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use zapsocket_realtime::{Hub, ReplyError, Socket, ts_rs::TS};
//!
//! #[derive(Deserialize, TS)]
//! struct AddInput { a: f64, b: f64 }
//!
//! #[derive(Serialize, TS)]
//! struct AddOutput { sum: f64 }
//!
//! # async fn run() -> zapsocket::Result<()> {
//! let hub = Hub::new();
//! hub.procedure("add", |_socket: Socket, input: AddInput| async move {
//!     Ok::<_, ReplyError>(AddOutput { sum: input.a + input.b })
//! });
//! hub.on("join", |socket: Socket, room: String| async move { socket.join(&room).await.map(drop) });
//! let server = zapsocket::Server::builder()
//!     .port(8080)
//!     .subprotocol(zapsocket_realtime::SUBPROTOCOL_V2)
//!     .subprotocol(zapsocket_realtime::SUBPROTOCOL)
//!     .bind()
//!     .await?;
//! server.serve(move |ws| hub.clone().handle(ws)).await
//! # }
//! ```
//!
//! ## How a message flows
//!
//! ```text
//!  client ──text frame──▶ conn (size check, envelope parse, middlewares)
//!        binary frame (v2: JSON + byte arrays, `binary`) ──┘
//!                          ├─ $join/$leave/$members ─▶ presence (registry + broker) ─▶ $joined/$left
//!                          ├─ $resume ─▶ recovery (history: session, replay) ─▶ live
//!                          ├─ event ─▶ handler (serde decode, or bad_payload) ─▶ reply if ack
//!                          ├─ call  ─▶ procedure ─▶ reply
//!                          └─ reply ─▶ the pending emit_with_ack
//!  handler ─▶ Operator (rooms − except) ─▶ publish: one Publication ─▶ Broker::publish
//!  Broker (offsets, order, every node with members) ─▶ deliver: one frame per node,
//!          the same bytes queued on each local recipient (zapsocket send_encoded; on
//!          the reactor, one Fanout per loop)
//! ```
//!
//! The parts, in reading order (no module imports one that comes after it):
//! `protocol` and `envelope` (the wire), `broker` (the [`Broker`] and [`History`]
//! traits), `state` (one socket), `registry` (this node's rooms: plain data), `core`
//! (the parts together), then what each does with them: `publish`, `presence`,
//! `recovery`, `cluster` (requests between nodes), `conn` (one connection's loop), and
//! the public faces `emit` ([`Operator`]), `socket` ([`Socket`]) and `hub` ([`Hub`]).
//! [`MemoryAdapter`] is the default broker and history (one node);
//! `zapsocket-redis` links many nodes through Redis.
//!
//! Every socket is in the room `$all` and in its own room `$s:SID`, so a message to
//! everyone or to one socket is a room message too: recorded with an offset. When a
//! connection ends, its session (rooms, data) is kept for
//! [`HubConfig::recovery_window`]; a client that reconnects in time, to any node, sends
//! `$resume` with its offsets and gets exactly what its rooms recorded meanwhile, in
//! order, then live messages (docs/PROTOCOL.md, *Offsets and recovery*). Handlers of one
//! socket run concurrently on its connection's task, started in arrival order; at most
//! [`HubConfig::max_pending_acks`] at once, past which the socket is not read (TCP
//! backpressure).
//!
//! ## Limits
//!
//! Every limit of `docs/PROTOCOL.md` is a field of [`HubConfig`] with its default. Bad
//! input (malformed JSON, unknown envelopes, oversized messages, wrong payloads, unknown
//! events) gets the documented error reply or `$error`: never a panic, never silence.
//! A socket that keeps breaking the protocol (malformed JSON or envelopes, malformed
//! binary frames or any in version 1, oversized messages) is closed with 1008 past
//! [`HubConfig::max_violations`] (100, then 10 a second, by default); [`HubConfig::max_message_rate`] (off by default) paces what
//! a socket sends by not reading it until its next message is due.
//!
//! ## Clients
//!
//! [`client::Client`] speaks the protocol from Rust; `js/` from browsers and Node.

#![forbid(unsafe_code)]

pub mod binary;
mod broker;
pub mod client;
mod cluster;
mod config;
mod conn;
mod core;
/// Not part of the API (feature `demo`): the hub `zap serve` runs.
#[cfg(feature = "demo")]
#[doc(hidden)]
pub mod demo;
mod emit;
mod envelope;
mod error;
mod expiring;
mod handler;
mod host;
mod hub;
mod hubs;
mod memory;
mod metrics;
mod presence;
mod protocol;
mod publish;
mod recovery;
mod registry;
mod sender;
mod session;
mod socket;
mod state;
mod typescript;

pub use crate::core::Disconnect;
pub use binary::{Binary, Payload};
pub use broker::{
    Adapter, AdapterError, Answers, BoxFuture, Broker, BrokerMetrics, Deliver, Delivery, Entry, History,
    NodeInfo, PUBLISH_LATENCY_BUCKETS_US, Presence, Publication, SessionRecord,
};
pub use cluster::{NodeResults, RemoteSocket};
pub use config::{HistoryLimits, HubConfig};
pub use emit::{Operator, RoomName};
pub use error::{ErrorCode, ReplyError};
pub use handler::HandlerOutput;
pub use host::{HubHandler, QUEUED_OVERHEAD, Session};
pub use hub::{Hub, HubBuilder};
pub use hubs::Hubs;
pub use memory::MemoryAdapter;
pub use metrics::Metrics;
pub use protocol::{Member, MembersReply, PresenceEvent, Resync, RoomRequest};
pub use socket::Socket;
pub use ts_rs;
pub use zapsocket::RateLimit;

/// Not part of the API: the envelope parser for the fuzz targets (cargo feature
/// `fuzzing`, docs/FUZZING.md). Outside semver; may change or vanish in any release.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use envelope::fuzzing;

/// The WebSocket subprotocol of protocol version 1 (JSON text frames only).
pub const SUBPROTOCOL: &str = "zap.v1";

/// The WebSocket subprotocol of protocol version 2: version 1, plus byte arrays as bytes
/// in binary frames (docs/PROTOCOL.md). A server lists it before [`SUBPROTOCOL`], so
/// that each client gets the newest version it offers.
pub const SUBPROTOCOL_V2: &str = "zap.v2";

/// Both subprotocols, newest first: what a client offers, and a server accepts.
pub const SUBPROTOCOLS: [&str; 2] = [SUBPROTOCOL_V2, SUBPROTOCOL];

/// The room every socket is in.
pub const ALL_ROOM: &str = "$all";

/// A random id with a prefix, like `s-3f9a0c2d4e5b6a7f`.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
