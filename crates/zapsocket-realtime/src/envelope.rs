//! Envelopes (docs/PROTOCOL.md, *Envelopes*): parsing what arrives, writing what leaves.
//!
//! Parsing borrows from the received text (`data` stays raw JSON until a handler's type
//! reads it); writing builds one JSON string per message.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{ErrorCode, ReplyError};

/// The largest request id: 2^53 − 1, exact in JavaScript.
pub(crate) const MAX_ID: u64 = (1 << 53) - 1;

/// An envelope as it arrived, `data` still raw.
#[derive(Debug)]
pub(crate) enum Envelope<'a> {
    /// `{"event", "data", "ack"?}`; server → client room events carry `rooms` and
    /// `epoch`.
    Event { name: Cow<'a, str>, data: &'a str, ack: Option<u64>, rooms: Option<Offsets<'a>> },
    /// `{"call", "data", "ack"}`.
    Call { name: Cow<'a, str>, data: &'a str, ack: u64 },
    /// `{"reply", "data"}` or `{"reply", "error"}`.
    Reply { id: u64, result: Result<&'a str, ReplyError> },
}

/// The recovery fields of a room event, raw: `rooms` (`{ROOM: OFFSET}`) and `epoch`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offsets<'a> {
    pub(crate) rooms: &'a RawValue,
    pub(crate) epoch: Option<&'a RawValue>,
}

/// Why an envelope was refused, with its `ack` when one could be read, so the error
/// goes back as an error reply.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) ack: Option<u64>,
    pub(crate) error: ReplyError,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    call: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reply: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ack: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rooms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    epoch: Option<&'a RawValue>,
}

/// Parses one text message. `max_name` bounds event and procedure names.
pub(crate) fn parse(text: &str, max_name: usize) -> Result<Envelope<'_>, Refused> {
    let refuse =
        |ack, code: ErrorCode, message: String| Refused { ack, error: ReplyError::new(code, message) };
    if !text.trim_start().starts_with('{') {
        return Err(refuse(None, ErrorCode::BAD_JSON, "an envelope must be a JSON object".into()));
    }
    let raw: Raw<'_> = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() { ErrorCode::BAD_ENVELOPE } else { ErrorCode::BAD_JSON };
        refuse(None, code, e.to_string())
    })?;
    let ack = match raw.ack {
        Some(v) => Some(parse_id(v).map_err(|m| refuse(None, ErrorCode::BAD_ENVELOPE, format!("ack: {m}")))?),
        None => None,
    };
    let data = raw.data.map_or("null", RawValue::get);
    match (raw.event, raw.call, raw.reply) {
        (Some(event), None, None) => {
            let name = parse_name(event, max_name).map_err(|m| refuse(ack, ErrorCode::BAD_ENVELOPE, m))?;
            let rooms = raw.rooms.map(|rooms| Offsets { rooms, epoch: raw.epoch });
            Ok(Envelope::Event { name, data, ack, rooms })
        }
        (None, Some(call), None) => {
            let name = parse_name(call, max_name).map_err(|m| refuse(ack, ErrorCode::BAD_ENVELOPE, m))?;
            let ack =
                ack.ok_or_else(|| refuse(None, ErrorCode::BAD_ENVELOPE, "a call needs an ack".into()))?;
            Ok(Envelope::Call { name, data, ack })
        }
        (None, None, Some(reply)) => {
            let id =
                parse_id(reply).map_err(|m| refuse(None, ErrorCode::BAD_ENVELOPE, format!("reply: {m}")))?;
            let result = match raw.error {
                Some(error) => Err(serde_json::from_str::<ReplyError>(error.get())
                    .map_err(|e| refuse(None, ErrorCode::BAD_ENVELOPE, format!("error: {e}")))?),
                None => Ok(data),
            };
            Ok(Envelope::Reply { id, result })
        }
        _ => Err(refuse(
            ack,
            ErrorCode::BAD_ENVELOPE,
            "an envelope has exactly one of \"event\", \"call\" or \"reply\"".into(),
        )),
    }
}

/// The `ack` of an envelope, if one can be read: to answer a request refused for
/// another reason (a malformed binary frame).
pub(crate) fn ack_of(text: &str, max_name: usize) -> Option<u64> {
    match parse(text, max_name) {
        Ok(Envelope::Event { ack, .. }) => ack,
        Ok(Envelope::Call { ack, .. }) => Some(ack),
        Ok(Envelope::Reply { .. }) => None,
        Err(refused) => refused.ack,
    }
}

fn parse_id(raw: &RawValue) -> Result<u64, String> {
    match raw.get().parse::<u64>() {
        Ok(id) if (1..=MAX_ID).contains(&id) => Ok(id),
        _ => Err(format!("expected an integer from 1 to 2^53-1, got {}", raw.get())),
    }
}

fn parse_name<'a>(raw: &'a RawValue, max: usize) -> Result<Cow<'a, str>, String> {
    let name: Cow<'a, str> =
        serde_json::from_str(raw.get()).map_err(|_| "a name must be a string".to_owned())?;
    check_name(&name, max)?;
    Ok(name)
}

