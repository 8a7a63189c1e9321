//! Connection state recovery: a session that comes back within the window gets exactly
//! what it missed, in order, once, then live messages; otherwise `recovery_unavailable`.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Recorder, raw, recv_json, serve};
use serde_json::{Value, json};
use zapsocket::WebSocket;
use zapsocket_realtime::{Hub, HubConfig, RoomName};

/// Closes the client and waits until the hub has let the socket go.
async fn cut(hub: &Hub, r: &Recorder) {
    let sid = r.client.session().to_owned();
    r.client.close().await;
    for _ in 0..200 {
        if hub.socket(&sid).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the hub kept the socket");
}

async fn resume(url: &str, session: &str, epoch: &str, offsets: &HashMap<String, u64>) -> WebSocket {
    let (ws, _) = raw(url).await;
    let request = json!({"event": "$resume", "ack": 1, "data": {"session": session, "epoch": epoch, "offsets": offsets}});
    ws.send(request.to_string()).await.unwrap();
    ws
}

/// Messages until the reply to ack 1 (included last).
async fn until_reply(ws: &mut WebSocket) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let message = recv_json(ws).await;
        let done = message["reply"] == 1;
        got.push(message);
        if done {
            return got;
        }
    }
}

#[tokio::test]
async fn a_resumed_session_gets_exactly_what_it_missed_in_order_then_live_messages() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut a = Recorder::connect(&format!("{url}?n=a")).await;
    let mut b = Recorder::connect(&url).await;
    a.client.join("room").await.unwrap();
    a.client.join("quiet").await.unwrap();
    b.client.join("room").await.unwrap();
    let sid = a.client.session().to_owned();
    let own = RoomName(format!("$s:{sid}"));
    hub.socket(&sid).unwrap().set_public_data(json!({"name": "a"}));
    for i in 0..3 {
        hub.to("room").emit("before", &i).unwrap();
    }
    hub.emit("end", &()).unwrap();
    assert_eq!(a.until_end().await.len(), 3);
    assert_eq!(b.until_end().await.len(), 3);
    let (offsets, epoch) = (a.client.offsets(), a.client.hello().epoch.clone());
    cut(&hub, &a).await;
    assert_eq!(b.next().await.0, "$left");

    // Missed: to its room, to all, to it alone, to both of its rooms (once); not: a
    // room it is not in, a message that excepted it.
    hub.to("room").emit("missed", &1).unwrap();
    hub.emit("missed", &2).unwrap();
    hub.to(own.clone()).emit("missed", &3).unwrap();
    hub.to("room").to("quiet").emit("missed", &4).unwrap();
    hub.to("elsewhere").emit("not_for_a", &0).unwrap();
    hub.to("room").except(own.clone()).emit("not_for_a", &0).unwrap();

    let mut ws = resume(&url, &sid, &epoch, &offsets).await;
    let got = until_reply(&mut ws).await;
    let events: Vec<(&str, &Value)> =
        got.iter().filter_map(|m| Some((m["event"].as_str()?, &m["data"]))).collect();
    assert_eq!(
        events,
        [("missed", &json!(1)), ("missed", &json!(2)), ("missed", &json!(3)), ("missed", &json!(4))]
    );
    assert_eq!(got.last().unwrap(), &json!({"reply": 1, "data": {"recovered": true, "replayed": 4}}));
    // room: $joined a, b (1, 2), before (3-5), $left a (6), missed 1 (7), 4 (8).
    assert_eq!(got[3]["rooms"], json!({"room": 8, "quiet": 3}), "the original frame, offsets included");

    // The session is back: same id, data and rooms; the room hears it, live messages flow.
    let mut b_got = Vec::new();
    let joined = loop {
        let (event, data) = b.next().await;
        if event == "$joined" {
            break data;
        }
        b_got.push(event);
    };
    assert_eq!(joined["member"]["data"], json!({"name": "a"}));
    assert_eq!(b_got, ["missed", "missed", "missed", "not_for_a"], "b got what was sent live");
    let back = hub.socket(&sid).unwrap();
    assert_eq!(back.rooms(), ["quiet", "room"]);
    hub.to("room").emit("live", &5).unwrap();
    let live = recv_json(&mut ws).await;
    assert_eq!(
        (live["event"].as_str(), live["rooms"]["room"].as_u64()),
        (Some("live"), Some(11)),
        "after not_for_a and $joined"
    );
}

#[tokio::test]
async fn nothing_missed_replays_nothing_and_offsets_default_to_the_join() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    hub.emit("old", &0).unwrap();
    let a = Recorder::connect(&url).await;
    a.client.join("r").await.unwrap();
    let (sid, epoch) = (a.client.session().to_owned(), a.client.hello().epoch.clone());
    cut(&hub, &a).await;
    // No offsets at all: the client saw nothing since it joined, so only what came after.
    hub.to("r").emit("new", &1).unwrap();
    let mut ws = resume(&url, &sid, &epoch, &HashMap::new()).await;
    let got = until_reply(&mut ws).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event"], "new");
}

