//! The protocol error type.

use std::fmt;

use crate::CloseCode;

/// Everything that can go wrong in the protocol layer.
///
/// Peer violations map to the close code they cause ([`Error::close_code`]); a clean close
/// is never an error. Usage errors (sending after close, oversized control payloads) map to
/// no close code: they are refused before anything reaches the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// RSV1, RSV2 or RSV3 was set without an extension that defines it (RFC 6455 §5.2).
    ReservedBits,
    /// An opcode reserved for future use (0x3–0x7, 0xB–0xF) (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// A client sent an unmasked frame, or a server a masked one (RFC 6455 §5.1).
    BadMasking,
    /// A control frame was fragmented (RFC 6455 §5.5).
    FragmentedControlFrame,
    /// A control frame's payload exceeded 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong,
    /// The most significant bit of a 64-bit payload length was set (RFC 6455 §5.2).
    InvalidLength,
    /// A continuation frame arrived with no fragmented message in progress (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new data frame arrived while a fragmented message was in progress (RFC 6455 §5.4).
    ExpectedContinuation,
    /// A close frame with a one-byte payload (RFC 6455 §5.5.1).
    InvalidClosePayload,
    /// A close frame carried a code that must not be sent (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// Text (or a close reason) was not valid UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A compressed message was not a valid deflate stream (RFC 7692 §7.2.2).
    InvalidCompressedData,
    /// A frame exceeded `Config::max_frame_size`.
    FrameTooLarge {
        /// The declared payload length.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message exceeded `Config::max_message_size` (bytes including per-part overhead).
    MessageTooLarge {
        /// The size the message would reach.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message had more than `Config::max_message_parts` frames.
    TooManyParts {
        /// The limit.
        max: usize,
    },
    /// The peer sent data after it sent a close frame (RFC 6455 §5.5.1).
    DataAfterClose,
    /// The peer stayed silent past the pong timeout after a ping.
    KeepaliveTimeout,
    /// The peer did not answer our close frame within the close timeout.
    CloseTimeout,
    /// The transport ended without a close handshake.
    ConnectionReset,
    /// Usage: a message cannot be sent after the close frame was sent.
    AlreadyClosed,
    /// Usage: control frame payloads are limited to 125 bytes.
    ControlPayloadTooLong,
    /// Usage: this close code cannot be sent (1005, 1006, 1015 and unassigned codes).
    UnsendableCloseCode(u16),
    /// Usage: a fragment of another kind was sent while a fragmented message was in
    /// progress, or a continuation without one.
    FragmentOrder,
}

impl Error {
    /// The close code this error causes, or `None` when it is a usage error or ends the
    /// connection without a close frame (timeouts, resets).
    pub fn close_code(&self) -> Option<CloseCode> {
        use Error::*;
        Some(match self {
            ReservedBits
            | ReservedOpcode(_)
            | BadMasking
            | FragmentedControlFrame
            | ControlFrameTooLong
            | InvalidLength
            | UnexpectedContinuation
            | ExpectedContinuation
            | InvalidClosePayload
            | InvalidCloseCode(_)
            | DataAfterClose => CloseCode::PROTOCOL_ERROR,
            InvalidUtf8 | InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            FrameTooLarge { .. } | MessageTooLarge { .. } | TooManyParts { .. } => CloseCode::MESSAGE_TOO_BIG,
            KeepaliveTimeout
            | CloseTimeout
            | ConnectionReset
            | AlreadyClosed
            | ControlPayloadTooLong
            | UnsendableCloseCode(_)
            | FragmentOrder => return None,
        })
    }

    /// Whether the peer broke the protocol or a limit (as opposed to a usage error or a
    /// timeout).
    pub fn is_protocol_violation(&self) -> bool {
        self.close_code().is_some()
    }

    /// A short reason suitable for a close frame (at most 123 bytes).
    pub fn reason(&self) -> &'static str {
        use Error::*;
        match self {
            ReservedBits => "reserved bits set",
            ReservedOpcode(_) => "reserved opcode",
            BadMasking => "wrong frame masking",
            FragmentedControlFrame => "fragmented control frame",
            ControlFrameTooLong => "control frame too long",
            InvalidLength => "invalid payload length",
            UnexpectedContinuation => "unexpected continuation frame",
            ExpectedContinuation => "expected continuation frame",
            InvalidClosePayload => "invalid close payload",
            InvalidCloseCode(_) => "invalid close code",
            InvalidUtf8 => "invalid UTF-8",
            InvalidCompressedData => "invalid compressed data",
            FrameTooLarge { .. } => "frame too large",
            MessageTooLarge { .. } => "message too large",
            TooManyParts { .. } => "too many message fragments",
            DataAfterClose => "data after close",
            KeepaliveTimeout => "keepalive timeout",
            CloseTimeout => "close handshake timeout",
            ConnectionReset => "connection reset without close",
            AlreadyClosed => "connection already closing",
            ControlPayloadTooLong => "control payload over 125 bytes",
            UnsendableCloseCode(_) => "close code cannot be sent",
            FragmentOrder => "fragment out of order",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Error::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Error::UnsendableCloseCode(c) => write!(f, "close code {c} cannot be sent"),
            Error::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max}")
            }
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max}")
            }
            Error::TooManyParts { max } => write!(f, "message has more than {max} fragments"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for Error {}