/// Checks a name's length (1 to `max` bytes).
pub(crate) fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("a name must be 1 to {max} bytes, got {}", name.len()));
    }
    Ok(())
}

/// Writes a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"event":NAME,"data":DATA[,"ack":ID]}`.
pub(crate) fn event(name: &str, data: &str, ack: Option<u64>) -> String {
    let mut out = Vec::with_capacity(name.len() + data.len() + 40);
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, name);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    if let Some(id) = ack {
        out.extend_from_slice(format!(",\"ack\":{id}").as_bytes());
    }
    out.push(b'}');
    into_string(out)
}

/// `{"event":NAME,"data":DATA` — a room event's envelope before its epoch and offsets
/// (see [`room_event_from_body`]).
pub(crate) fn event_body(name: &str, data: &str) -> String {
    let mut out = Vec::with_capacity(name.len() + data.len() + 24);
    out.extend_from_slice(b"{\"event\":");
    push_str(&mut out, name);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    into_string(out)
}

/// `BODY,"epoch":EPOCH,"rooms":{ROOM:OFFSET...}}` from an [`event_body`]: the room event
/// a client receives (docs/PROTOCOL.md, *Offsets and recovery*).
pub(crate) fn room_event_from_body(body: &str, epoch: &str, rooms: &[String], offsets: &[u64]) -> String {
    let mut out = Vec::with_capacity(body.len() + epoch.len() + 24 + rooms.len() * 24);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b",\"epoch\":");
    push_str(&mut out, epoch);
    out.extend_from_slice(b",\"rooms\":{");
    for (i, (room, offset)) in rooms.iter().zip(offsets).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(&mut out, room);
        out.push(b':');
        out.extend_from_slice(offset.to_string().as_bytes());
    }
    out.extend_from_slice(b"}}");
    into_string(out)
}

/// `{"call":NAME,"data":DATA,"ack":ID}`.
pub(crate) fn call(name: &str, data: &str, ack: u64) -> String {
    let mut out = Vec::with_capacity(name.len() + data.len() + 40);
    out.extend_from_slice(b"{\"call\":");
    push_str(&mut out, name);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(format!(",\"ack\":{ack}}}").as_bytes());
    into_string(out)
}

/// `{"reply":ID,"data":DATA}` or `{"reply":ID,"error":{...}}`.
pub(crate) fn reply(id: u64, result: Result<&str, &ReplyError>) -> String {
    match result {
        Ok(data) => format!("{{\"reply\":{id},\"data\":{data}}}"),
        Err(error) => format!("{{\"reply\":{id},\"error\":{}}}", to_json(error)),
    }
}

/// `{"event":"$error","data":{"code","message"}}`.
pub(crate) fn error_event(error: &ReplyError) -> String {
    event("$error", &to_json(error), None)
}

/// Serializes a value the protocol defines (no failure possible for these types).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn into_string(bytes: Vec<u8>) -> String {
    // Only valid UTF-8 was written: JSON from serde_json and &str pieces.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The envelope parser for the fuzz targets in `fuzz/` (cargo feature `fuzzing`).
