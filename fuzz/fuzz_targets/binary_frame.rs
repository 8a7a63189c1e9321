//! The realtime protocol's version 2 binary frames (docs/PROTOCOL.md, *Version 2: binary
//! payloads*) on arbitrary bytes: never a panic; an accepted frame is written back to the
//! same bytes, has at most 64 attachments and JSON that parses, and a handler taking any
//! data (`Payload`) reads it, keeping at most that many byte arrays.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zapsocket_realtime::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok((text, attachments)) = fuzzing::read_frame(data) else { return };
    assert!(attachments.len() <= 64);
    assert_eq!(fuzzing::write_frame(&text, &attachments), data, "the layout is exact");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "accepted JSON parses: {text:?}");
    let kept = fuzzing::payload_binaries(&text, &attachments).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    // Fewer only when a key repeats (JSON keeps the last value).
    assert!(kept <= attachments.len());
});
