//! Volatile emits (socket.io's `volatile`): sent to sockets with nothing waiting in their
//! send queue, dropped (and counted) for the others, never recorded nor replayed.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{eventually, exchange, on_reactor, raw, recv_json, serve};
use serde_json::json;
use zapsocket_realtime::{Hub, ReplyError, Socket};

#[tokio::test]
async fn a_volatile_emit_reaches_idle_sockets_and_is_dropped_for_a_busy_one() {
    let hub = Hub::new();
    hub.on("ok", |_: Socket, _: serde_json::Value| async move { Ok::<_, ReplyError>(()) });
    let url = serve(&hub).await;
    let (mut fast, fast_hello) = raw(&url).await;
    // The slow one never reads after its join: its send queue fills up.
    let (mut slow, slow_hello) = raw(&url).await;
    for ws in [&mut fast, &mut slow] {
        assert_eq!(exchange(ws, r#"{"event":"$join","data":{"room":"game"},"ack":1}"#).await["reply"], 1);
    }
    let _joined = recv_json(&mut fast).await; // the slow one's $joined
    let slow_socket = hub.socket(slow_hello["session"].as_str().unwrap()).unwrap();
    let fast_socket = hub.socket(fast_hello["session"].as_str().unwrap()).unwrap();

    // Idle: both get it, as it is, without offsets (it is not recorded). (On the
    // reactor, the loop's thread may not have counted the last write yet when the
    // client has read it.)
    eventually(|| slow_socket.buffered_amount() == 0 && fast_socket.buffered_amount() == 0).await;
    hub.to("game").volatile().emit("tick", &1).unwrap();
    assert_eq!(recv_json(&mut fast).await, json!({"event": "tick", "data": 1}));
    assert_eq!(recv_json(&mut slow).await, json!({"event": "tick", "data": 1}));
    assert_eq!(hub.metrics().volatile_dropped, 0);

    // Fill the slow socket's queue (256 KiB at a time, under the 1 MiB limit).
    let big = "x".repeat(256 * 1024);
    for _ in 0..200 {
        if slow_socket.buffered_amount() > 0 {
            break;
        }
        slow_socket.emit("big", &big).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(slow_socket.buffered_amount() > 0, "the slow socket's queue never filled");

    hub.to("game").volatile().emit("tick", &2).unwrap();
    assert_eq!(recv_json(&mut fast).await, json!({"event": "tick", "data": 2}));
    slow_socket.volatile().emit("only_you", &3).unwrap();
    eventually(|| fast_socket.buffered_amount() == 0).await;
    fast_socket.volatile().emit("only_you", &4).unwrap();
    assert_eq!(recv_json(&mut fast).await, json!({"event": "only_you", "data": 4}));
    // Back to back, the second finds the first still queued: dropped (as in socket.io).
    // On the reactor, the loop's own thread may have written the first already: both
    // may arrive.
    eventually(|| fast_socket.buffered_amount() == 0).await;
    fast_socket.volatile().emit("burst", &5).unwrap();
    fast_socket.volatile().emit("burst", &6).unwrap();
    assert_eq!(recv_json(&mut fast).await, json!({"event": "burst", "data": 5}));
    let m = hub.metrics();
    if on_reactor() && m.volatile_dropped == 2 {
        assert_eq!(recv_json(&mut fast).await, json!({"event": "burst", "data": 6}));
    } else {
        assert_eq!(m.volatile_dropped, 3, "tick 2 and only_you 3 for the slow one, burst 6: {m:?}");
    }
    let m = hub.metrics();
    assert!(slow_socket.buffered_amount() < 1 << 20, "nothing was queued for it");
    let total = format!("zapsocket_volatile_dropped_total {}", m.volatile_dropped);
    assert!(m.to_prometheus().contains(&total), "{total}");
    // A plain emit still reaches the fast one after them, with its offset: 3, after the
    // two joins' `$joined` (1 and 2); the volatile messages took none.
    hub.to("game").emit("plain", &7).unwrap();
    let plain = recv_json(&mut fast).await;
    assert_eq!(
        (plain["event"].as_str(), plain["rooms"]["game"].as_u64()),
        (Some("plain"), Some(3)),
        "{plain}"
    );
}

#[tokio::test]
async fn volatile_emits_are_never_replayed_to_a_resuming_client() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let (mut ws, hello) = raw(&url).await;
    assert_eq!(exchange(&mut ws, r#"{"event":"$join","data":{"room":"game"},"ack":1}"#).await["reply"], 1);
    hub.to("game").emit("kept", &1).unwrap();
    let kept = recv_json(&mut ws).await;
    let epoch = kept["epoch"].as_str().unwrap().to_owned();
    ws.close(zapsocket::CloseCode::NORMAL, "").await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.to("game").volatile().emit("lost", &2).unwrap();
    hub.to("game").emit("kept", &3).unwrap();
    let (mut again, _) = raw(&url).await;
    let resume = json!({"event": "$resume", "ack": 9, "data": {
        "session": hello["session"], "epoch": epoch, "offsets": {"game": kept["rooms"]["game"]}
    }});
    again.send(resume.to_string()).await.unwrap();
    let mut events = Vec::new();
    loop {
        let message = recv_json(&mut again).await;
        if message["reply"] == 9 {
            assert_eq!(message["data"]["recovered"], true, "{message}");
            break;
        }
        events.push((message["event"].as_str().unwrap().to_owned(), message["data"].clone()));
    }
    assert_eq!(events, [("kept".to_owned(), json!(3))]);
}
