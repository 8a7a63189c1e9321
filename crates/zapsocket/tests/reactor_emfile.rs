//! The reactor server out of file descriptors (docs/RELIABILITY.md A5): its loop neither
//! spins nor stops, and accepts the connection left waiting once descriptors are free
//! (no new readiness edge comes for it: the loop's tick tries again). In a test binary of
//! its own: it takes every descriptor of the process for a while.

#![allow(clippy::unwrap_used)] // Test helpers: a failed step is a failed test.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zapsocket::reactor::{Handler, Reactor, Socket};
use zapsocket::{HttpResponse, Message, Request};

use common::descriptors::{cpu_ticks, take_every_descriptor};
use common::upgrade_request;

struct Echo;

impl Handler for Echo {
    type State = ();
    fn upgrade(&mut self, _request: &Request) -> Result<(), HttpResponse> {
        Ok(())
    }
    fn message(&mut self, ws: &mut Socket<'_, ()>, message: Message) {
        let _ = ws.send(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_loop_waits_then_accepts() {
    let running = Reactor::builder().port(0).threads(1).start(|_| Echo).unwrap();
    let addr = running.local_addr();
    let proc_stat = std::fs::File::open("/proc/self/stat").unwrap();
    let hoard = take_every_descriptor();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(upgrade_request("/").as_bytes()).await.unwrap();
    let before = cpu_ticks(&proc_stat);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(&proc_stat) - before;
    assert!(spent < 30, "{spent} ticks of CPU in 1 s while out of descriptors");
    let mut byte = [0u8];
    let early = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut byte)).await;
    assert!(early.is_err(), "answered without a descriptor for the connection: {early:?}");
    drop(hoard);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
}
