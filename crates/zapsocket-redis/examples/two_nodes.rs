//! Two nodes, one server: two hubs on one Redis (in this process, as two `zap serve
//! --redis` would be on two machines), a client on each; they chat in one room, see each
//! other in presence, and `fetch_sockets` finds both with their nodes.
//!
//! ```sh
//! redis-server --port 6379 --save "" &          # any Redis 7; or scripts/cluster.sh
//! cargo run -p zapsocket-redis --example two_nodes [redis://127.0.0.1:6379]
//! ```

use std::time::Duration;

use serde_json::json;
use zapsocket_realtime::client::Client;
use zapsocket_realtime::{Hub, PresenceEvent, Socket};
use zapsocket_redis::{RedisAdapter, RedisConfig};

/// A node: a hub on the Redis adapter with a `chat` handler, served on a free port.
async fn node(redis: &str) -> Result<(Hub, String), Box<dyn std::error::Error>> {
    let adapter = RedisAdapter::connect(redis, RedisConfig::default()).await?;
    let hub = Hub::builder().adapter(adapter.adapter()).build();
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_default();
        socket.set_public_data(json!({ "name": name }));
        Ok(())
    });
    hub.on("chat", |socket: Socket, text: String| async move {
        let from = socket.public_data()["name"].clone();
        socket.hub().to("lobby").emit("chat", &json!({ "from": from, "text": text, "node": socket.node() }))
    });
    let server = zapsocket::Server::builder().subprotocol(zapsocket_realtime::SUBPROTOCOL).bind().await?;
    let url = format!("ws://{}/", server.local_addr());
    let served = hub.clone();
    tokio::spawn(server.serve(move |ws| served.clone().handle(ws)));
    Ok((hub, url))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = std::env::args().nth(1).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let (one, url_one) = node(&redis).await.map_err(|e| format!("{e} (is a Redis running at {redis}?)"))?;
    let (two, url_two) = node(&redis).await?;
    println!("node {} at {url_one}, node {} at {url_two}, on {redis}", one.node(), two.node());

    let ada = Client::connect(&format!("{url_one}?name=ada")).await?;
    let bob = Client::connect(&format!("{url_two}?name=bob")).await?;
    for (client, me) in [(&ada, "ada"), (&bob, "bob")] {
        client.on("chat", move |m: serde_json::Value| {
            println!("[{me}] {}: {} (via {})", m["from"], m["text"], m["node"])
        });
        client.on("$joined", move |e: PresenceEvent| {
            println!("[{me}] {} joined {}", e.member.data["name"], e.room)
        });
    }
    ada.join("lobby").await?;
    let members = bob.join("lobby").await?;
    println!("[bob] lobby: {} members on both nodes", members.count);
    ada.emit("chat", &"hello from node one").await?;
    bob.emit("chat", &"hello from node two").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let found = one.to("lobby").fetch_sockets().await;
    for socket in &found.results {
        println!("in lobby: {} on node {}", socket.data["name"], socket.node);
    }
    assert_eq!(found.results.len(), 2, "both nodes answered");
    Ok(())
}
