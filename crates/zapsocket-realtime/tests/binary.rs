//! Protocol version 2: byte arrays in messages, as bytes (docs/PROTOCOL.md, *Version 2:
//! binary payloads*). Through real sockets: the Rust client, and raw WebSockets that
//! build and read the frames by hand.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{frame, raw, raw_v2, recv_any, recv_json, serve};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zapsocket::Message;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Binary, Hub, HubConfig, Payload, ReplyError, Socket};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ts_rs::TS)]
struct Upload {
    name: String,
    main: Binary,
    parts: Vec<Binary>,
    #[serde(with = "zapsocket_realtime::binary")]
    #[ts(type = "Uint8Array")]
    raw: Vec<u8>,
}

fn upload(size: usize) -> Upload {
    Upload {
        name: "a.bin".into(),
        main: Binary::from((0..size).map(|i| i as u8).collect::<Vec<u8>>()),
        parts: vec![Binary::from(vec![1, 2]), Binary::from(Vec::new()), Binary::from(vec![255; 3])],
        raw: vec![7, 8, 9],
    }
}

/// Reverses every byte array, so that a reply is not the request sent back.
fn reversed(mut u: Upload) -> Upload {
    fn rev(b: &Binary) -> Binary {
        Binary::from(b.iter().rev().copied().collect::<Vec<u8>>())
    }
    u.main = rev(&u.main);
    u.parts = u.parts.iter().map(rev).collect();
    u.raw.reverse();
    u
}

fn hub() -> Hub {
    let hub = Hub::new();
    hub.on("upload", |_: Socket, u: Upload| async move { Ok::<_, ReplyError>(reversed(u)) });
    hub.procedure("upload", |_: Socket, u: Upload| async move { Ok::<_, ReplyError>(reversed(u)) });
    hub.on("echo", |_: Socket, data: Payload| async move { Ok::<_, ReplyError>(data) });
    hub
}

#[tokio::test]
async fn typed_byte_arrays_go_both_ways_in_events_acks_and_procedures() {
    let hub = hub();
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    assert_eq!(client.hello().version, 2);
    // 300 KiB: as JSON numbers it would be over the 1 MiB limit; as bytes it is not.
    let sent = upload(300 * 1024);
    let got: Upload = client.emit_with_ack("upload", &sent).await.unwrap();
    assert_eq!(got, reversed(sent.clone()));
    let got: Upload = client.call("upload", &sent).await.unwrap();
    assert_eq!(got, reversed(sent.clone()));
    // A Payload takes anything and gives it back as it came, bytes included.
    let got: Upload = client.emit_with_ack("echo", &sent).await.unwrap();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn the_frame_on_the_wire_is_the_envelope_then_the_bytes() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut ws = raw_v2(&url).await;
    let request = json!({"event": "echo", "ack": 5, "data": {"a": [{"$bin": 1}, 2], "b": {"$bin": 0}}});
    ws.send(Message::Binary(frame(&request, &[b"zero", b"one"]).into())).await.unwrap();
    let (reply, bins) = recv_any(&mut ws).await;
    assert_eq!(reply["reply"], 5);
    // The Payload renumbers in the order it writes: "a" (its [0]) first, then "b".
    assert_eq!(reply["data"], json!({"a": [{"$bin": 0}, 2], "b": {"$bin": 1}}));
    assert_eq!(bins, [b"one".to_vec(), b"zero".to_vec()]);

    // A reply without bytes stays a text frame, and so does an envelope in text with a
    // `{"$bin"}` in it (plain data there).
    ws.send(json!({"event": "echo", "ack": 6, "data": {"$bin": 0}}).to_string()).await.unwrap();
    assert_eq!(recv_json(&mut ws).await, json!({"reply": 6, "data": {"$bin": 0}}));
}

