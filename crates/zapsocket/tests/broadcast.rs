//! Broadcast to many clients, all-but-sender, and the slow-consumer policy.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use zapsocket::{Client, Clients, Message, Server, SlowConsumer, WebSocket, WebSocketConfig};

use common::{RawPeer, url};

/// A server whose connections only read (and hold the socket open).
async fn server(config: WebSocketConfig) -> (std::net::SocketAddr, Clients) {
    let server = Server::builder().config(config).bind().await.unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    tokio::spawn(server.serve(|mut ws: WebSocket| async move { while ws.recv().await.is_some() {} }));
    (addr, clients)
}

async fn wait_for(clients: &Clients, n: usize) {
    for _ in 0..500 {
        if clients.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} clients, have {}", clients.len());
}

#[tokio::test]
async fn a_broadcast_reaches_100_clients_exactly_once_in_order() {
    let (addr, clients) = server(WebSocketConfig::default()).await;
    let mut sockets = Vec::new();
    for _ in 0..100 {
        sockets.push(Client::connect(&url(addr, "/")).await.unwrap());
    }
    wait_for(&clients, 100).await;
    for i in 0..50 {
        assert_eq!(clients.broadcast(format!("msg {i}")), 100);
    }
    clients.broadcast("end");
    for ws in &mut sockets {
        for i in 0..50 {
            let msg = ws.recv().await.unwrap().unwrap();
            assert_eq!(msg.as_text(), Some(format!("msg {i}").as_str()));
        }
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("end"), "no duplicates");
    }
}

/// As with `ws`'s `connection` event: what a handler does before its first wait runs
/// before the client sees the 101, so a client is in the handler's set by the time its
/// `connect` returns, however slow that first step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_joins_its_set_before_the_client_sees_the_connection_open() {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let room = Clients::new();
    let joined = room.clone();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        // A slow first step (blocking on purpose), then the join.
        std::thread::sleep(Duration::from_millis(100));
        joined.insert(&ws.sender());
        async move { while ws.recv().await.is_some() {} }
    }));
    let mut open = Vec::new();
    for i in 0..3 {
        let mut ws = Client::connect(&url(addr, "/")).await.unwrap();
        assert_eq!(room.broadcast(format!("welcome {i}")), i + 1, "the new client is in the set");
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("welcome {i}")));
        open.push(ws);
    }
}

#[tokio::test]
async fn broadcast_except_skips_the_sender() {
    let server = Server::builder().bind().await.unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    let relay = clients.clone();
    tokio::spawn(server.serve(move |mut ws: WebSocket| {
        let relay = relay.clone();
        async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() {
                    relay.broadcast_except(ws.id(), msg);
                }
            }
        }
    }));
    let mut a = Client::connect(&url(addr, "/")).await.unwrap();
    let mut b = Client::connect(&url(addr, "/")).await.unwrap();
    let mut c = Client::connect(&url(addr, "/")).await.unwrap();
    wait_for(&clients, 3).await;
    a.send("from a").await.unwrap();
    assert_eq!(b.recv().await.unwrap().unwrap(), Message::text("from a"));
    assert_eq!(c.recv().await.unwrap().unwrap(), Message::text("from a"));
    b.send("from b").await.unwrap();
    assert_eq!(a.recv().await.unwrap().unwrap(), Message::text("from b"), "a never got its own message");
    assert_eq!(c.recv().await.unwrap().unwrap(), Message::text("from b"));
}

/// Broadcasts 2,000 messages of 4 KiB (8 MiB) to a healthy client and a raw peer that
/// never reads. Returns the healthy client's count and the most bytes ever queued for
/// any connection.
async fn flood(policy: SlowConsumer) -> (Clients, usize, usize, RawPeer) {
    let limit = 64 * 1024;
    let config = WebSocketConfig::default().max_send_queue(limit).slow_consumer(policy);
    let (addr, clients) = server(config).await;
    let slow = RawPeer::connect(addr, "/").await;
    let mut healthy = Client::connect(&url(addr, "/")).await.unwrap();
    wait_for(&clients, 2).await;
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), healthy.recv()).await {
            n += 1;
            if n == 2000 {
                break;
            }
        }
        n
    });
    let payload = vec![b'x'; 4096];
    let mut max_queued = 0;
    for _ in 0..2000 {
        clients.broadcast(payload.clone());
        for sender in clients.senders() {
            max_queued = max_queued.max(sender.buffered_amount());
        }
        tokio::task::yield_now().await;
    }
    let received = counter.await.unwrap();
    assert!(max_queued <= limit + 4096 + 14, "queue grew to {max_queued} bytes");
    (clients, received, max_queued, slow)
}

#[tokio::test]
async fn a_client_that_never_reads_is_terminated_and_stalls_nobody() {
    let (clients, received, _, mut slow) = flood(SlowConsumer::Terminate).await;
    assert_eq!(received, 2000, "the healthy client got every message");
    wait_for(&clients, 1).await;
    // The slow peer's connection was ended by the server.
    let _ = slow.read_to_end().await;
}

#[tokio::test]
async fn the_drop_policy_keeps_the_slow_client_with_bounded_memory() {
    let (clients, received, _, _slow) = flood(SlowConsumer::DropMessage).await;
    assert_eq!(received, 2000);
    assert_eq!(clients.len(), 2, "the slow client stays connected");
}
