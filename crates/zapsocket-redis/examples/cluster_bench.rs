//! Benchmark: a room of N members spread over the nodes of a cluster (or one node), a
//! publisher on every node; deliveries per second, publish-to-delivery latency and the
//! CPU of every process given (the nodes, and Redis) per delivery.
//!
//! ```sh
//! scripts/bench-cluster.sh     # 3 nodes on Redis against 1 node alone, side by side
//! cargo run --release -p zapsocket-redis --example cluster_bench -- \
//!     ws://127.0.0.1:8081,ws://127.0.0.1:8082 PID1,PID2,REDIS_PID 1000 200 16
//! ```
//!
//! Arguments `NODES PIDS MEMBERS MESSAGES WINDOW`: NODES, the base URLs of `zap serve`
//! nodes (comma separated; members connect to `/ws` in turn, each joins the room
//! `bench`); PIDS, the processes whose CPU is counted; each node's first member publishes
//! MESSAGES `chat` events to the room, with at most WINDOW of its own not yet delivered
//! to every member. Every member checks each publisher's order and that nothing comes
//! twice; the latency is from the publisher's send to each member's receipt (one clock:
//! one process). Prints one JSON line.

#![allow(clippy::unwrap_used)] // a benchmark tool: any failure ends the run with a message

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use zapsocket::{Message, WebSocket};
use zapsocket_realtime::SUBPROTOCOL;

struct Run {
    nodes: Vec<String>,
    pids: Vec<u32>,
    members: usize,
    messages: usize,
    window: usize,
    /// Redis, whose counters are reset before and read after the measured part.
    redis: Option<String>,
}

