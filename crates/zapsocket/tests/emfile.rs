//! The process out of file descriptors (docs/RELIABILITY.md A5): the accept loop backs off
//! instead of spinning or failing, and serves again once descriptors are free. In a test
//! binary of its own: it takes every descriptor of the process for a while.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket::Server;

use common::descriptors::{cpu_ticks, take_every_descriptor};
use common::{echo_server, upgrade_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_then_serves_again() {
    let addr = echo_server(Server::builder()).await;
    let proc_stat = std::fs::File::open("/proc/self/stat").unwrap();
    let hoard = take_every_descriptor();
    // The connection completes in the kernel's backlog; the server's accept() fails with
    // EMFILE as long as the hoard is held.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(upgrade_request("/").as_bytes()).await.unwrap();
    let before = cpu_ticks(&proc_stat);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(&proc_stat) - before;
    // A loop retrying accept() at once would burn a whole core (about 100 ticks a second);
    // backing off 50 ms between tries costs next to nothing.
    assert!(spent < 30, "{spent} ticks of CPU in 1 s while out of descriptors");
    let mut byte = [0u8];
    let early = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await;
    assert!(early.is_err(), "answered without a descriptor for the connection: {early:?}");
    drop(hoard);
    // Descriptors are back: the pending connection is accepted and upgraded.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
}
