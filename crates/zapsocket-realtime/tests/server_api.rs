//! socket.io's server API on one node (the default, in-memory adapter): the same calls
//! as across nodes (zapsocket-redis's tests), answered by this node alone.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use common::{Recorder, serve};
use serde_json::json;
use zapsocket_realtime::{Hub, ReplyError, RoomName};

#[tokio::test]
async fn fetch_join_leave_disconnect_and_server_events_on_one_node() {
    let hub = Hub::new();
    let url = serve(&hub).await;
    let mut a = Recorder::connect(&url).await;
    let b = Recorder::connect(&url).await;
    let c = Recorder::connect(&url).await;
    a.client.join("red").await.unwrap();
    b.client.join("red").await.unwrap();
    b.client.join("blue").await.unwrap();

    let nodes = hub.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), [hub.node()]);
    let found = hub.to("red").except(RoomName::socket(&b.client.session())).fetch_sockets().await;
    assert!(found.complete());
    assert_eq!(found.results.len(), 1);
    assert_eq!(
        (found.results[0].id.as_str(), found.results[0].node.as_str()),
        (a.client.session().as_str(), hub.node())
    );
    assert_eq!(found.results[0].rooms, ["red"]);
    let everyone = hub.to("$all").fetch_sockets().await;
    assert_eq!(everyone.results.len(), 3);

    let joined = hub.to("red").sockets_join("green").await.unwrap();
    assert_eq!(joined.results, 2);
    hub.to("green").emit("hi", &1).unwrap();
    assert_eq!(a.next_app().await, ("hi".to_owned(), json!(1)), "really in the room");
    let left = hub.to("blue").sockets_leave("red").await.unwrap();
    assert_eq!(left.results, 1, "b left red");
    assert_eq!(hub.socket(&b.client.session()).unwrap().rooms(), ["blue", "green"]);
    assert_eq!(hub.to("red").sockets_join("$all").await.unwrap_err().code.as_str(), "reserved");

    // No other node: a server-side event reaches nobody, and says so without waiting.
    hub.on_server_event("ping", |_from: String, n: u64| async move { Ok::<_, ReplyError>(n + 1) });
    let answers = hub.server_side_emit::<_, u64>("ping", &1).await.unwrap();
    assert!(answers.results.is_empty() && answers.complete());

    let closed = hub.to("blue").disconnect_sockets().await;
    assert_eq!(closed.results, 1);
    common::eventually(|| hub.socket(&b.client.session()).is_none()).await;
    assert!(hub.socket(&c.client.session()).is_some(), "only blue's members");
}