#[tokio::test]
async fn malformed_binary_frames_get_bad_envelope_with_their_ack_when_it_can_be_read() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut ws = raw_v2(&url).await;
    let env = |data: Value| json!({"event": "echo", "ack": 9, "data": data});
    let mut too_many = Vec::new();
    for i in 0..65 {
        too_many.push(json!({ "$bin": i }));
    }
    let many: Vec<&[u8]> = vec![b"x"; 65];
    let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("no placeholder for 1", frame(&env(json!({"$bin": 0})), &[b"a", b"b"]), true),
        ("two placeholders for 0", frame(&env(json!([{"$bin": 0}, {"$bin": 0}])), &[b"a"]), true),
        ("index past the end", frame(&env(json!({"$bin": 1})), &[b"a"]), true),
        ("negative index", frame(&env(json!({"$bin": -1})), &[b"a"]), true),
        ("a placeholder with another member", frame(&env(json!({"$bin": 0, "x": 1})), &[b"a"]), true),
        ("65 attachments", frame(&env(Value::Array(too_many)), &many), true),
        ("a bad format byte", [&[3u8][..], &frame(&env(json!(1)), &[])[1..]].concat(), false),
        ("an empty frame", Vec::new(), false),
        ("a JSON length past the end", [&[2u8, 0, 0, 1, 0][..], b"{}"].concat(), false),
        (
            "an attachment length past the end",
            [&frame(&env(json!(1)), &[])[..], &[0, 0, 0, 9, 1]].concat(),
            false,
        ),
        ("a cut attachment length", [&frame(&env(json!(1)), &[])[..], &[0, 0]].concat(), false),
        ("JSON that is not UTF-8", [&[2u8, 0, 0, 0, 2][..], &[0xff, 0xfe]].concat(), false),
    ];
    let mut trailing = frame(&env(json!(1)), &[]);
    trailing.extend_from_slice(b"junk");
    cases.push(("trailing bytes", trailing, false));
    for (case, bytes, has_ack) in cases {
        ws.send(Message::Binary(bytes.into())).await.unwrap();
        let (answer, bins) = recv_any(&mut ws).await;
        assert!(bins.is_empty());
        let error = if has_ack {
            assert_eq!(answer["reply"], 9, "{case}: {answer}");
            &answer["error"]
        } else {
            assert_eq!(answer["event"], "$error", "{case}: {answer}");
            &answer["data"]
        };
        assert_eq!(error["code"], "bad_envelope", "{case}: {answer}");
    }
    // The connection still serves.
    ws.send(Message::Binary(frame(&env(json!({"$bin": 0})), &[b"ok"]).into())).await.unwrap();
    let (reply, bins) = recv_any(&mut ws).await;
    assert_eq!((reply["reply"].clone(), bins), (json!(9), vec![b"ok".to_vec()]));
}

#[tokio::test]
async fn the_size_limit_counts_the_whole_frame() {
    let mut config = HubConfig::default();
    config.max_message = 1000;
    let hub = Hub::builder().config(config).build();
    hub.on("echo", |_: Socket, data: Payload| async move { Ok::<_, ReplyError>(data) });
    let url = serve(&hub).await;
    let mut ws = raw_v2(&url).await;
    let request = json!({"event": "echo", "ack": 1, "data": {"$bin": 0}});
    let overhead = frame(&request, &[b""]).len();
    let fits = vec![1u8; 1000 - overhead];
    ws.send(Message::Binary(frame(&request, &[&fits]).into())).await.unwrap();
    let (reply, bins) = recv_any(&mut ws).await;
    assert_eq!((reply["reply"].clone(), bins.len()), (json!(1), 1), "{reply}");
    let over = vec![1u8; 1001 - overhead];
    ws.send(Message::Binary(frame(&request, &[&over]).into())).await.unwrap();
    let (answer, _) = recv_any(&mut ws).await;
    assert_eq!(answer["data"]["code"], "too_large", "{answer}");
}

