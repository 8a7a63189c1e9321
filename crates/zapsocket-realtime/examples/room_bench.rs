//! Benchmark: one event broadcast to a room of N members, beside the raw `/broadcast`
//! relay of the same `zap serve`, in one run. Reports deliveries per second and the
//! server's CPU time per delivery (from `/proc/PID/task/*/schedstat`).
//!
//! ```sh
//! scripts/bench-realtime.sh          # zap serve, both paths, 1,000 and 10,000 members
//! cargo run --release -p zapsocket-realtime --example room_bench -- \
//!     ws://127.0.0.1:28310 SERVER_PID realtime 1000 200 16
//! ```
//!
//! Arguments `URL PID MODE N M W`: N connections (MODE `realtime`: each joins the room
//! `bench` on `/ws`, and `chat` events are relayed to it by the hub of `zap serve`;
//! `raw`: each connects to `/broadcast`, which relays every message to all its clients
//! with the frame encoded once); one of them publishes M messages, at most W not yet
//! delivered to all N (the publisher gets its own copy on both paths). Every member
//! checks that sequence numbers arrive in order without gap. The raw payload is as long
//! as the realtime frame, so both paths move the same bytes. Prints one JSON line.

#![allow(clippy::unwrap_used)] // a benchmark tool: any failure ends the run with a message

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use zapsocket::{Message, WebSocket};
use zapsocket_realtime::SUBPROTOCOL;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        eprintln!("usage: room_bench URL SERVER_PID realtime|raw MEMBERS MESSAGES WINDOW");
        std::process::exit(2);
    }
    let n = |i: usize| args[i].parse::<usize>().unwrap();
    let config = Drive { url: args[0].clone(), pid: n(1), mode: args[2].clone(), n: n(3), m: n(4), w: n(5) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(drive(config));
}

struct Drive {
    url: String,
    pid: usize,
    mode: String,
    n: usize,
    m: usize,
    w: usize,
}

/// What every member counts.
struct Counts {
    /// Deliveries per sequence number.
    per_message: Vec<AtomicU32>,
    deliveries: AtomicU64,
    errors: AtomicU64,
    last_delivery: std::sync::Mutex<Instant>,
    window: Semaphore,
    n: u32,
}

async fn drive(d: Drive) {
    let realtime = d.mode == "realtime";
    let url = if realtime { format!("{}/ws", d.url) } else { format!("{}/broadcast", d.url) };
    let counts = Arc::new(Counts {
        per_message: (0..=d.m).map(|_| AtomicU32::new(0)).collect(),
        deliveries: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        last_delivery: std::sync::Mutex::new(Instant::now()),
        window: Semaphore::new(0),
        n: d.n as u32,
    });
    let mut publisher = None;
    let started = Instant::now();
    for chunk in (0..d.n).collect::<Vec<_>>().chunks(64) {
        let joins = chunk.iter().map(|_| connect(&url, realtime));
        for ws in futures_util::future::join_all(joins).await {
            let (tx, rx) = ws.split();
            if publisher.is_none() {
                publisher = Some(tx);
            }
            tokio::spawn(member(rx, counts.clone()));
        }
    }
    eprintln!("{} connections in {:.1} s", d.n, started.elapsed().as_secs_f64());
    let publisher = publisher.unwrap();
    let size = if realtime { 16 } else { realtime_frame_len() };
    // Warm-up: message 0 reaches everyone.
    publish(&publisher, realtime, 0, size).await;
    wait_for(&counts, 0).await;
    let cpu_before = server_cpu(d.pid);
    let start = Instant::now();
    counts.window.add_permits(d.w);
    for seq in 1..=d.m {
        counts.window.acquire().await.unwrap().forget();
        publish(&publisher, realtime, seq, size).await;
    }
    wait_for(&counts, d.m).await;
    let elapsed = counts.last_delivery.lock().unwrap().duration_since(start);
    let cpu = server_cpu(d.pid).saturating_sub(cpu_before);
    let deliveries = (d.m * d.n) as f64;
    let errors = counts.errors.load(Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"members\":{},\"messages\":{},\"window\":{},\"deliveries_per_s\":{:.0},\"server_cpu_us_per_delivery\":{:.3},\"seconds\":{:.3},\"errors\":{}}}",
        d.mode,
        d.n,
        d.m,
        d.w,
        deliveries / elapsed.as_secs_f64(),
        cpu as f64 / 1000.0 / deliveries,
        elapsed.as_secs_f64(),
        errors
    );
    std::process::exit(if errors == 0 { 0 } else { 1 });
}

async fn connect(url: &str, realtime: bool) -> WebSocket {
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(url).await.unwrap();
    if realtime {
        let _hello = ws.recv().await.unwrap().unwrap();
        ws.send(r#"{"event":"$join","data":{"room":"bench"},"ack":1}"#).await.unwrap();
        loop {
            let reply = ws.recv().await.unwrap().unwrap();
            if reply.as_text().is_some_and(|t| t.starts_with("{\"reply\":1")) {
                break;
            }
        }
    }
    ws
}

/// The length of the realtime frame's payload for a 16-byte text (measured once).
fn realtime_frame_len() -> usize {
    let sample = r##"{"event":"chat","data":{"from":"guest-1234","text":"#000000001234567","room":"bench"},"epoch":"e-0123456789abcdef","rooms":{"bench":123}}"##;
    sample.len()
}

async fn publish(tx: &zapsocket::WebSocketSender, realtime: bool, seq: usize, size: usize) {
    let text = format!("#{seq:08}{}", "x".repeat(size.saturating_sub(9)));
    let message = if realtime { format!(r#"{{"event":"chat","data":{{"text":"{text}"}}}}"#) } else { text };
    tx.send(Message::from(message)).await.unwrap();
}

/// A member: counts each message, checks the order.
async fn member(mut rx: zapsocket::WebSocketReceiver, counts: Arc<Counts>) {
    let mut next = 0usize;
    while let Some(Ok(message)) = rx.recv().await {
        let Some(text) = message.as_text() else { continue };
        if text.starts_with("{\"event\":\"$joined") {
            continue;
        }
        let Some(seq) =
            text.find('#').and_then(|i| text.get(i + 1..i + 9)).and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        if seq != next {
            counts.errors.fetch_add(1, Relaxed);
        }
        next = seq + 1;
        counts.deliveries.fetch_add(1, Relaxed);
        if let Some(count) = counts.per_message.get(seq)
            && count.fetch_add(1, Relaxed) + 1 == counts.n
        {
            *counts.last_delivery.lock().unwrap() = Instant::now();
            counts.window.add_permits(1);
        }
    }
}

async fn wait_for(counts: &Counts, seq: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts.per_message[seq].load(Relaxed) < counts.n {
        assert!(Instant::now() < deadline, "message {seq} not delivered to all within 120 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The server's CPU time in ns: the sum of its threads' run times.
fn server_cpu(pid: usize) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
