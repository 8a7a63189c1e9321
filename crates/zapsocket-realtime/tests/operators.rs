//! Every emit operator through real sockets: exactly who receives what.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use common::{Recorder, raw, recv_json, serve};
use serde_json::json;
use zapsocket_realtime::Hub;

fn names(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn each_operator_reaches_exactly_its_recipients() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut a = Recorder::connect(&url).await;
    let mut b = Recorder::connect(&url).await;
    let mut c = Recorder::connect(&url).await;
    let mut d = Recorder::connect(&url).await;
    a.client.join("red").await.unwrap();
    b.client.join("red").await.unwrap();
    b.client.join("blue").await.unwrap();
    c.client.join("blue").await.unwrap();
    let socket = |r: &Recorder| hub.socket(&r.client.session()).unwrap();
    let (sa, sb, sd) = (socket(&a), socket(&b), socket(&d));

    sa.emit("to_a", &1).unwrap();
    hub.emit("to_all", &2).unwrap();
    hub.to("red").emit("to_red", &3).unwrap();
    hub.to("red").to("blue").emit("red_or_blue", &4).unwrap();
    sa.broadcast().emit("all_but_a", &5).unwrap();
    sb.to("blue").emit("blue_but_b", &6).unwrap();
    hub.to("red").except(&sa).emit("red_except_a", &7).unwrap();
    hub.to("$all").except("blue").emit("not_blue", &8).unwrap();
    hub.to("red").to("blue").except("red").emit("blue_not_red", &9).unwrap();
    hub.to(&sd).emit("to_d", &10).unwrap();
    hub.to("nobody").emit("to_empty", &11).unwrap();
    hub.emit("end", &()).unwrap();

    let got_a = a.until_end().await;
    assert_eq!(names(&got_a), ["to_a", "to_all", "to_red", "red_or_blue", "not_blue"]);
    assert_eq!(got_a[0].1, json!(1));
    let got_b = b.until_end().await;
    assert_eq!(names(&got_b), ["to_all", "to_red", "red_or_blue", "all_but_a", "red_except_a"]);
    let got_c = c.until_end().await;
    assert_eq!(names(&got_c), ["to_all", "red_or_blue", "all_but_a", "blue_but_b", "blue_not_red"]);
    let got_d = d.until_end().await;
    assert_eq!(names(&got_d), ["to_all", "all_but_a", "not_blue", "to_d"]);
}

#[tokio::test]
async fn room_messages_carry_epoch_and_an_offset_per_room() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let (mut ws, hello) = raw(&url).await;
    let sid = hello["session"].as_str().unwrap().to_owned();
    assert_eq!(hello["epoch"], hub.epoch());
    let socket = hub.socket(&sid).unwrap();
    socket.join("r1").await.unwrap();
    socket.join("r2").await.unwrap();
    // Each join recorded a $joined (offset 1, sent to nobody else).
    hub.to("r1").to("r2").emit("x", &"both").unwrap();
    let x = recv_json(&mut ws).await;
    assert_eq!(x, json!({"event": "x", "data": "both", "epoch": hub.epoch(), "rooms": {"r1": 2, "r2": 2}}));
    hub.to("r1").emit("y", &"one").unwrap();
    assert_eq!(recv_json(&mut ws).await["rooms"], json!({"r1": 3}));
    socket.emit("z", &"mine").unwrap();
    socket.emit("z", &"mine").unwrap();
    assert_eq!(recv_json(&mut ws).await["rooms"], json!({ format!("$s:{sid}"): 1 }));
    assert_eq!(recv_json(&mut ws).await["rooms"], json!({ format!("$s:{sid}"): 2 }));
    hub.emit("w", &0).unwrap();
    let w = recv_json(&mut ws).await;
    assert_eq!(w["rooms"], json!({"$all": 1}));
}

#[tokio::test]
async fn one_broadcast_is_counted_once_and_delivered_to_each() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let r = Recorder::connect(&url).await;
        r.client.join("room").await.unwrap();
        clients.push(r);
    }
    let before = hub.metrics();
    hub.to("room").emit("news", &"hello").unwrap();
    let after = hub.metrics();
    assert_eq!(after.broadcasts - before.broadcasts, 1);
    assert_eq!(after.messages_out - before.messages_out, 5);
    for r in &mut clients {
        assert_eq!(r.next_app().await, ("news".to_owned(), json!("hello")));
    }
    let client = &clients[0].client;
    assert!(client.offsets()["room"] >= 1, "the client keeps the room's offset");
}

#[tokio::test]
async fn client_offsets_follow_the_rooms_field() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut r = Recorder::connect(&url).await;
    r.client.join("a").await.unwrap();
    for i in 0..3 {
        hub.to("a").emit("n", &i).unwrap();
    }
    hub.emit("end", &()).unwrap();
    assert_eq!(r.until_end().await.len(), 3);
    let offsets = r.client.offsets();
    assert_eq!(offsets["a"], 4, "$joined (1) then three messages");
    assert_eq!(offsets["$all"], 1);
}

#[tokio::test]
async fn reserved_event_names_cannot_be_emitted() {
    let hub = Hub::new();
    let err = hub.emit("$joined", &1).unwrap_err();
    assert_eq!(err.code.as_str(), "reserved");
}
