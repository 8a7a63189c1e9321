//! Reading version 2 binary frames: the layout, and every placeholder checked.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{FORMAT, MAX_ATTACHMENTS};

/// A binary frame's parts: the envelope's JSON (a slice of the frame) and the
/// attachments (slices of it too).
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub(crate) text: &'a str,
    pub(crate) bins: Vec<Bytes>,
}

/// Why a binary frame was refused (`bad_envelope`), with its JSON when the frame's
/// layout was sound (so that the request's `ack` can be answered).
#[derive(Debug)]
pub(crate) struct BadFrame<'a> {
    pub(crate) text: Option<&'a str>,
    pub(crate) message: String,
}

impl From<String> for BadFrame<'_> {
    fn from(message: String) -> Self {
        BadFrame { text: None, message }
    }
}

impl From<&str> for BadFrame<'_> {
    fn from(message: &str) -> Self {
        BadFrame { text: None, message: message.to_owned() }
    }
}

/// Reads a version 2 binary frame and checks its placeholders: each attachment is
/// pointed to exactly once (docs/PROTOCOL.md).
pub(crate) fn read_frame(frame: &Bytes) -> Result<Frame<'_>, BadFrame<'_>> {
    let bytes = &frame[..];
    match bytes.first() {
        Some(&FORMAT) => {}
        Some(other) => return Err(format!("a binary message starts with 0x02, not {other:#04x}").into()),
        None => return Err("an empty binary message".into()),
    }
    let mut at = 1;
    let text_len = read_u32(bytes, &mut at).ok_or("the frame ends inside the JSON's length")?;
    let end = at
        .checked_add(text_len)
        .filter(|end| *end <= bytes.len())
        .ok_or("the JSON's length is past the frame's end")?;
    let text = std::str::from_utf8(&bytes[at..end]).map_err(|e| format!("the JSON is not UTF-8: {e}"))?;
    at = end;
    let mut bins = Vec::new();
    while at < bytes.len() {
        if bins.len() == MAX_ATTACHMENTS {
            return Err(BadFrame {
                text: Some(text),
                message: format!("more than {MAX_ATTACHMENTS} byte arrays"),
            });
        }
        let len = read_u32(bytes, &mut at).ok_or("the frame ends inside an attachment's length")?;
        let end = at
            .checked_add(len)
            .filter(|end| *end <= bytes.len())
            .ok_or("an attachment's length is past the frame's end")?;
        bins.push(frame.slice(at..end));
        at = end;
    }
    let bad = |message: String| BadFrame { text: Some(text), message };
    let mut seen = 0u64;
    let mut de = serde_json::Deserializer::from_str(text);
    Walk { seen: &mut seen, count: bins.len() }.deserialize(&mut de).map_err(|e| bad(e.to_string()))?;
    de.end().map_err(|e| bad(e.to_string()))?;
    let all = if bins.len() == 64 { u64::MAX } else { (1u64 << bins.len()) - 1 };
    if seen != all {
        let missing = (0..bins.len()).find(|i| seen & (1 << i) == 0).unwrap_or_default();
        return Err(bad(format!("byte array {missing} has no placeholder")));
    }
    Ok(Frame { text, bins })
}

fn read_u32(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let word: [u8; 4] = bytes.get(*at..*at + 4)?.try_into().ok()?;
    *at += 4;
    usize::try_from(u32::from_be_bytes(word)).ok()
}

/// Walks JSON, marking the placeholders it finds in `seen` (one bit per index).
struct Walk<'a> {
    seen: &'a mut u64,
    count: usize,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk { seen: &mut *self.seen, count: self.count })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut first = true;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key != "$bin" {
                map.next_value_seed(Walk { seen: &mut *self.seen, count: self.count })?;
                first = false;
                continue;
            }
            let index: u64 = map.next_value().map_err(|_| de::Error::custom("\"$bin\" is an integer"))?;
            if !first || map.next_key::<IgnoredAny>()?.is_some() {
                return Err(de::Error::custom("a placeholder {\"$bin\": I} has no other member"));
            }
            let Some(bit) = usize::try_from(index).ok().filter(|i| *i < self.count).map(|i| 1u64 << i) else {
                return Err(de::Error::custom(format!(
                    "placeholder {index}: the frame has {} byte arrays",
                    self.count
                )));
            };
            if *self.seen & bit != 0 {
                return Err(de::Error::custom(format!("byte array {index} has two placeholders")));
            }
            *self.seen |= bit;
            return Ok(());
        }
        Ok(())
    }
}