/// What every member counts.
struct Counts {
    /// Deliveries per (publisher, sequence number).
    delivered: Vec<Vec<AtomicU32>>,
    deliveries: AtomicU64,
    errors: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    last_delivery: Mutex<Instant>,
    windows: Vec<Semaphore>,
    members: u32,
    clock: Instant,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 5 && args.len() != 6 {
        eprintln!(
            "usage: cluster_bench NODES PIDS MEMBERS MESSAGES WINDOW [REDIS_URL] (lists comma separated)"
        );
        std::process::exit(2);
    }
    let number = |s: &str| s.parse::<usize>().unwrap();
    let run = Run {
        nodes: args[0].split(',').map(str::to_owned).collect(),
        pids: args[1].split(',').filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect(),
        members: number(&args[2]),
        messages: number(&args[3]),
        window: number(&args[4]),
        redis: args.get(5).cloned(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(drive(run));
}

async fn drive(run: Run) {
    let publishers = run.nodes.len();
    let counts = Arc::new(Counts {
        delivered: (0..publishers).map(|_| (0..=run.messages).map(|_| AtomicU32::new(0)).collect()).collect(),
        deliveries: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies: Mutex::new(Vec::with_capacity(run.members * publishers * run.messages)),
        last_delivery: Mutex::new(Instant::now()),
        windows: (0..publishers).map(|_| Semaphore::new(0)).collect(),
        members: run.members as u32,
        clock: Instant::now(),
    });
    let mut senders = Vec::new();
    let started = Instant::now();
    let all: Vec<usize> = (0..run.members).collect();
    for chunk in all.chunks(64) {
        let joins = chunk.iter().map(|i| connect(format!("{}/ws", run.nodes[i % publishers])));
        for (ws, i) in futures_util::future::join_all(joins).await.into_iter().zip(chunk) {
            let (tx, rx) = ws.split();
            if *i < publishers {
                senders.push(tx);
            }
            tokio::spawn(member(rx, counts.clone(), publishers));
        }
    }
    eprintln!("{} members on {publishers} node(s) in {:.1} s", run.members, started.elapsed().as_secs_f64());
    // Warm-up: each publisher's message 0 reaches everyone.
    for (p, tx) in senders.iter().enumerate() {
        publish(tx, &counts, p, 0).await;
        wait_for(&counts, p, 0).await;
    }
    counts.latencies.lock().unwrap().clear();
    let mut redis =
        run.redis.as_deref().map(|url| redis::Client::open(url).unwrap().get_connection().unwrap());
    if let Some(redis) = &mut redis {
        redis::cmd("CONFIG").arg("RESETSTAT").exec(redis).unwrap();
    }
    let cpu_before = cpu(&run.pids);
    let start = Instant::now();
    let tasks = senders.into_iter().enumerate().map(|(p, tx)| {
        let counts = counts.clone();
        let (messages, window) = (run.messages, run.window);
        tokio::spawn(async move {
            counts.windows[p].add_permits(window);
            for seq in 1..=messages {
                counts.windows[p].acquire().await.unwrap().forget();
                publish(&tx, &counts, p, seq).await;
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    for p in 0..publishers {
        wait_for(&counts, p, run.messages).await;
    }
    let elapsed = counts.last_delivery.lock().unwrap().duration_since(start);
    let cpu = cpu(&run.pids).saturating_sub(cpu_before);
    let deliveries = (publishers * run.messages * run.members) as f64;
    let mut latencies = counts.latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
    let errors = counts.errors.load(Relaxed);
    let publishes = (publishers * run.messages) as f64;
    let redis = redis.as_mut().map(|redis| redis_per_publish(redis, publishes)).unwrap_or_default();
    println!(
        "{{{redis}\"members\":{},\"publishers\":{publishers},\"messages\":{},\"window\":{},\"deliveries_per_s\":{:.0},\"p50_us\":{},\"p99_us\":{},\"cpu_us_per_delivery\":{:.3},\"seconds\":{:.3},\"errors\":{errors}}}",
        run.members,
        run.messages * publishers,
        run.window,
        deliveries / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        cpu as f64 / 1000.0 / deliveries,
        elapsed.as_secs_f64(),
    );
    std::process::exit(if errors == 0 { 0 } else { 1 });
}

async fn connect(url: String) -> WebSocket {
    let mut ws = zapsocket::Client::builder().protocol(SUBPROTOCOL).connect(&url).await.unwrap();
    let _hello = ws.recv().await.unwrap().unwrap();
    ws.send(r#"{"event":"$join","data":{"room":"bench"},"ack":1}"#).await.unwrap();
    loop {
        let reply = ws.recv().await.unwrap().unwrap();
        if reply.as_text().is_some_and(|t| t.starts_with("{\"reply\":1")) {
            return ws;
        }
    }
}

/// A chat whose text is `#P SEQ MICROS` (publisher, sequence number, send time).
async fn publish(tx: &zapsocket::WebSocketSender, counts: &Counts, p: usize, seq: usize) {
    let sent = counts.clock.elapsed().as_micros();
    let text = format!("#{p} {seq} {sent}");
    let message = format!(r#"{{"event":"chat","data":{{"text":"{text}","room":"bench"}}}}"#);
    tx.send(Message::from(message)).await.unwrap();
}

/// A member: counts each message, checks each publisher's order, records the latency.
async fn member(mut rx: zapsocket::WebSocketReceiver, counts: Arc<Counts>, publishers: usize) {
    let mut next = vec![0usize; publishers];
    while let Some(Ok(message)) = rx.recv().await {
        let Some(text) = message.as_text() else { continue };
        if !text.starts_with("{\"event\":\"chat\"") {
            continue;
        }
        let Some(fields) = text.find('#').and_then(|i| text.get(i + 1..)).and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let mut parts = fields.split(' ').map(|f| f.parse::<u128>().unwrap_or(0));
        let (p, seq, sent) = (
            parts.next().unwrap_or(0) as usize,
            parts.next().unwrap_or(0) as usize,
            parts.next().unwrap_or(0),
        );
        if p >= publishers || seq != next[p] {
            counts.errors.fetch_add(1, Relaxed);
            continue;
        }
        next[p] = seq + 1;
        let latency = counts.clock.elapsed().as_micros().saturating_sub(sent) as u32;
        counts.latencies.lock().unwrap().push(latency); // one thread: no contention
        counts.deliveries.fetch_add(1, Relaxed);
        if counts.delivered[p][seq].fetch_add(1, Relaxed) + 1 == counts.members {
            *counts.last_delivery.lock().unwrap() = Instant::now();
            counts.windows[p].add_permits(1);
        }
    }
}

async fn wait_for(counts: &Counts, p: usize, seq: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts.delivered[p][seq].load(Relaxed) < counts.members {
        assert!(Instant::now() < deadline, "message {p}/{seq} not delivered to all within 120 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Redis's counters per publish, as JSON fields: round trips (script calls; the nodes'
/// lease renewals, one a second each, included), commands run (those inside the scripts
/// too), bytes in and out.
fn redis_per_publish(redis: &mut redis::Connection, publishes: f64) -> String {
    let stats: String = redis::cmd("INFO").arg("stats").query(redis).unwrap();
    let commands: String = redis::cmd("INFO").arg("commandstats").query(redis).unwrap();
    let field = |name: &str| -> f64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let evalsha: f64 = commands
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
        .unwrap_or(0.0);
    format!(
        "\"redis_round_trips_per_publish\":{:.2},\"redis_commands_per_publish\":{:.2},\"redis_bytes_in_per_publish\":{:.0},\"redis_bytes_out_per_publish\":{:.0},",
        evalsha / publishes,
        field("total_commands_processed") / publishes,
        field("total_net_input_bytes") / publishes,
        field("total_net_output_bytes") / publishes,
    )
}

/// CPU time in ns of the processes: the sum of their threads' run times.
fn cpu(pids: &[u32]) -> u64 {
    pids.iter()
        .flat_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten())
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
