//! # zapsocket-proto
//!
//! The WebSocket protocol (RFC 6455, and RFC 7692 permessage-deflate) without I/O: bytes in, events and bytes out. No
//! sockets, no async runtime, no clock: time is an argument. The `zapsocket` crate drives
//! it over tokio; anything else can drive it too.
//!
//! ```text
//!   bytes from the peer ──► Connection::feed ──► Connection::poll_event ──► Event
//!                                  │
//!   Connection::send / ping / close ──► Connection::outbound ──► bytes to the peer
//!                                  │
//!   now ──► Connection::handle_timeout (keepalive, close timeout)
//! ```
//!
//! - [`handshake`]: the opening handshake, server and client, parsed incrementally and
//!   bounded ([`handshake::HandshakeLimits`]).
//! - [`Connection`]: framing, fragmentation, UTF-8 validation across fragments, the close
//!   handshake and keepalive, for either [`Role`]. Its docs give the call order.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, and compression as a
//!   transformer on messages, inflating capped at the message limit.
//! - [`Config`]: every limit, with its default and the attack it stops.
//! - [`Error`]: each protocol violation, mapped to its close code by
//!   [`Error::close_code`]. A clean close is an [`Event::Close`], never an error.
//!
//! `unsafe` is forbidden in this crate.

#![forbid(unsafe_code)]

mod close;
mod config;
mod connection;
mod counts;
pub mod deflate;
mod error;
mod frame;
pub mod handshake;
mod mask;
mod message;
mod outbound;
mod utf8;

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use config::{Config, PART_OVERHEAD};
pub use connection::{Connection, Decoded, Lent, Role, State};
pub use counts::{Counts, SIZE_BUCKETS};
pub use error::Error;
pub use frame::{CompressAlone, EncodedFrame, FrameHeader, MAX_HEADER_LEN, OpCode, encode_frame};
pub use mask::{apply_mask, apply_mask_reference};
pub use message::{Event, Message, Utf8Bytes};
pub use outbound::{CHUNK_OVERHEAD, Outbound};
pub use utf8::Utf8Validator;
