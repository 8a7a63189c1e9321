//! Redis trouble and dead nodes: a node cut from Redis, a Redis killed and restarted
//! empty, a Redis frozen (SIGSTOP), a subscription Redis drops. Nodes never crash,
//! clients stay connected, local work goes on, and afterwards everything is back in step
//! by itself: what was missed is repaired from the streams, or the members are told.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, Proxy, Recorder, Redis, eventually, resume};
use serde_json::json;
use zapsocket_realtime::{ReplyError, Socket};

fn with_add(node: &Node) {
    node.hub.procedure("add", |_: Socket, (a, b): (i64, i64)| async move { Ok::<_, ReplyError>(a + b) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_redis_is_dead_to_the_others_and_comes_back_by_itself() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&proxy.url()).await;
    with_add(&b);
    let mut ada = Recorder::named(&a.url, "ada").await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    ada.client.join("room").await.unwrap();
    bob.client.join("room").await.unwrap();
    assert_eq!(ada.next_named("$joined").await["member"]["data"]["name"], "bob");

    proxy.cut();
    let cut_at = Instant::now();
    // The others see b's members leave, from b's lease (1 s here; 5 s by default).
    assert_eq!(ada.next_named("$left").await["member"]["data"]["name"], "bob");
    let took = cut_at.elapsed();
    assert!(took < Duration::from_secs(3), "$left {took:?} after the cut");
    assert_eq!(a.hub.members("room").await.unwrap().len(), 1);

    // b's clients stay connected; local work goes on; what needs Redis fails plainly.
    let sum: i64 = bob.client.call("add", &(2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    eventually(5, "b notices", async || !b.redis.is_connected()).await;
    let error = b.hub.to("room").emit("x", &1).unwrap_err();
    assert_eq!(error.code.as_str(), "unavailable");
    assert_eq!(bob.client.members("room").await.unwrap_err().code.as_str(), "unavailable");
    for i in 0..5 {
        a.hub.to("room").emit("during", &i).unwrap(); // b will have to repair these
    }

    proxy.restore();
    // b reconnects, writes its presence again ($joined), and repairs what it missed.
    assert_eq!(ada.next_named("$joined").await["member"]["data"]["name"], "bob");
    let got = bob.take(5).await;
    assert_eq!(got.iter().map(|(_, d)| d.as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(bob.client.state(), zapsocket_realtime::client::ConnState::Connected, "never disconnected");
    b.hub.to("room").emit("back", &1).unwrap();
    assert_eq!(ada.next_named("back").await, json!(1));
    assert!(b.hub.metrics().broker.repaired >= 1, "{:?}", b.hub.metrics().broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_means_a_new_epoch_presence_written_again_and_members_told() {
    let mut redis = Redis::start().await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&redis.url()).await;
    let ada = Recorder::named(&a.url, "ada").await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    ada.client.join("room").await.unwrap();
    bob.client.join("room").await.unwrap();
    a.hub.to("room").emit("before", &1).unwrap();
    assert_eq!(bob.next_named("before").await, json!(1));
    let old_epoch = a.hub.epoch();
    let (bob_sid, bob_offsets) = (bob.client.session().to_owned(), bob.client.offsets());

    // What the client's offsets are right after it handled `$resync`: the events that
    // follow (of the new epoch) may record a room's offset again before the test reads it.
    let at_resync = Arc::new(Mutex::new(None::<HashMap<String, u64>>));
    let holder = Arc::new(Mutex::new(Some(bob.client.clone())));
    bob.client.on_any({
        let (at_resync, holder) = (at_resync.clone(), holder.clone());
        move |name, _| {
            // The clone is dropped once used: no cycle keeps the client alive.
            if name == "$resync"
                && let Some(client) = holder.lock().unwrap().take()
            {
                *at_resync.lock().unwrap() = Some(client.offsets());
            }
        }
    });
    redis.restart().await;
    let restarted = Instant::now();
    // Connected clients are told (their rooms' history is gone) and stay connected.
    let resync = bob.next_named("$resync").await;
    assert_ne!(resync["epoch"].as_str().unwrap(), old_epoch);
    let mut rooms: Vec<String> = serde_json::from_value(resync["rooms"].clone()).unwrap();
    rooms.sort();
    assert_eq!(rooms, ["$all".to_owned(), format!("$s:{bob_sid}"), "room".to_owned()]);
    assert_eq!(bob.client.hello().epoch, resync["epoch"].as_str().unwrap(), "the client takes the new epoch");
    // (The recorder's handler, registered first, may wake this task before ours ran.)
    let seen_by = Instant::now() + Duration::from_secs(5);
    let offsets = loop {
        if let Some(offsets) = at_resync.lock().unwrap().take() {
            break offsets;
        }
        assert!(Instant::now() < seen_by, "the handler saw $resync");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    holder.lock().unwrap().take();
    assert!(!offsets.contains_key("room"), "and forgets the old offsets: {offsets:?}");
    eventually(10, "both nodes back", async || a.redis.is_connected() && b.redis.is_connected()).await;
    assert_eq!(a.hub.epoch(), b.hub.epoch(), "one new epoch for all");
    // Presence was written again by each node, delivery goes on across nodes.
    eventually(10, "presence written again", async || {
        a.hub.members("room").await.is_ok_and(|m| m.len() == 2)
    })
    .await;
    a.hub.to("room").emit("after", &2).unwrap();
    assert_eq!(bob.next_named("after").await, json!(2));
    assert!(restarted.elapsed() < Duration::from_secs(10), "{:?}", restarted.elapsed());
    // A client resuming with the old epoch is told to resync.
    let (_ws, got) = resume(&a.url, &bob_sid, &old_epoch, &bob_offsets).await;
    assert_eq!(got.last().unwrap()["error"]["code"], "recovery_unavailable", "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_stops_nothing_local_and_delivery_resumes_after_it_thaws() {
    let redis = Redis::start().await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&redis.url()).await;
    with_add(&a);
    let ada = Recorder::named(&a.url, "ada").await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    ada.client.join("room").await.unwrap();
    bob.client.join("room").await.unwrap();

    redis.freeze();
    let frozen_at = Instant::now();
    let sum: i64 = ada.client.call("add", &(20, 22)).await.unwrap();
    assert_eq!(sum, 42, "procedures answer while Redis is frozen");
    eventually(5, "the nodes notice", async || !a.redis.is_connected()).await;
    assert!(a.hub.to("room").emit("x", &0).is_err(), "emits fail at once, nothing queues");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(frozen_at.elapsed())).await;
    redis.thaw();

    eventually(10, "the nodes are back", async || a.redis.is_connected() && b.redis.is_connected()).await;
    a.hub.to("room").emit("after", &1).unwrap();
    assert_eq!(bob.next_named("after").await, json!(1));
    assert_eq!(b.hub.members("room").await.unwrap().len(), 2, "nobody was taken for dead");
    for r in [&ada, &bob] {
        assert_eq!(r.client.state(), zapsocket_realtime::client::ConnState::Connected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_redis_drops_is_repaired_from_the_streams_never_silently() {
    let redis = Redis::start().await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&redis.url()).await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    bob.client.join("room").await.unwrap();
    let publisher = {
        let hub = a.hub.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                while hub.to("room").emit("n", &i).is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await; // a's own link may drop too
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // As when Redis drops a subscriber past its output buffer limit, or fails over.
        redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    publisher.await.unwrap();
    let got: Vec<u64> = bob.take(300).await.iter().map(|(_, d)| d.as_u64().unwrap()).collect();
    assert_eq!(got, (0..300).collect::<Vec<_>>(), "every message once, in order");
    bob.assert_silent(300).await;
    let m = b.hub.metrics().broker;
    assert!(m.disconnects >= 1 && m.lost == 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_waiting_when_the_link_drops_go_out_on_the_next_link() {
    let redis = Redis::start().await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&redis.url()).await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    bob.client.join("room").await.unwrap();
    // Writes wait (shorter than the adapter's 500 ms timeout): the first batch is held
    // in Redis, the rest queue on node a. Then a's link drops under that queue.
    redis.cli(&["CLIENT", "PAUSE", "300", "WRITE"]);
    for i in 0..100 {
        a.hub.to("room").emit("n", &i).unwrap();
        if i == 0 {
            // The sending task takes the first one alone and waits for Redis with it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(a.hub.metrics().broker.queued_bytes > 0, "the rest wait on node a");
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let got: Vec<u64> = bob.take(100).await.iter().map(|(_, d)| d.as_u64().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "every accepted emit, once, in order");
    bob.assert_silent(300).await;
    let m = a.hub.metrics().broker;
    assert!(m.disconnects >= 1 && m.publish_failures == 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_ended_while_its_node_was_cut_off_leaves_when_the_node_is_back() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.port).await;
    let mut config = common::fast();
    config.lease_ttl = Duration::from_secs(3); // the cut is shorter: nobody takes the node for dead
    let a = Node::with(&proxy.url(), config, zapsocket_realtime::HubConfig::default()).await;
    let b = Node::start(&redis.url()).await;
    let x = Recorder::named(&a.url, "x").await;
    let mut y = Recorder::named(&b.url, "y").await;
    x.client.join("room").await.unwrap();
    y.client.join("room").await.unwrap();
    let sid = x.client.session().to_owned();

    proxy.cut();
    eventually(5, "a notices", async || !a.redis.is_connected()).await;
    x.client.close().await; // its leave and detach cannot reach Redis now
    eventually(5, "a let the socket go", async || a.hub.socket(&sid).is_none()).await;
    proxy.restore();
    let left = y.next_named("$left").await;
    assert_eq!(left["member"]["id"], sid.as_str(), "written when a came back");
    assert_eq!(b.hub.members("room").await.unwrap().len(), 1);
    assert_eq!(b.hub.metrics().broker.reaped_nodes, 0, "a was not taken for dead");
    // And its session is resumable (detached), from any node.
    let (_ws, got) = resume(&b.url, &sid, &b.hub.epoch(), &x.client.offsets()).await;
    assert_eq!(got.last().unwrap()["data"]["recovered"], true, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_grows_the_publish_queue_past_its_limit() {
    let redis = Redis::start().await;
    let mut config = common::fast();
    config.max_publish_queue = 64 * 1024;
    config.timeout = Duration::from_secs(3); // long enough to fill the queue before the link is given up
    let a = Node::with(&redis.url(), config, zapsocket_realtime::HubConfig::default()).await;
    let _member = Recorder::connect(&a.url).await;
    redis.freeze();
    let text = "z".repeat(1000);
    let mut accepted = 0usize;
    let mut refused = None;
    for _ in 0..1000 {
        match a.hub.emit("m", &text) {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        assert!(a.hub.metrics().broker.queued_bytes <= 64 * 1024, "{:?}", a.hub.metrics().broker);
    }
    let refused = refused.expect("the queue filled up and refused");
    assert_eq!(refused.code.as_str(), "unavailable");
    assert!(refused.message.contains("max_publish_queue"), "{}", refused.message);
    // About 64 KiB of 1 KB publications wait (more were accepted if Redis ran a batch
    // before it stopped); the bound above held after each one.
    assert!(accepted >= 10, "{accepted}");
    redis.thaw();
    eventually(10, "a is back", async || a.redis.is_connected()).await;
    assert!(a.hub.metrics().broker.publish_failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_while_redis_is_out_of_reach_gets_everything_once_it_is_back() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = Node::start(&proxy.url()).await;
    let b = Node::start(&redis.url()).await;
    proxy.cut();
    eventually(5, "a notices", async || !a.redis.is_connected()).await;
    // The first socket of a: its node cannot subscribe to anything now.
    let mut x = Recorder::named(&a.url, "x").await;
    assert_eq!(x.client.join("room").await.unwrap_err().code.as_str(), "unavailable");
    proxy.restore();
    eventually(10, "a is back", async || a.redis.is_connected()).await;
    b.hub.emit("to_all", &1).unwrap();
    assert_eq!(x.next_named("to_all").await, json!(1), "a subscribed $all for it when the link came back");
    x.client.join("room").await.unwrap();
    b.hub.to("room").emit("to_room", &2).unwrap();
    assert_eq!(x.next_named("to_room").await, json!(2));
    assert_eq!(b.hub.members("room").await.unwrap().len(), 1);
}
