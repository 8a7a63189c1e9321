//! The realtime envelope parser (docs/PROTOCOL.md, *Envelopes*) on arbitrary text, with
//! serde_json's own reading of the text as the oracle: an accepted envelope is a JSON
//! object whose fields are what the parser returned (names 1 to `max_name` bytes, ids 1 to
//! 2^53 − 1, `data` the raw value or `null`), and it reads back the same once written; a
//! refusal is `bad_json` or `bad_envelope`, the latter only for valid JSON.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use zapsocket_realtime::fuzzing::{self, MAX_ID, Parsed};

/// The object as serde_json reads it: each key to its raw value (the last one, if
/// repeated). A `null` counts as absent, as in the parser.
type Fields<'a> = BTreeMap<String, &'a RawValue>;

fuzz_target!(|data: &[u8]| {
    let Some((&max, data)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Around the default of 128, and the edges: 0 accepts no event or call at all.
    let max_name = usize::from(max % 132);
    let oracle: Option<Fields<'_>> = serde_json::from_str(text).ok();
    match fuzzing::parse(text, max_name) {
        Ok(parsed) => {
            let fields = oracle.unwrap_or_else(|| panic!("accepted what is not a JSON object: {text:?}"));
            check_accepted(&parsed, &fields, max_name);
            let written = parsed.write();
            let again = fuzzing::parse(&written, max_name).expect("a written envelope parses");
            assert_eq!(without_offsets(again), without_offsets(parsed), "written: {written}");
        }
        Err((ack, error)) => {
            let code = error.code.as_str();
            assert!(matches!(code, "bad_json" | "bad_envelope"), "{error:?}");
            if let Some(fields) = &oracle {
                assert_eq!(code, "bad_envelope", "valid JSON object refused as {error:?}");
                if ack.is_some() {
                    assert_eq!(ack, id(fields, "ack"), "the ack of a refusal");
                }
            }
            assert!(ack.is_none_or(|a| (1..=MAX_ID).contains(&a)));
        }
    }
});

fn check_accepted(parsed: &Parsed<'_>, fields: &Fields<'_>, max_name: usize) {
    let present = |key: &str| fields.get(key).is_some_and(|v| v.get() != "null");
    let kinds = ["event", "call", "reply"].map(present);
    assert_eq!(kinds.iter().filter(|&&k| k).count(), 1, "one of event, call, reply: {kinds:?}");
    let raw_data = fields.get("data").map_or("null", |v| v.get());
    match parsed {
        Parsed::Event { name, data, ack, rooms, epoch } => {
            check_name(name, fields.get("event"), max_name);
            assert_eq!(*data, raw_data);
            assert_eq!(*ack, id(fields, "ack"));
            assert_eq!(rooms.is_some(), present("rooms"));
            assert!(epoch.is_none() || (rooms.is_some() && present("epoch")));
        }
        Parsed::Call { name, data, ack } => {
            check_name(name, fields.get("call"), max_name);
            assert_eq!(*data, raw_data);
            assert_eq!(Some(*ack), id(fields, "ack"), "a call has an ack");
        }
        Parsed::Reply { id: reply, result } => {
            assert_eq!(Some(*reply), id(fields, "reply"));
            match result {
                Ok(data) => {
                    assert!(!present("error"));
                    assert_eq!(*data, raw_data);
                }
                Err(error) => {
                    let raw = fields.get("error").expect("an error reply has an error");
                    assert_eq!(serde_json::from_str(raw.get()).ok().as_ref(), Some(error));
                }
            }
        }
    }
}

fn check_name(name: &str, raw: Option<&&RawValue>, max_name: usize) {
    assert!((1..=max_name).contains(&name.len()), "name of {} bytes, max {max_name}", name.len());
    let expected: Option<String> = raw.and_then(|v| serde_json::from_str(v.get()).ok());
    assert_eq!(Some(name), expected.as_deref());
}

/// An id field as the protocol defines it: an integer from 1 to 2^53 − 1.
fn id(fields: &Fields<'_>, key: &str) -> Option<u64> {
    let raw = fields.get(key)?.get();
    if raw == "null" {
        return None;
    }
    raw.parse().ok().filter(|id| (1..=MAX_ID).contains(id))
}

/// What a written envelope carries: everything but the room offsets.
fn without_offsets(parsed: Parsed<'_>) -> Parsed<'_> {
    match parsed {
        Parsed::Event { name, data, ack, .. } => Parsed::Event { name, data, ack, rooms: None, epoch: None },
        other => other,
    }
}
