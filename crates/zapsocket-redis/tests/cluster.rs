//! Three nodes on one real Redis behave as one server: rooms, presence and delivery
//! across nodes, each message once and in order; a node without members in a room gets
//! none of its traffic; one publish is one script call whatever the recipients.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Node, Recorder, Redis, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_room_every_member_gets_every_message_once_in_order() {
    let redis = Redis::start().await;
    let nodes =
        [Node::start(&redis.url()).await, Node::start(&redis.url()).await, Node::start(&redis.url()).await];
    let mut ada = Recorder::named(&nodes[0].url, "ada").await;
    let mut bob = Recorder::named(&nodes[1].url, "bob").await;
    let mut cy = Recorder::named(&nodes[2].url, "cy").await;
    assert_eq!(ada.client.hello().node, nodes[0].hub.node());
    assert_ne!(nodes[0].hub.node(), nodes[1].hub.node());

    ada.client.join("lobby").await.unwrap();
    let joined = bob.client.join("lobby").await.unwrap();
    assert_eq!(joined.count, 2);
    assert_eq!(ada.next_named("$joined").await["member"]["data"]["name"], "bob", "across nodes");
    cy.client.join("lobby").await.unwrap();
    for r in [&mut ada, &mut bob] {
        assert_eq!(r.next_named("$joined").await["member"]["data"]["name"], "cy");
    }
    let mut names: Vec<String> = cy
        .client
        .members("lobby")
        .await
        .unwrap()
        .members
        .iter()
        .map(|m| m.data["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ada", "bob", "cy"], "members of every node");
    assert_eq!(nodes[2].hub.members("lobby").await.unwrap().len(), 3);

    // Publishers on every node at once: each member gets each message once, and each
    // publisher's messages in the order it sent them.
    let sends = nodes.iter().enumerate().map(|(n, node)| {
        let hub = node.hub.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                hub.to("lobby").emit("msg", &json!({"node": n, "i": i})).unwrap();
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    });
    for send in sends {
        send.await.unwrap();
    }
    for r in [&mut ada, &mut bob, &mut cy] {
        let got = r.take(150).await;
        r.assert_silent(200).await; // and nothing twice
        for n in 0..3 {
            let order: Vec<u64> =
                got.iter().filter(|(_, d)| d["node"] == n).map(|(_, d)| d["i"].as_u64().unwrap()).collect();
            assert_eq!(order, (0..50).collect::<Vec<_>>(), "publisher {n}'s order");
        }
    }

    bob.client.leave("lobby").await.unwrap();
    for r in [&mut ada, &mut cy] {
        let left = r.next_named("$left").await;
        assert_eq!(left["member"]["data"]["name"], "bob");
    }
    cy.client.close().await;
    assert_eq!(ada.next_named("$left").await["member"]["data"]["name"], "cy", "a disconnect is a leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_members_in_a_room_receives_none_of_its_traffic() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let mut member = Recorder::connect(&a.url).await;
    let _idle = Recorder::connect(&b.url).await;
    member.client.join("private").await.unwrap();
    let channel = "zap:{private}:c";
    assert_eq!(redis.cli(&["PUBSUB", "NUMSUB", channel]), format!("{channel}\n1"), "only node a subscribes");
    let before = b.hub.metrics().broker.received;
    for i in 0..20 {
        b.hub.to("private").emit("m", &i).unwrap();
    }
    b.hub.to("private").emit("end", &()).unwrap();
    assert_eq!(member.until("end").await.len(), 20, "b published, a delivered");
    assert_eq!(b.hub.metrics().broker.received, before, "b received none of the room's traffic");

    member.client.leave("private").await.unwrap();
    eventually(5, "a unsubscribes once its last member left", async || {
        redis.cli(&["PUBSUB", "NUMSUB", channel]) == format!("{channel}\n0")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_emits_reach_the_members_on_every_node_unrecorded_and_in_order() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    let mut ada = Recorder::named(&a.url, "ada").await;
    let mut bob = Recorder::named(&b.url, "bob").await;
    let mut eve = Recorder::named(&b.url, "eve").await; // not in the room
    ada.client.join("game").await.unwrap();
    bob.client.join("game").await.unwrap();
    // Bob's `$joined` reaches ada through Redis: a tick emitted while it is still in ada's
    // send queue would be dropped, as a volatile emit should be.
    assert_eq!(ada.next_named("$joined").await["member"]["data"]["name"], "bob");
    let ada_socket = a.hub.socket(&ada.client.session()).expect("ada is on node a");
    eventually(5, "ada's send queue is empty", async || ada_socket.buffered_amount() == 0).await;
    for i in 0..20 {
        a.hub.to("game").volatile().emit("tick", &i).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await; // each finds an empty queue
    }
    a.hub.to("game").emit("end", &()).unwrap();
    let expected: Vec<(String, serde_json::Value)> = (0..20).map(|i| ("tick".to_owned(), json!(i))).collect();
    assert_eq!(bob.until("end").await, expected, "from node a to node b, in order");
    assert_eq!(ada.until("end").await, expected, "and to node a's own members");
    assert_eq!(bob.client.offsets().get("game"), Some(&3), "`end`'s, after two `$joined`");
    eve.assert_silent(200).await;
    let (ma, mb) = (a.hub.metrics(), b.hub.metrics());
    assert_eq!((ma.volatile_dropped, mb.volatile_dropped), (0, 0));
    let timed: u64 = ma.broker.publish_latency.iter().sum();
    assert!(timed >= 21 && ma.broker.publish_latency_sum_us > 0, "each publication timed: {:?}", ma.broker);
    assert!(ma.to_prometheus().contains("zapsocket_broker_publish_latency_seconds_count "));
    assert_eq!(redis.cli(&["GET", "zap:{game}:o"]), "3", "two `$joined` and `end`: the ticks took no offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_is_one_script_call_whatever_the_recipients() {
    let redis = Redis::start().await;
    let nodes =
        [Node::start(&redis.url()).await, Node::start(&redis.url()).await, Node::start(&redis.url()).await];
    let mut clients = Vec::new();
    for node in &nodes {
        for _ in 0..3 {
            let r = Recorder::connect(&node.url).await;
            r.client.join("room").await.unwrap();
            clients.push(r);
        }
    }
    let calls = |name: &str| -> u64 {
        let stats = redis.cli(&["INFO", "commandstats"]);
        let line = stats.lines().find(|l| l.starts_with(&format!("cmdstat_{name}:"))).unwrap_or_default();
        line.split("calls=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // presence announcements settle
    redis.cli(&["CONFIG", "RESETSTAT"]);
    for i in 0..41 {
        nodes[i % 3].hub.to("room").emit("m", &i).unwrap();
    }
    for r in &mut clients {
        assert_eq!(r.take(41).await.len(), 41);
    }
    // Inside the one script call per message (commands run by scripts are counted too):
    assert_eq!(calls("xadd"), 41, "one append per message, not per recipient or node");
    assert_eq!(calls("publish"), 41, "one PUBLISH per message (one room)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_no_member_and_no_session_without_an_expiry() {
    let redis = Redis::start().await;
    let (a, b) = (Node::start(&redis.url()).await, Node::start(&redis.url()).await);
    for round in 0..5 {
        let mut clients = Vec::new();
        for i in 0..20 {
            let node = if i % 2 == 0 { &a } else { &b };
            let r = Recorder::connect(&node.url).await;
            r.client.join("churn").await.unwrap();
            clients.push(r);
        }
        for (i, r) in clients.iter().enumerate() {
            if (i + round) % 3 == 0 {
                r.client.leave("churn").await.unwrap();
            }
            r.client.close().await;
        }
    }
    eventually(10, "every socket is gone", async || {
        a.hub.metrics().connections == 0 && b.hub.metrics().connections == 0
    })
    .await;
    eventually(5, "presence is empty", async || redis.cli(&["HLEN", "zap:{churn}:p"]) == "0").await;
    assert_eq!(redis.cli(&["HLEN", "zap:{churn}:n"]), "0");
    for node in [&a, &b] {
        let n = node.hub.node();
        assert_eq!(redis.cli(&["SCARD", &format!("zap:node:{{{n}}}:s")]), "0", "no session attached to {n}");
        assert_eq!(redis.cli(&["SCARD", &format!("zap:node:{{{n}}}:m")]), "0", "no presence entry of {n}");
    }
    let sessions = redis.cli(&["--scan", "--pattern", "zap:{$s:*}:s"]);
    assert_eq!(sessions.lines().count(), 100, "each session kept for recovery");
    for key in sessions.lines() {
        let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 120_000, "{key} expires within the recovery window: {ttl}");
    }
    assert_eq!(a.hub.metrics().rooms + b.hub.metrics().rooms, 0);
}