#[tokio::test]
async fn recovery_is_refused_after_the_window_on_a_new_epoch_or_past_the_history() {
    let mut config = HubConfig::default();
    config.recovery_window = Duration::from_millis(100);
    config.history.max_messages = 5;
    let hub = Hub::builder().config(config).build();
    let url = serve(&hub).await;
    let code = |got: &[Value]| {
        got.last().unwrap()["error"]["code"].as_str().unwrap_or_else(|| panic!("{got:?}")).to_owned()
    };

    let a = Recorder::connect(&url).await;
    let (sid, epoch) = (a.client.session().to_owned(), a.client.hello().epoch.clone());
    cut(&hub, &a).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ws = resume(&url, &sid, &epoch, &a.client.offsets()).await;
    assert_eq!(code(&until_reply(&mut ws).await), "recovery_unavailable", "window passed");

    let b = Recorder::connect(&url).await;
    let sid = b.client.session().to_owned();
    cut(&hub, &b).await;
    let mut ws = resume(&url, &sid, "e-other", &HashMap::new()).await;
    assert_eq!(code(&until_reply(&mut ws).await), "recovery_unavailable", "epoch changed");
    let mut ws = resume(&url, &sid, &hub.epoch(), &HashMap::new()).await;
    let got = until_reply(&mut ws).await;
    assert_eq!(got[0]["data"]["recovered"], true, "a refused try does not use the session up: {got:?}");

    let c = Recorder::connect(&url).await;
    c.client.join("busy").await.unwrap();
    let (sid, offsets) = (c.client.session().to_owned(), c.client.offsets());
    cut(&hub, &c).await;
    for i in 0..6 {
        hub.to("busy").emit("m", &i).unwrap();
    }
    let mut ws = resume(&url, &sid, &hub.epoch(), &offsets).await;
    let got = until_reply(&mut ws).await;
    assert_eq!(got.len(), 1, "nothing replayed when refused");
    assert_eq!(code(&got), "recovery_unavailable", "history overflowed");
}

/// Issue 13: a session that missed 150 chats of 4 KB in each of 3 rooms (1.8 MB, over
/// the 1 MiB send queue) got neither a reply nor a message: the replay was queued all at
/// once and the slow-consumer policy ended the connection. The replay now waits for room
/// in the send queue as it goes: everything arrives, in order, then the reply.
#[tokio::test]
async fn a_backlog_larger_than_the_send_queue_is_replayed_whole() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let a = Recorder::connect(&url).await;
    let rooms = ["r1", "r2", "r3"];
    for room in rooms {
        a.client.join(room).await.unwrap();
    }
    let (sid, epoch, offsets) =
        (a.client.session().to_owned(), a.client.hello().epoch.clone(), a.client.offsets());
    cut(&hub, &a).await;
    let text = "x".repeat(4000);
    for i in 0..150 {
        for room in rooms {
            hub.to(room).emit("chat", &json!({"i": i, "room": room, "text": text})).unwrap();
        }
    }
    let mut ws = resume(&url, &sid, &epoch, &offsets).await;
    let got = until_reply(&mut ws).await;
    let reply = got.last().unwrap();
    assert_eq!(reply["data"], json!({"recovered": true, "replayed": 450}), "{reply}");
    let chats: Vec<(u64, &str)> = got[..got.len() - 1]
        .iter()
        .map(|m| (m["data"]["i"].as_u64().unwrap(), m["data"]["room"].as_str().unwrap()))
        .collect();
    let sent: Vec<(u64, &str)> = (0..150).flat_map(|i| rooms.map(|r| (i, r))).collect();
    assert_eq!(chats, sent, "every message once, in the order sent");
}

/// Messages sent while a replay runs are held and follow it: the client sees the room's
/// offsets without a gap or a repeat across the switch from replay to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_during_a_replay_follow_it_without_gap_or_repeat() {
    let mut config = HubConfig::default();
    config.max_resume_buffer = 64 * 1024; // small: the held messages overflow, and are read again
    config.history.max_bytes = 16 << 20; // all 800 messages stay in the window
    let hub = Hub::builder().config(config).build();
    let url = serve(&hub).await;
    let a = Recorder::connect(&url).await;
    a.client.join("r").await.unwrap();
    let (sid, epoch, offsets) =
        (a.client.session().to_owned(), a.client.hello().epoch.clone(), a.client.offsets());
    cut(&hub, &a).await;
    let text = "y".repeat(2000);
    for i in 0..400 {
        hub.to("r").emit("m", &json!({"i": i, "text": text})).unwrap();
    }
    let live = {
        let hub = hub.clone();
        let text = text.clone();
        tokio::spawn(async move {
            for i in 400..800 {
                hub.to("r").emit("m", &json!({"i": i, "text": text})).unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            hub.to("r").emit("end", &()).unwrap();
        })
    };
    let mut ws = resume(&url, &sid, &epoch, &offsets).await;
    let mut seen = Vec::new();
    loop {
        let m = recv_json(&mut ws).await;
        assert!(m.get("error").is_none(), "the resume failed: {m}");
        if m["event"] == "end" {
            break;
        }
        if m["event"] == "m" {
            seen.push(m["data"]["i"].as_u64().unwrap());
        }
    }
    live.await.unwrap();
    assert_eq!(seen, (0..800).collect::<Vec<_>>(), "every message once, in order");
}
