//! Recovery from any node: a session that left one node resumes on another and gets
//! exactly what it missed, from the streams in Redis.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Node, Recorder, Redis, eventually, next_json, resume};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_node_with_exactly_what_it_missed() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let mut ada = Recorder::named(&a.url, "ada").await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    ada.client.join("room").await.unwrap();
    ada.client.join("quiet").await.unwrap();
    bob.client.join("room").await.unwrap();
    b.hub.to("room").emit("before", &0).unwrap();
    assert_eq!(ada.next_named("before").await, json!(0));
    let (sid, epoch) = (ada.client.session().to_owned(), ada.client.hello().epoch.clone());
    let offsets = ada.client.offsets();
    ada.client.close().await;
    assert_eq!(bob.next_named("$left").await["member"]["data"]["name"], "ada");

    // Missed, from both nodes: its room, everyone, it alone (through its node's inbox:
    // recorded while it has none), both of its rooms at once; not: a room it is not in.
    b.hub.to("room").emit("missed", &1).unwrap();
    a.hub.emit("missed", &2).unwrap();
    b.hub.to(zapsocket_realtime::RoomName::socket(&sid)).emit("missed", &3).unwrap();
    a.hub.to("room").to("quiet").emit("missed", &4).unwrap();
    b.hub.to("elsewhere").emit("not_for_ada", &0).unwrap();
    eventually(5, "the publications are in", async || b.hub.metrics().broker.published >= 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut ws, got) = resume(&b.url, &sid, &epoch, &offsets).await;
    let events: Vec<(&str, &Value)> =
        got.iter().filter_map(|m| Some((m["event"].as_str()?, &m["data"]))).collect();
    assert!(events.iter().all(|(e, _)| *e == "missed"), "{got:?}");
    let replayed: Vec<u64> = events.iter().map(|(_, d)| d.as_u64().unwrap()).collect();
    // Each once, in the order Redis recorded them: each node's in the order it sent them
    // (b sent 1 then 3, a sent 2 then 4); between nodes, no order is promised.
    let mut sorted = replayed.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3, 4], "{got:?}");
    let position = |n: u64| replayed.iter().position(|x| *x == n).unwrap();
    assert!(position(1) < position(3) && position(2) < position(4), "{replayed:?}");
    assert_eq!(got.last().unwrap()["data"], json!({"recovered": true, "replayed": 4}));

    // It is the session again, on node b: in its rooms, heard by them, live.
    assert_eq!(bob.next_named("$joined").await["member"]["id"], sid.as_str());
    let socket = b.hub.socket(&sid).expect("the session lives on b now");
    assert_eq!(socket.rooms(), ["quiet", "room"]);
    a.hub.to("room").emit("live", &5).unwrap();
    let live = next_json(&mut ws).await;
    assert_eq!((live["event"].as_str(), live["data"].as_u64()), (Some("live"), Some(5)));
    b.hub.to(zapsocket_realtime::RoomName::socket(&sid)).emit("direct", &6).unwrap();
    assert_eq!(next_json(&mut ws).await["event"], "direct", "its own room now goes to b's inbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_held_by_a_live_node_is_taken_over_by_the_new_connection() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let ada = Recorder::named(&a.url, "ada").await;
    ada.client.join("room").await.unwrap();
    let (sid, epoch, offsets) =
        (ada.client.session().to_owned(), ada.client.hello().epoch.clone(), ada.client.offsets());
    // The old connection is still open on a (as after a network change): b asks a to
    // let the session go, and takes it.
    let (_ws, got) = resume(&b.url, &sid, &epoch, &offsets).await;
    assert_eq!(got.last().unwrap()["data"]["recovered"], true, "{got:?}");
    eventually(5, "a let the session go", async || a.hub.socket(&sid).is_none()).await;
    assert!(b.hub.socket(&sid).is_some());
    let found = b.hub.to("room").fetch_sockets().await;
    assert_eq!(
        found.results.iter().map(|s| (s.id.as_str(), s.node.as_str())).collect::<Vec<_>>(),
        [(sid.as_str(), b.hub.node())]
    );
}

/// The backlog of issue 13 (150 chats of 4 KB in each of 3 rooms, 1.8 MB, over the
/// 1 MiB send queue), missed on one node and resumed on another: all of it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_send_queue_resumes_whole_on_another_node() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let ada = Recorder::named(&a.url, "ada").await;
    let rooms = ["r1", "r2", "r3"];
    for room in rooms {
        ada.client.join(room).await.unwrap();
    }
    let (sid, epoch, offsets) =
        (ada.client.session().to_owned(), ada.client.hello().epoch.clone(), ada.client.offsets());
    ada.client.close().await;
    eventually(5, "a let ada go", async || a.hub.socket(&sid).is_none()).await;
    let text = "x".repeat(4000);
    for i in 0..150 {
        for room in rooms {
            a.hub.to(room).emit("chat", &json!({"i": i, "room": room, "text": text})).unwrap();
        }
        if i % 30 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await; // within the publish queue's bound
        }
    }
    eventually(10, "all published", async || a.hub.metrics().broker.published >= 450).await;
    let (_ws, got) = resume(&b.url, &sid, &epoch, &offsets).await;
    assert_eq!(got.last().unwrap()["data"], json!({"recovered": true, "replayed": 450}));
    let chats: Vec<(u64, String)> = got[..got.len() - 1]
        .iter()
        .map(|m| (m["data"]["i"].as_u64().unwrap(), m["data"]["room"].as_str().unwrap().to_owned()))
        .collect();
    let sent: Vec<(u64, String)> = (0..150).flat_map(|i| rooms.map(|r| (i, r.to_owned()))).collect();
    assert_eq!(chats, sent, "every message once, in the order sent");
}

/// Byte arrays (protocol version 2) cross nodes as bytes, and the history keeps them: a
/// live member on another node gets them as bytes, a version 1 client resuming from
/// the streams as base64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_arrays_cross_nodes_and_come_back_from_the_history() {
    use zapsocket_realtime::Binary;
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let ada = Recorder::named(&a.url, "ada").await;
    let bob = zapsocket_realtime::client::Client::connect(&b.url).await.unwrap();
    assert_eq!(bob.hello().version, 2);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    bob.on("file", move |file: Binary| _ = tx.send(file));
    ada.client.join("files").await.unwrap();
    bob.join("files").await.unwrap();
    let (sid, epoch) = (ada.client.session().to_owned(), ada.client.hello().epoch.clone());
    let offsets = ada.client.offsets();
    ada.client.close().await;

    let bytes: Vec<u8> = (0..=255).collect();
    a.hub.to("files").emit("file", &Binary::from(bytes.clone())).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(&got[..], &bytes[..], "from node a to a member on node b, as bytes");

    let (_ws, got) = resume(&b.url, &sid, &epoch, &offsets).await;
    let file = got.iter().find(|m| m["event"] == "file").expect("replayed");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert_eq!(file["data"], json!({ "$base64": encoded }), "{file}");
}
