//! Presence: members with their public data, `$joined` and `$left` on join, leave and
//! disconnect.

#![allow(clippy::unwrap_used)] // test helpers below panic on purpose

mod common;

use std::time::Duration;

use common::{Recorder, serve};
use serde_json::json;
use zapsocket_realtime::{Hub, HubConfig, Member, Socket};

async fn named(url: &str, name: &str) -> Recorder {
    Recorder::connect(&format!("{url}?name={name}")).await
}

fn hub() -> Hub {
    hub_with(HubConfig::default())
}

fn hub_with(config: HubConfig) -> Hub {
    let hub = Hub::builder().config(config).build();
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).unwrap_or_default();
        socket.set_public_data(json!({ "name": name }));
        Ok(())
    });
    hub
}

fn names(members: &[Member]) -> Vec<String> {
    let mut names: Vec<String> =
        members.iter().map(|m| m.data["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn join_leave_and_disconnect_are_seen_by_the_room() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut ada = named(&url, "ada").await;
    let bob = named(&url, "bob").await;
    let mut cy = named(&url, "cy").await;
    assert_eq!(names(&ada.client.join("lobby").await.unwrap().members), ["ada"]);
    assert_eq!(names(&bob.client.join("lobby").await.unwrap().members), ["ada", "bob"]);
    let (event, data) = ada.next().await;
    assert_eq!(event, "$joined");
    assert_eq!(
        data,
        json!({"room": "lobby", "member": {"id": bob.client.session(), "data": {"name": "bob"}}})
    );
    cy.client.join("elsewhere").await.unwrap();
    assert_eq!(names(&cy.client.members("lobby").await.unwrap().members), ["ada", "bob"]);
    assert_eq!(names(&hub.members("lobby").await.unwrap()), ["ada", "bob"]);

    bob.client.leave("lobby").await.unwrap();
    let (event, data) = ada.next().await;
    assert_eq!((event.as_str(), &data["member"]["data"]["name"]), ("$left", &json!("bob")));
    bob.client.join("lobby").await.unwrap();
    assert_eq!(ada.next().await.0, "$joined");
    drop(bob);
    let (event, data) = ada.next().await;
    assert_eq!((event.as_str(), &data["room"]), ("$left", &json!("lobby")), "disconnect leaves");
    assert_eq!(names(&ada.client.members("lobby").await.unwrap().members), ["ada"]);
    ada.assert_silent().await;
    cy.assert_silent().await;
}

#[tokio::test]
async fn rooms_are_forgotten_when_empty_and_counted_in_metrics() {
    let hub = hub();
    let url = serve(&hub).await;
    let a = named(&url, "a").await;
    a.client.join("r1").await.unwrap();
    a.client.join("r2").await.unwrap();
    assert_eq!(hub.metrics().rooms, 2);
    assert_eq!(hub.metrics().connections, 1);
    a.client.leave("r1").await.unwrap();
    assert_eq!(hub.metrics().rooms, 1);
    a.client.close().await;
    for _ in 0..50 {
        if hub.metrics().connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = hub.metrics();
    assert_eq!((m.connections, m.rooms, m.connections_total), (0, 0, 1));
}

#[tokio::test]
async fn server_side_join_and_public_data() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut a = named(&url, "a").await;
    let b = named(&url, "b").await;
    a.client.join("team").await.unwrap();
    let sb = hub.socket(&b.client.session()).unwrap();
    sb.set_public_data(json!({"name": "b", "score": 3}));
    sb.join("team").await.unwrap();
    let (event, data) = a.next().await;
    assert_eq!(event, "$joined");
    assert_eq!(data["member"]["data"], json!({"name": "b", "score": 3}));
    assert_eq!(sb.rooms(), ["team"]);
    sb.set_data(42u32);
    assert_eq!(sb.data::<u32>(), Some(42));
    assert_eq!(sb.data::<String>(), None);
}

#[tokio::test]
async fn presence_stops_past_its_limit_and_the_count_goes_on() {
    let mut config = HubConfig::default();
    config.max_presence = 2;
    let hub = hub_with(config);
    let url = serve(&hub).await;
    let mut a = named(&url, "a").await;
    let b = named(&url, "b").await;
    let c = named(&url, "c").await;
    a.client.join("big").await.unwrap();
    let joined = b.client.join("big").await.unwrap();
    assert_eq!((joined.members.len(), joined.count), (2, 2));
    assert_eq!(a.next().await.0, "$joined");
    let joined = c.client.join("big").await.unwrap();
    assert_eq!((joined.members.len(), joined.count), (0, 3), "past the limit: the count only");
    let listed = a.client.members("big").await.unwrap();
    assert_eq!((listed.members.len(), listed.count), (0, 3));
    assert_eq!(hub.members("big").await.unwrap().len(), 3, "the server side sees everyone");
    c.client.leave("big").await.unwrap();
    a.assert_silent().await;
    b.client.leave("big").await.unwrap();
    assert_eq!(a.next().await.0, "$left", "within the limit again");
}
