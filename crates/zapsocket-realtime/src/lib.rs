//! # zapsocket-realtime
//!
//! The realtime layer over [`zapsocket`]: JSON events, rooms, acks, typed procedures
//! with TypeScript declarations, presence and metrics, speaking the wire format of
//! `docs/PROTOCOL.md` (version 1) — the same document the JavaScript client in `js/`
//! follows.
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
//! hub.on("join", |socket: Socket, room: String| async move { socket.join(&room).map(drop) });
//! let server = zapsocket::Server::builder()
//!     .port(8080)
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
//!                          ├─ $join/$leave/$members ─▶ rooms + presence ($joined/$left)
//!                          ├─ event ─▶ handler (serde decode, or bad_payload) ─▶ reply if ack
//!                          ├─ call  ─▶ procedure ─▶ reply
//!                          └─ reply ─▶ the pending emit_with_ack
//!  handler ─▶ Operator (rooms − except) ─▶ Adapter::append (offsets, one JSON, one frame)
//!          ─▶ the same bytes queued on every recipient (zapsocket send_encoded)
//! ```
//!
//! Every socket is in the room `$all` and in its own room `$s:SID`, so a message to
//! everyone or to one socket is a room message too: recorded with an offset. When a
//! connection ends, its session (rooms, data) is kept for
//! [`HubConfig::recovery_window`]; a client that reconnects in time sends `$resume` with
//! its offsets and gets exactly what its rooms recorded meanwhile, in order, then live
//! messages (docs/PROTOCOL.md, *Offsets and recovery*). Handlers of one socket run concurrently on its connection's task,
//! started in arrival order; at most [`HubConfig::max_pending_acks`] at once, past which
//! the socket is not read (TCP backpressure).
//!
//! ## Limits
//!
//! Every limit of `docs/PROTOCOL.md` is a field of [`HubConfig`] with its default. Bad
//! input (malformed JSON, unknown envelopes, oversized messages, wrong payloads, unknown
//! events) gets the documented error reply or `$error`: never a panic, never silence.
//!
//! ## Clients
//!
//! [`client::Client`] speaks the protocol from Rust; `js/` from browsers and Node.

#![forbid(unsafe_code)]

mod adapter;
pub mod client;
mod config;
mod conn;
pub mod demo;
mod emit;
mod envelope;
mod error;
mod handler;
mod hub;
mod metrics;
mod presence;
mod recovery;
mod socket;
mod typescript;

pub use adapter::{Adapter, MemoryAdapter, Recorded, Unavailable};
pub use config::{HistoryLimits, HubConfig};
pub use emit::{Operator, RoomName};
pub use error::{ErrorCode, ReplyError};
pub use handler::HandlerOutput;
pub use hub::{Hub, HubBuilder};
pub use metrics::Metrics;
pub use presence::{Member, MembersReply, PresenceEvent, RoomRequest};
pub use socket::Socket;
pub use ts_rs;

/// The WebSocket subprotocol of protocol version 1.
pub const SUBPROTOCOL: &str = "zap.v1";

/// The room every socket is in.
pub const ALL_ROOM: &str = "$all";

/// A random id with a prefix, like `s-3f9a0c2d4e5b6a7f`.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
