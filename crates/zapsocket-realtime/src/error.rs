//! Error codes and error replies (docs/PROTOCOL.md, *Errors*).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// An error code of the protocol: a short snake_case string. The named constants are
/// the codes of docs/PROTOCOL.md; a peer may send others.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub Cow<'static, str>);

impl ErrorCode {
    /// Not valid JSON, or not an object.
    pub const BAD_JSON: ErrorCode = ErrorCode::new("bad_json");
    /// A JSON object that is not one of the protocol's envelopes.
    pub const BAD_ENVELOPE: ErrorCode = ErrorCode::new("bad_envelope");
    /// `data` did not match the handler's or procedure's type.
    pub const BAD_PAYLOAD: ErrorCode = ErrorCode::new("bad_payload");
    /// No handler for this event.
    pub const UNKNOWN_EVENT: ErrorCode = ErrorCode::new("unknown_event");
    /// No procedure with this name.
    pub const UNKNOWN_PROCEDURE: ErrorCode = ErrorCode::new("unknown_procedure");
    /// An application name starting with `$`.
    pub const RESERVED: ErrorCode = ErrorCode::new("reserved");
    /// A middleware refused.
    pub const FORBIDDEN: ErrorCode = ErrorCode::new("forbidden");
    /// An envelope over the size limit.
    pub const TOO_LARGE: ErrorCode = ErrorCode::new("too_large");
    /// A count limit was reached (rooms per socket, pending acks).
    pub const LIMIT: ErrorCode = ErrorCode::new("limit");
    /// (Local) no reply arrived in time.
    pub const TIMEOUT: ErrorCode = ErrorCode::new("timeout");
    /// (Local) the connection ended while the request was pending.
    pub const DISCONNECTED: ErrorCode = ErrorCode::new("disconnected");
    /// The handler or procedure returned an error.
    pub const HANDLER_ERROR: ErrorCode = ErrorCode::new("handler_error");
    /// A binary frame, or a version this server does not speak.
    pub const UNSUPPORTED: ErrorCode = ErrorCode::new("unsupported");
    /// Recovery is not possible: resync.
    pub const RECOVERY_UNAVAILABLE: ErrorCode = ErrorCode::new("recovery_unavailable");
    /// What crosses nodes (room messages, presence, requests to other nodes) cannot be
    /// done now: the shared store (Redis) is out of reach or too far behind. Local work
    /// (acks, procedures) goes on.
    pub const UNAVAILABLE: ErrorCode = ErrorCode::new("unavailable");

    /// A code from a static string.
    pub const fn new(code: &'static str) -> Self {
        ErrorCode(Cow::Borrowed(code))
    }

    /// The code as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error reply: a code and a message. What a request (an event with an ack, or a
/// call) fails with, on either side, and what a handler returns to choose the code its
/// peer sees (any other error type becomes `handler_error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(rename = "ErrorData")]
pub struct ReplyError {
    /// The error code.
    #[ts(type = "string")]
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
}

impl ReplyError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ReplyError { code, message: message.into() }
    }

    /// A `bad_payload` error (data of the wrong shape).
    pub fn bad_payload(message: impl Into<String>) -> Self {
        ReplyError::new(ErrorCode::BAD_PAYLOAD, message)
    }

    /// A `forbidden` error (refused by a middleware or a rule).
    pub fn forbidden(message: impl Into<String>) -> Self {
        ReplyError::new(ErrorCode::FORBIDDEN, message)
    }

    /// A `handler_error`.
    pub fn handler_error(message: impl Into<String>) -> Self {
        ReplyError::new(ErrorCode::HANDLER_ERROR, message)
    }

    /// An `unavailable` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ReplyError::new(ErrorCode::UNAVAILABLE, message)
    }

    /// Whether the code is `code`.
    pub fn is(&self, code: &ErrorCode) -> bool {
        &self.code == code
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ReplyError {}