///
/// **Not part of the API**: hidden from the docs, outside semver, and free to change or
/// vanish in any release. It mirrors `parse` with public types so that a fuzz target
/// can check what the parser promises (docs/FUZZING.md).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::borrow::Cow;

    use serde_json::value::RawValue;

    use crate::error::ReplyError;

    /// The largest request id (2^53 − 1).
    pub const MAX_ID: u64 = super::MAX_ID;

    /// An accepted envelope, as the parser read it (`data`, `rooms` and `epoch` are raw
    /// JSON borrowed from the text).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Parsed<'a> {
        /// `{"event", "data", "ack"?, "rooms"?, "epoch"?}`.
        Event {
            /// The event name.
            name: Cow<'a, str>,
            /// `data`, or `null` when absent.
            data: &'a str,
            /// The request id, if it asks for an ack.
            ack: Option<u64>,
            /// `rooms`, raw, if present.
            rooms: Option<&'a str>,
            /// `epoch`, raw, if present along with `rooms`.
            epoch: Option<&'a str>,
        },
        /// `{"call", "data", "ack"}`.
        Call {
            /// The procedure name.
            name: Cow<'a, str>,
            /// `data`, or `null` when absent.
            data: &'a str,
            /// The request id.
            ack: u64,
        },
        /// `{"reply", "data"}` or `{"reply", "error"}`.
        Reply {
            /// The id of the request it answers.
            id: u64,
            /// `data` (raw, `null` when absent) or the error.
            result: Result<&'a str, ReplyError>,
        },
    }

    /// Parses one text message as the hub does; a refusal gives the `ack` it could read
    /// and the error reply.
    pub fn parse(text: &str, max_name: usize) -> Result<Parsed<'_>, (Option<u64>, ReplyError)> {
        let envelope = super::parse(text, max_name).map_err(|r| (r.ack, r.error))?;
        Ok(match envelope {
            super::Envelope::Event { name, data, ack, rooms } => Parsed::Event {
                name,
                data,
                ack,
                rooms: rooms.map(|r| r.rooms.get()),
                epoch: rooms.and_then(|r| r.epoch).map(RawValue::get),
            },
            super::Envelope::Call { name, data, ack } => Parsed::Call { name, data, ack },
            super::Envelope::Reply { id, result } => Parsed::Reply { id, result },
        })
    }

    /// Reads a version 2 binary frame as the hub does: its JSON and attachments, or the
    /// `bad_envelope` message.
    pub fn read_frame(frame: &[u8]) -> Result<(String, Vec<Vec<u8>>), String> {
        let frame = bytes::Bytes::copy_from_slice(frame);
        let read = crate::binary::read_frame(&frame).map_err(|bad| bad.message)?;
        Ok((read.text.to_owned(), read.bins.iter().map(|b| b.to_vec()).collect()))
    }

    /// Writes a version 2 binary frame as the hub does.
    pub fn write_frame(text: &str, attachments: &[Vec<u8>]) -> Vec<u8> {
        let bins = attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
        crate::binary::Json { text: text.to_owned(), bins }.frame().to_vec()
    }

    /// Decodes a frame's JSON as a [`Payload`](crate::Payload) with its attachments, as a
    /// handler taking any data does; returns how many byte arrays it kept.
    pub fn payload_binaries(text: &str, attachments: &[Vec<u8>]) -> Result<usize, String> {
        let bins: Vec<bytes::Bytes> = attachments.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
        let payload: crate::Payload = crate::binary::from_json(text, &bins).map_err(|e| e.to_string())?;
        Ok(payload.binaries().len())
    }

    impl Parsed<'_> {
        /// The envelope written back with the writers the hub sends with (`rooms` and
        /// `epoch` left out: the hub writes them from its own offsets).
        pub fn write(&self) -> String {
            match self {
                Parsed::Event { name, data, ack, .. } => super::event(name, data, *ack),
                Parsed::Call { name, data, ack } => super::call(name, data, *ack),
                Parsed::Reply { id, result } => super::reply(*id, result.as_ref().map(|d| *d)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<u64>, String) {
        let r = parse(text, 128).unwrap_err();
        (r.ack, r.error.code.as_str().to_owned())
    }

    #[test]
    fn parses_each_kind() {
        assert!(matches!(
            parse(r#"{"event":"a","data":1}"#, 128),
            Ok(Envelope::Event { ack: None, data: "1", .. })
        ));
        assert!(matches!(parse(r#"{"event":"a"}"#, 128), Ok(Envelope::Event { data: "null", .. })));
        assert!(matches!(parse(r#"{"call":"f","data":{},"ack":3}"#, 128), Ok(Envelope::Call { ack: 3, .. })));
        assert!(matches!(
            parse(r#"{"reply":3,"data":[1]}"#, 128),
            Ok(Envelope::Reply { id: 3, result: Ok("[1]") })
        ));
        let err = parse(r#"{"reply":3,"error":{"code":"x","message":"m"}}"#, 128);
        assert!(matches!(err, Ok(Envelope::Reply { result: Err(_), .. })));
        assert!(parse(r#"{"event":"a","x":[1,{}]}"#, 128).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn refuses_what_is_not_an_envelope() {
        assert_eq!(code("[1]"), (None, "bad_json".into()));
        assert_eq!(code("{\"event\":"), (None, "bad_json".into()));
        assert_eq!(code("{}"), (None, "bad_envelope".into()));
        assert_eq!(code(r#"{"event":"a","call":"b","ack":4}"#), (Some(4), "bad_envelope".into()));
        assert_eq!(code(r#"{"event":"a","ack":1.5}"#), (None, "bad_envelope".into()));
        assert_eq!(code(r#"{"event":"a","ack":0}"#), (None, "bad_envelope".into()));
        assert_eq!(code(r#"{"event":"a","ack":9007199254740992}"#), (None, "bad_envelope".into()));
        assert_eq!(code(r#"{"event":7,"ack":2}"#), (Some(2), "bad_envelope".into()));
        assert_eq!(code(r#"{"event":"","ack":2}"#), (Some(2), "bad_envelope".into()));
        assert_eq!(code(r#"{"call":"f"}"#), (None, "bad_envelope".into()));
        let long = format!(r#"{{"event":"{}","ack":5}}"#, "x".repeat(129));
        assert_eq!(code(&long), (Some(5), "bad_envelope".into()));
    }

    #[test]
    fn writes_envelopes() {
        assert_eq!(event("a\"b", "1", Some(2)), r#"{"event":"a\"b","data":1,"ack":2}"#);
        assert_eq!(
            room_event_from_body(&event_body("chat", "{}"), "e1", &["lobby".into(), "$all".into()], &[4, 9]),
            r#"{"event":"chat","data":{},"epoch":"e1","rooms":{"lobby":4,"$all":9}}"#
        );
        assert_eq!(reply(3, Ok("5")), r#"{"reply":3,"data":5}"#);
        let e = reply(3, Err(&ReplyError::new(ErrorCode::TIMEOUT, "late")));
        assert_eq!(e, r#"{"reply":3,"error":{"code":"timeout","message":"late"}}"#);
    }
}
