//! Byte arrays in messages (docs/PROTOCOL.md, *Version 2: binary payloads*).
//!
//! On a version 2 connection (`zap.v2`), a message whose data holds byte arrays is one
//! binary frame: the JSON envelope, where each byte array is a placeholder
//! `{"$bin": I}`, then the bytes of each, with no base64. [`Binary`] is such a byte
//! array in Rust types; [`Payload`] is any data, byte arrays included (a handler that
//! takes whatever comes, like `serde_json::Value` but keeping the bytes).
//!
//! How a [`Binary`] is written depends on where: inside a message the realtime layer
//! encodes, it is a placeholder and its bytes go to the frame's attachments (no copy);
//! in a text message for a version 1 client, `{"$base64": "..."}`; anywhere else (plain
//! `serde_json`), an array of numbers. It reads from all three (a placeholder only in a
//! message that came as a binary frame), and from serde's bytes.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use zapsocket_realtime::Binary;
//!
//! #[derive(Serialize, Deserialize, ts_rs::TS)]
//! struct Upload {
//!     name: String,
//!     bytes: Binary, // `Uint8Array` in TypeScript
//! }
//! let upload = Upload { name: "a.png".into(), bytes: Binary::from(vec![1, 2, 3]) };
//! // Outside a message, plain JSON:
//! assert_eq!(serde_json::to_string(&upload).unwrap(), r#"{"name":"a.png","bytes":[1,2,3]}"#);
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use zapsocket::Message;

mod frame;

pub(crate) use frame::read_frame;

/// The most byte arrays one message may carry.
pub const MAX_ATTACHMENTS: usize = 64;

/// The first byte of a version 2 binary frame: an envelope with attachments.
const FORMAT: u8 = 0x02;

/// The bytes of a frame besides its JSON and attachments: the format byte, the JSON's
/// length, and a length per attachment.
fn overhead(attachments: usize) -> usize {
    5 + 4 * attachments
}

/// A byte array in a message's data: bytes on the wire in a version 2 binary frame,
/// `Uint8Array` in JavaScript and TypeScript. Derefs to `[u8]`; cheap to clone (it is
/// [`Bytes`]). Received, it is a slice of the frame it came in, not a copy.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Bytes);

impl Binary {
    /// The bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binary({} bytes)", self.0.len())
    }
}