#[tokio::test]
async fn version_1_clients_get_bytes_as_base64_and_may_not_send_binary_frames() {
    let hub = hub();
    let url = serve(&hub).await;
    let (mut v1, hello) = raw(&url).await;
    assert_eq!(hello["version"], 1);
    let mut v2 = raw_v2(&url).await;
    for ws in [&mut v1, &mut v2] {
        ws.send(json!({"event": "$join", "ack": 1, "data": {"room": "r"}}).to_string()).await.unwrap();
        loop {
            if recv_any(ws).await.0["reply"] == 1 {
                break;
            }
        }
    }
    hub.to("r").emit("file", &json!({"x": 1})).unwrap(); // no bytes: one text frame for both
    hub.to("r").emit("file", &upload(4)).unwrap();
    let skip_presence = |m: &Value| m["event"] == "$joined";
    let next = async |ws: &mut zapsocket::WebSocket| loop {
        let got = recv_any(ws).await;
        if !skip_presence(&got.0) {
            return got;
        }
    };
    for ws in [&mut v1, &mut v2] {
        let (plain, bins) = next(ws).await;
        assert_eq!((plain["data"].clone(), bins.len()), (json!({"x": 1}), 0));
    }
    let (text, bins) = next(&mut v1).await;
    assert!(bins.is_empty());
    assert_eq!(text["data"]["main"], json!({"$base64": "AAECAw=="}));
    assert_eq!(text["data"]["parts"], json!([{"$base64": "AQI="}, {"$base64": ""}, {"$base64": "////"}]));
    assert_eq!(text["data"]["raw"], json!({"$base64": "BwgJ"}));
    let (binary, bins) = next(&mut v2).await;
    assert_eq!(binary["data"]["main"], json!({"$bin": 0}));
    assert_eq!(bins, [vec![0, 1, 2, 3], vec![1, 2], vec![], vec![255; 3], vec![7, 8, 9]]);
    assert_eq!(binary["rooms"], text["rooms"], "the same offsets");

    // What a version 1 client sends as base64 or as numbers is read as bytes too.
    let from_v1 = json!({"event": "upload", "ack": 2, "data": {"name": "n", "main": {"$base64": "AAE="}, "parts": [[5]], "raw": []}});
    v1.send(from_v1.to_string()).await.unwrap();
    let reply = next(&mut v1).await.0;
    assert_eq!(reply["data"]["main"], json!({"$base64": "AQA="}), "{reply}");
    assert_eq!(reply["data"]["parts"], json!([{"$base64": "BQ=="}]));

    v1.send(Message::Binary(frame(&json!({"event": "echo", "data": 1}), &[]).into())).await.unwrap();
    let refused = next(&mut v1).await.0;
    assert_eq!(refused["data"]["code"], "unsupported", "{refused}");
}

#[tokio::test]
async fn the_server_asks_with_bytes_and_the_client_answers_with_bytes() {
    let hub = Hub::new();
    hub.on("start", |socket: Socket, ()| async move {
        let answer: Binary = socket.emit_with_ack("give", &Binary::from(vec![1, 2, 3])).await?;
        Ok::<_, ReplyError>(answer)
    });
    let url = serve(&hub).await;
    let client = Client::connect(&url).await.unwrap();
    client.on("give", |bytes: Binary| Ok::<_, ReplyError>(Binary::from([&bytes[..], &[4]].concat())));
    let got: Binary = client.emit_with_ack("start", &()).await.unwrap();
    assert_eq!(&got[..], &[1, 2, 3, 4]);
}

#[tokio::test]
async fn a_resumed_session_gets_the_bytes_it_missed() {
    let hub = hub();
    let url = serve(&hub).await;
    let client = Client::builder().reconnect(None).connect(&url).await.unwrap();
    client.join("r").await.unwrap();
    let (sid, epoch) = (client.session(), client.hello().epoch);
    let offsets: HashMap<String, u64> = client.offsets();
    client.close().await;
    for _ in 0..200 {
        if hub.socket(&sid).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.to("r").emit("missed", &Binary::from(vec![42; 10])).unwrap();

    let mut ws = raw_v2(&url).await;
    let resume =
        json!({"event": "$resume", "ack": 1, "data": {"session": sid, "epoch": epoch, "offsets": offsets}});
    ws.send(resume.to_string()).await.unwrap();
    let (missed, bins) = recv_any(&mut ws).await;
    assert_eq!(missed["event"], "missed", "{missed}");
    assert_eq!(missed["data"], json!({"$bin": 0}));
    assert_eq!(bins, [vec![42; 10]]);
    let (reply, _) = recv_any(&mut ws).await;
    assert_eq!(reply["data"]["replayed"], 1, "{reply}");
}
