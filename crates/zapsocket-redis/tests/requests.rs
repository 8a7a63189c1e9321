//! socket.io's server API across nodes: the sockets of a room, making them join, leave
//! or disconnect, server-side events; each answered by the live nodes, naming those that
//! did not answer, never waiting past the timeout, never counting a dead node.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Node, Proxy, Recorder, Redis, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_api_answers_for_every_node() {
    let redis = Redis::start().await;
    let nodes =
        [Node::start(&redis.url()).await, Node::start(&redis.url()).await, Node::start(&redis.url()).await];
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let r = Recorder::named(&node.url, &format!("c{i}")).await;
        r.client.join("lobby").await.unwrap();
        clients.push(r);
    }
    let outsider = Recorder::named(&nodes[1].url, "out").await;
    let live = nodes[0].hub.nodes().await.unwrap();
    assert_eq!(live.len(), 3);

    let found = nodes[0].hub.to("lobby").fetch_sockets().await;
    assert!(found.complete(), "{:?}", found.missing);
    let mut seen: Vec<(String, String)> =
        found.results.iter().map(|s| (s.data["name"].as_str().unwrap().to_owned(), s.node.clone())).collect();
    seen.sort();
    let expected: Vec<(String, String)> =
        nodes.iter().enumerate().map(|(i, n)| (format!("c{i}"), n.hub.node().to_owned())).collect();
    assert_eq!(seen, expected, "each socket with its node");
    assert!(found.results.iter().all(|s| s.rooms == ["lobby"]));

    let joined = nodes[2].hub.to("lobby").sockets_join("game").await.unwrap();
    assert_eq!((joined.results, joined.complete()), (3, true));
    let in_game = nodes[1].hub.to("game").fetch_sockets().await;
    assert_eq!(in_game.results.len(), 3);
    nodes[0].hub.to("game").emit("go", &1).unwrap();
    for r in &mut clients {
        assert_eq!(r.next_named("go").await, json!(1), "they are really in the room");
    }
    let left = nodes[1]
        .hub
        .to("game")
        .except(zapsocket_realtime::RoomName::socket(&clients[0].client.session()))
        .sockets_leave("game")
        .await
        .unwrap();
    assert_eq!(left.results, 2);

    for node in &nodes {
        let n = node.hub.node().to_owned();
        node.hub.on_server_event("ping", move |from: String, x: u64| {
            let n = n.clone();
            async move { Ok::<_, zapsocket_realtime::ReplyError>(json!({"me": n, "from": from, "x": x + 1})) }
        });
    }
    let answers = nodes[0].hub.server_side_emit::<_, serde_json::Value>("ping", &41).await.unwrap();
    assert!(answers.complete());
    let mut from_nodes: Vec<String> = answers
        .results
        .iter()
        .map(|(n, r)| {
            let r = r.as_ref().unwrap();
            assert_eq!((r["from"].as_str(), r["x"].as_u64()), (Some(nodes[0].hub.node()), Some(42)));
            n.clone()
        })
        .collect();
    from_nodes.sort();
    let mut others = vec![nodes[1].hub.node().to_owned(), nodes[2].hub.node().to_owned()];
    others.sort();
    assert_eq!(from_nodes, others, "the other nodes answer, not the sender");

    let closed = nodes[0].hub.to("lobby").disconnect_sockets().await;
    assert_eq!(closed.results, 3);
    for r in &clients {
        eventually(5, "closed with 1000 (no reconnection)", async || {
            r.client.state() == zapsocket_realtime::client::ConnState::Closed
        })
        .await;
    }
    eventually(5, "only the outsider is left", async || {
        nodes[1].hub.to("$all").fetch_sockets().await.results.len() == 1
    })
    .await;
    drop(outsider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_named_as_missing_and_never_waited_for_past_the_timeout_or_its_lease() {
    let redis = Redis::start().await;
    let proxy = Proxy::start(redis.port).await;
    let a = Node::start(&redis.url()).await;
    let b = Node::start(&proxy.url()).await;
    let _on_a = Recorder::connect(&a.url).await;
    let _on_b = Recorder::connect(&b.url).await;
    let b_id = b.hub.node().to_owned();
    eventually(5, "a sees b", async || a.hub.nodes().await.unwrap().len() == 2).await;
    proxy.cut(); // for the others, b is dead: no answers, no lease renewals

    let started = Instant::now();
    let found = a.hub.to("$all").timeout(Duration::from_millis(500)).fetch_sockets().await;
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout: {:?}", started.elapsed());
    assert_eq!(found.missing, std::slice::from_ref(&b_id), "b is named");
    assert_eq!(found.results.len(), 1, "a's own socket");

    // Once b's lease ran out (1 s here), it is no longer expected at all.
    eventually(5, "b's lease ends", async || a.hub.nodes().await.unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let found = a.hub.to("$all").fetch_sockets().await;
    assert!(found.complete(), "a dead node is not counted: {:?}", found.missing);
    assert!(started.elapsed() < Duration::from_millis(500), "nobody to wait for");
}
