use serde_json::json;

use super::frame::read_frame;
use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct File {
    name: String,
    bytes: Binary,
    #[serde(with = "crate::binary")]
    raw: Vec<u8>,
}

fn file() -> File {
    File { name: "f".into(), bytes: Binary::from(vec![1, 2]), raw: vec![3] }
}

#[test]
fn a_binary_is_written_as_where_it_goes_asks() {
    assert_eq!(serde_json::to_string(&file()).unwrap(), r#"{"name":"f","bytes":[1,2],"raw":[3]}"#);
    let json = to_json(&file()).unwrap();
    assert_eq!(json.text, r#"{"name":"f","bytes":{"$bin":0},"raw":{"$bin":1}}"#);
    assert_eq!(json.bins, [Bytes::from_static(&[1, 2]), Bytes::from_static(&[3])]);
    assert_eq!(json.base64(), r#"{"bytes":{"$base64":"AQI="},"name":"f","raw":{"$base64":"Aw=="}}"#);
    assert_eq!(json.clone().into_text(), r#"{"bytes":[1,2],"name":"f","raw":[3]}"#);
    // After a message, the thread writes plain JSON again.
    assert_eq!(serde_json::to_string(&Binary::from(vec![9])).unwrap(), "[9]");
    let many: Vec<Binary> = (0..=MAX_ATTACHMENTS).map(|_| Binary::default()).collect();
    assert!(to_json(&many).unwrap_err().to_string().contains("over the limit of 64"));
}

#[test]
fn a_binary_reads_from_every_shape_and_placeholders_only_in_binary_messages() {
    let bins = [Bytes::from_static(&[1, 2]), Bytes::from_static(&[3])];
    let text = r#"{"name":"f","bytes":{"$bin":0},"raw":{"$bin":1}}"#;
    assert_eq!(from_json::<File>(text, &bins).unwrap(), file());
    let numbers = r#"{"name":"f","bytes":[1,2],"raw":{"$base64":"Aw=="}}"#;
    assert_eq!(from_json::<File>(numbers, &[]).unwrap(), file());
    let error = from_json::<File>(text, &[]).unwrap_err().to_string();
    assert!(error.contains("outside a binary message"), "{error}");
    assert!(from_json::<Binary>(r#"{"$bin":2}"#, &bins).is_err());
    assert!(from_json::<Binary>(r#"[256]"#, &[]).is_err());
    assert!(from_json::<Binary>(r#"{"$base64":"AQ","x":1}"#, &[]).is_err());
    // A slice of the frame, not a copy.
    let got: Binary = from_json(r#"{"$bin":1}"#, &bins).unwrap();
    assert_eq!(got.as_ptr(), bins[1].as_ptr());
}

#[test]
fn a_payload_keeps_its_bytes_and_renumbers_them() {
    let bins = [Bytes::from_static(b"a"), Bytes::from_static(b"b"), Bytes::from_static(b"c")];
    let payload: Payload = from_json(r#"[{"$bin":2},{"x":{"$bin":0}},{"$bin":1,"y":0}]"#, &bins).unwrap();
    assert_eq!(payload.value(), &json!([{"$bin": 0}, {"x": {"$bin": 1}}, {"$bin": 1, "y": 0}]));
    assert_eq!(payload.binaries(), [Bytes::from_static(b"c"), Bytes::from_static(b"a")]);
    // In a message after other bytes, its placeholders follow on.
    let json = to_json(&(Binary::from(vec![0]), &payload)).unwrap();
    assert_eq!(json.text, r#"[{"$bin":0},[{"$bin":1},{"x":{"$bin":2}},{"$bin":1,"y":0}]]"#);
    assert_eq!(json.bins.len(), 3);
    // Outside a message, numbers; from a text message, `{"$bin"}` is plain data.
    assert_eq!(serde_json::to_string(&payload).unwrap(), r#"[[99],{"x":[97]},{"$bin":1,"y":0}]"#);
    let plain: Payload = from_json(r#"{"$bin":0}"#, &[]).unwrap();
    assert!(plain.binaries().is_empty());
    assert_eq!(to_json(&plain).unwrap().text, r#"{"$bin":0}"#);
}

#[test]
fn frames_are_read_back_as_written() {
    let json = Json {
        text: r#"{"a":[{"$bin":1},{"$bin":0}]}"#.into(),
        bins: vec![Bytes::from_static(b"xy"), Bytes::new()],
    };
    let bytes = json.frame();
    assert_eq!(bytes.len(), json.len());
    assert_eq!(&bytes[..5], &[2, 0, 0, 0, 29]);
    let frame = read_frame(&bytes).unwrap();
    assert_eq!((frame.text, frame.bins), (json.text.as_str(), json.bins.clone()));
    let unpointed = Json { text: "{}".into(), bins: vec![Bytes::new()] }.frame();
    let error = read_frame(&unpointed).unwrap_err();
    assert_eq!((error.text, error.message.as_str()), (Some("{}"), "byte array 0 has no placeholder"));
}

#[test]
fn typescript_sees_uint8array_and_unknown() {
    use ts_rs::TS;
    let cfg = ts_rs::Config::new();
    assert_eq!((Binary::name(&cfg), Payload::name(&cfg)), ("Uint8Array".into(), "unknown".into()));
}