impl Deref for Binary {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for Binary {
    fn from(bytes: Bytes) -> Self {
        Binary(bytes)
    }
}

impl From<Vec<u8>> for Binary {
    fn from(bytes: Vec<u8>) -> Self {
        Binary(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Binary {
    fn from(bytes: &'static [u8]) -> Self {
        Binary(Bytes::from_static(bytes))
    }
}

impl From<Binary> for Bytes {
    fn from(binary: Binary) -> Self {
        binary.0
    }
}

impl From<Binary> for Vec<u8> {
    fn from(binary: Binary) -> Self {
        binary.0.into()
    }
}

impl ts_rs::TS for Binary {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &ts_rs::Config) -> String {
        "Uint8Array".into()
    }

    fn inline(cfg: &ts_rs::Config) -> String {
        Self::name(cfg)
    }
}

/// How a [`Binary`] being serialized on this thread is written.
enum Writing {
    /// As an array of numbers (plain `serde_json`).
    Numbers,
    /// As a placeholder, its bytes collected: a message being encoded.
    Attach(Vec<Bytes>),
    /// As `{"$base64": "..."}`: a message for a version 1 client.
    Base64,
}

thread_local! {
    static WRITING: RefCell<Writing> = const { RefCell::new(Writing::Numbers) };
    /// The attachments of the binary message being read, while its data is decoded.
    static READING: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Puts back how the thread wrote binaries, even if serializing panicked.
struct WritingGuard(Option<Writing>);

impl WritingGuard {
    fn set(writing: Writing) -> Self {
        WritingGuard(Some(WRITING.with(|w| w.replace(writing))))
    }

    fn take(mut self) -> Writing {
        let previous = self.0.take().unwrap_or(Writing::Numbers);
        WRITING.with(|w| w.replace(previous))
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            WRITING.with(|w| w.replace(previous));
        }
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        enum How {
            Placeholder(usize),
            Base64,
            Numbers,
        }
        let how = WRITING.with(|w| match &mut *w.borrow_mut() {
            Writing::Attach(bins) => {
                bins.push(self.0.clone());
                How::Placeholder(bins.len() - 1)
            }
            Writing::Base64 => How::Base64,
            Writing::Numbers => How::Numbers,
        });
        match how {
            How::Placeholder(index) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("$bin", &index)?;
                map.end()
            }
            How::Base64 => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("$base64", &STANDARD.encode(&self.0))?;
                map.end()
            }
            How::Numbers => {
                // serde_json writes bytes as an array of numbers; so do most formats.
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for byte in self.0.iter() {
                    seq.serialize_element(byte)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BinaryVisitor)
    }
}

struct BinaryVisitor;

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = Binary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes: a byte array, an array of numbers 0 to 255, or {\"$base64\": ...}")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Binary, E> {
        Ok(Binary(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Binary, E> {
        Ok(Binary(Bytes::from(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Binary, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Binary(Bytes::from(out)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Binary, A::Error> {
        let key: Cow<'de, str> = map.next_key()?.ok_or_else(|| de::Error::custom("bytes, not {}"))?;
        let binary = match &*key {
            "$bin" => {
                let index: usize = map.next_value()?;
                READING.with(|r| match &*r.borrow() {
                    Some(bins) => bins.get(index).cloned().map(Binary).ok_or_else(|| {
                        de::Error::custom(format!(
                            "placeholder {index}: the message has {} byte arrays",
                            bins.len()
                        ))
                    }),
                    None => Err(de::Error::custom("a {\"$bin\"} placeholder outside a binary message")),
                })?
            }
            "$base64" => {
                let text: Cow<'de, str> = map.next_value()?;
                Binary(Bytes::from(STANDARD.decode(text.as_bytes()).map_err(de::Error::custom)?))
            }
            other => return Err(de::Error::custom(format!("bytes, not an object with {other:?}"))),
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("bytes as an object have exactly one member"));
        }
        Ok(binary)
    }
}

/// `#[serde(with = "zapsocket_realtime::binary")]` on a `Bytes` or `Vec<u8>` field: the
/// same wire shape as [`Binary`] (add `#[ts(type = "Uint8Array")]` for its TypeScript).
pub fn serialize<S: Serializer, T: AsRef<[u8]>>(bytes: &T, serializer: S) -> Result<S::Ok, S::Error> {
    Binary(Bytes::copy_from_slice(bytes.as_ref())).serialize(serializer)
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>, T: From<Bytes>>(deserializer: D) -> Result<T, D::Error> {
    Binary::deserialize(deserializer).map(|b| T::from(b.0))
}

/// Any data, byte arrays included: what `serde_json::Value` is to JSON, for messages
/// with binary data. A handler that takes a `Payload` gets whatever the client sent and
/// can send it on unchanged (`zap serve`'s `echo`). Its TypeScript type is `unknown`.
///
/// [`Payload::value`] is the JSON with each byte array as a placeholder `{"$bin": I}`,
/// and [`Payload::binaries`]`[I]` its bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    value: Value,
    binaries: Vec<Bytes>,
}

impl Payload {
    /// The JSON, byte arrays as placeholders `{"$bin": I}`.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The byte arrays, in the order of their placeholders' indices.
    pub fn binaries(&self) -> &[Bytes] {
        &self.binaries
    }

    /// The JSON and the byte arrays.
    pub fn into_parts(self) -> (Value, Vec<Bytes>) {
        (self.value, self.binaries)
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload { value, binaries: Vec::new() }
    }
}

impl ts_rs::TS for Payload {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn name(_: &ts_rs::Config) -> String {
        "unknown".into()
    }

    fn inline(cfg: &ts_rs::Config) -> String {
        Self::name(cfg)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.binaries.is_empty() {
            return self.value.serialize(serializer);
        }
        WithBinaries { value: &self.value, binaries: &self.binaries }.serialize(serializer)
    }
}

/// A JSON value whose placeholders are written as the [`Binary`] they stand for.
struct WithBinaries<'a> {
    value: &'a Value,
    binaries: &'a [Bytes],
}

impl Serialize for WithBinaries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let child = |value| WithBinaries { value, binaries: self.binaries };
        match self.value {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&child(item))?;
                }
                seq.end()
            }
            Value::Object(members) => {
                if let Some(bytes) = placeholder(self.value).and_then(|i| self.binaries.get(i)) {
                    return Binary(bytes.clone()).serialize(serializer);
                }
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (key, value) in members {
                    map.serialize_entry(key, &child(value))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(deserializer)?;
        let mut binaries = Vec::new();
        READING.with(|r| {
            if let Some(bins) = &*r.borrow() {
                renumber(&mut value, bins, &mut binaries);
            }
        });
        Ok(Payload { value, binaries })
    }
}

/// The index of a placeholder: an object whose only member is `"$bin"`, an integer.
fn placeholder(value: &Value) -> Option<usize> {
    match value {
        Value::Object(members) if members.len() == 1 => {
            members.get("$bin")?.as_u64().and_then(|i| usize::try_from(i).ok())
        }
        _ => None,
    }
}

/// Takes the bytes the placeholders of `value` point to in `bins` into `out`, and makes
/// the placeholders point there.
fn renumber(value: &mut Value, bins: &[Bytes], out: &mut Vec<Bytes>) {
    if let Some(bytes) = placeholder(value).and_then(|i| bins.get(i)) {
        out.push(bytes.clone());
        *value = serde_json::json!({ "$bin": out.len() - 1 });
        return;
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| renumber(item, bins, out)),
        Value::Object(members) => members.values_mut().for_each(|item| renumber(item, bins, out)),
        _ => {}
    }
}

/// JSON with the byte arrays its placeholders point to: data, or a whole envelope.
/// Not part of the API (what [`HandlerOutput`](crate::HandlerOutput) gives the hub).
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Json {
    pub(crate) text: String,
    pub(crate) bins: Vec<Bytes>,
}

impl Json {
    /// JSON without byte arrays.
    pub(crate) fn plain(text: String) -> Json {
        Json { text, bins: Vec::new() }
    }

    /// The same byte arrays with other JSON around them: `envelope(data)`.
    pub(crate) fn wrap(self, envelope: impl FnOnce(&str) -> String) -> Json {
        Json { text: envelope(&self.text), bins: self.bins }
    }

    /// Its size as a frame to a version 2 client.
    pub(crate) fn len(&self) -> usize {
        if self.bins.is_empty() {
            return self.text.len();
        }
        overhead(self.bins.len()) + self.text.len() + self.bins.iter().map(Bytes::len).sum::<usize>()
    }

    /// The message for a client: a text frame without byte arrays; with them, a binary
    /// frame (`binary`: a version 2 client) or a text frame with each as
    /// `{"$base64": ...}` (version 1).
    pub(crate) fn into_message(self, binary: bool) -> Message {
        match (self.bins.is_empty(), binary) {
            (true, _) => Message::from(self.text),
            (false, true) => Message::Binary(self.frame()),
            (false, false) => Message::from(self.base64()),
        }
    }

    /// The version 2 binary frame.
    pub(crate) fn frame(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        out.put_u8(FORMAT);
        out.put_u32(len_u32(self.text.len()));
        out.put_slice(self.text.as_bytes());
        for bin in &self.bins {
            out.put_u32(len_u32(bin.len()));
            out.put_slice(bin);
        }
        out.freeze()
    }

    /// The text with each placeholder replaced by `{"$base64": ...}`.
    fn base64(&self) -> String {
        self.inline(Writing::Base64)
    }

    /// Plain JSON: each byte array as an array of numbers (for what crosses nodes as
    /// JSON, like the answers to [`Hub::server_side_emit`](crate::Hub::server_side_emit)).
    pub(crate) fn into_text(self) -> String {
        if self.bins.is_empty() {
            return self.text;
        }
        self.inline(Writing::Numbers)
    }

    fn inline(&self, writing: Writing) -> String {
        let Ok(value) = serde_json::from_str::<Value>(&self.text) else { return self.text.clone() };
        let _writing = WritingGuard::set(writing);
        serde_json::to_string(&WithBinaries { value: &value, binaries: &self.bins })
            .unwrap_or_else(|_| self.text.clone())
    }
}

fn len_u32(len: usize) -> u32 {
    // Frames are bounded far below 4 GiB by the WebSocket layer's limits.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Serializes data for a message: JSON, with each [`Binary`] (or [`Payload`] byte array)
/// as a placeholder and its bytes collected. More than [`MAX_ATTACHMENTS`] is an error.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, serde_json::Error> {
    let guard = WritingGuard::set(Writing::Attach(Vec::new()));
    let text = serde_json::to_string(value);
    let bins = match guard.take() {
        Writing::Attach(bins) => bins,
        _ => Vec::new(),
    };
    if bins.len() > MAX_ATTACHMENTS {
        return Err(serde::ser::Error::custom(format!(
            "{} byte arrays in one message, over the limit of {MAX_ATTACHMENTS}",
            bins.len()
        )));
    }
    Ok(Json { text: text?, bins })
}

/// Decodes data that came with `bins` (a binary message's attachments): placeholders
/// read as the bytes they point to. Without attachments it is plain JSON.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, bins: &[Bytes]) -> serde_json::Result<T> {
    if bins.is_empty() {
        return serde_json::from_str(text);
    }
    struct Reading(Option<Vec<Bytes>>);
    impl Drop for Reading {
        fn drop(&mut self) {
            READING.with(|r| *r.borrow_mut() = self.0.take());
        }
    }
    let _reading = Reading(READING.with(|r| r.replace(Some(bins.to_vec()))));
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests;
