//! Connection churn against a running server, for soak tests (`scripts/soak.sh`).
//!
//! Keeps `--connections` slots busy for `--seconds`: each slot connects, exchanges a few
//! messages, stays a while, then ends the connection, half the time with a close
//! handshake and half the time by dropping TCP without a close frame, and starts again.
//! On the echo path (`--mode echo`, the URL's path as given) every message must come back
//! unchanged; on the realtime hub (`--mode realtime`, `zap serve`'s `/ws`, subprotocol
//! `zap.v1`) a slot waits for `$hello`, joins a room (`$join`, acked) and sends an `echo`
//! event with an ack, which must be answered with the same data.
//!
//! ```text
//! cargo run --release --example churn -- ws://127.0.0.1:8080/echo --mode echo --connections 1000 --seconds 60
//! ```
//!
//! Prints a progress line every 10 s and a summary at the end; exits non-zero if any
//! exchange came back wrong (a connection that failed to open counts as an error, not a
//! wrong answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use zapsocket::{Client, CloseCode, Message, WebSocket};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    Realtime,
}

struct Args {
    url: String,
    mode: Mode,
    connections: usize,
    seconds: u64,
    hold: (u64, u64),
}

#[derive(Default)]
struct Counts {
    cycles: AtomicU64,
    clean: AtomicU64,
    dropped: AtomicU64,
    messages: AtomicU64,
    connect_errors: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed =
        Args { url: String::new(), mode: Mode::Echo, connections: 1000, seconds: 60, hold: (2000, 8000) };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mode" => {
                parsed.mode = match value()?.as_str() {
                    "echo" => Mode::Echo,
                    "realtime" => Mode::Realtime,
                    other => return Err(format!("unknown mode {other} (echo, realtime)")),
                }
            }
            "--connections" => {
                parsed.connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--seconds" => parsed.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--hold-ms" => {
                let v = value()?;
                let (lo, hi) = v.split_once('-').ok_or("--hold-ms takes MIN-MAX")?;
                parsed.hold =
                    (lo.parse().map_err(|_| "--hold-ms MIN")?, hi.parse().map_err(|_| "--hold-ms MAX")?);
            }
            url if !url.starts_with("--") && parsed.url.is_empty() => parsed.url = url.to_owned(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if parsed.url.is_empty() {
        return Err(
            "usage: churn URL [--mode echo|realtime] [--connections N] [--seconds S] [--hold-ms MIN-MAX]"
                .into(),
        );
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("churn: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let counts = Arc::new(Counts::default());
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut slots = Vec::new();
    for slot in 0..args.connections {
        let (args, counts) = (args.clone(), counts.clone());
        slots.push(tokio::spawn(async move {
            // Spread the starts over the first second.
            tokio::time::sleep(Duration::from_micros((slot as u64 * 1_000_000) / args.connections as u64))
                .await;
            let mut cycle = 0u64;
            while Instant::now() < until {
                run_cycle(&args, &counts, slot, cycle).await;
                cycle += 1;
            }
        }));
    }
    let started = Instant::now();
    let progress = {
        let counts = counts.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!("churn: {:>4}s {}", started.elapsed().as_secs(), summary(&counts));
            }
        })
    };
    for slot in slots {
        let _ = slot.await;
    }
    progress.abort();
    println!("churn: done in {}s: {}", started.elapsed().as_secs(), summary(&counts));
    if counts.wrong.load(Ordering::Relaxed) > 0 {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

fn summary(c: &Counts) -> String {
    format!(
        "cycles {} (closed {}, dropped {}), messages {}, connect errors {}, errors {}, wrong answers {}",
        c.cycles.load(Ordering::Relaxed),
        c.clean.load(Ordering::Relaxed),
        c.dropped.load(Ordering::Relaxed),
        c.messages.load(Ordering::Relaxed),
        c.connect_errors.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
        c.wrong.load(Ordering::Relaxed),
    )
}

/// A small pseudo-random number from the slot and cycle (no shared generator).
fn mix(slot: usize, cycle: u64, salt: u64) -> u64 {
    let mut x =
        (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ cycle.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

async fn run_cycle(args: &Args, counts: &Counts, slot: usize, cycle: u64) {
    let mut builder = Client::builder();
    if args.mode == Mode::Realtime {
        builder = builder.protocol("zap.v1");
    }
    let mut ws = match tokio::time::timeout(Duration::from_secs(10), builder.connect(&args.url)).await {
        Ok(Ok(ws)) => ws,
        _ => {
            counts.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    let exchanged = tokio::time::timeout(Duration::from_secs(10), async {
        match args.mode {
            Mode::Echo => echo(&mut ws, slot, cycle, counts).await,
            Mode::Realtime => realtime(&mut ws, slot, cycle, counts).await,
        }
    })
    .await;
    match exchanged {
        Ok(Ok(())) => {}
        Ok(Err(Wrong)) => {
            counts.wrong.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let (lo, hi) = args.hold;
    let hold = lo + mix(slot, cycle, 1) % (hi.saturating_sub(lo) + 1);
    tokio::time::sleep(Duration::from_millis(hold)).await;
    counts.cycles.fetch_add(1, Ordering::Relaxed);
    if mix(slot, cycle, 2).is_multiple_of(2) {
        let _ = ws.close(CloseCode::NORMAL, "bye").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), ws.closed()).await;
        counts.clean.fetch_add(1, Ordering::Relaxed);
    } else {
        ws.terminate();
        counts.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// An answer that was not the one expected.
struct Wrong;

/// The next data message (pings and pongs skipped); `Wrong` on an error or the end.
async fn next_data(ws: &mut WebSocket) -> Result<Message, Wrong> {
    loop {
        match ws.recv().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Ok(m),
            _ => return Err(Wrong),
        }
    }
}

async fn echo(ws: &mut WebSocket, slot: usize, cycle: u64, counts: &Counts) -> Result<(), Wrong> {
    for i in 0..3 {
        let len = 16 + (mix(slot, cycle, 10 + i) % 2048) as usize;
        let body: Vec<u8> = (0..len).map(|k| (k as u64 ^ mix(slot, cycle, i)) as u8).collect();
        let sent = if i % 2 == 0 { Message::binary(body) } else { Message::text(hex(&body)) };
        ws.send(sent.clone()).await.map_err(|_| Wrong)?;
        if next_data(ws).await? != sent {
            return Err(Wrong);
        }
        counts.messages.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn realtime(ws: &mut WebSocket, slot: usize, cycle: u64, counts: &Counts) -> Result<(), Wrong> {
    let hello = next_data(ws).await?;
    if !hello.as_text().is_some_and(|t| t.contains("\"$hello\"")) {
        return Err(Wrong);
    }
    let room = format!("churn-{}", slot % 50);
    let join = format!(r#"{{"event":"$join","data":{{"room":"{room}"}},"ack":1}}"#);
    ws.send(Message::text(join)).await.map_err(|_| Wrong)?;
    wait_ack(ws, 1, None).await?;
    counts.messages.fetch_add(1, Ordering::Relaxed);
    let token = mix(slot, cycle, 3);
    let echo = format!(r#"{{"event":"echo","data":{{"n":{token}}},"ack":2}}"#);
    ws.send(Message::text(echo)).await.map_err(|_| Wrong)?;
    wait_ack(ws, 2, Some(&format!(r#""n":{token}"#))).await?;
    counts.messages.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Waits for the reply to request `ack` (other envelopes, like `$joined`, are skipped);
/// with `expect`, the reply must contain it.
async fn wait_ack(ws: &mut WebSocket, ack: u64, expect: Option<&str>) -> Result<(), Wrong> {
    let tag = format!(r#""reply":{ack}"#);
    loop {
        let message = next_data(ws).await?;
        let Some(text) = message.as_text() else { return Err(Wrong) };
        if !text.contains(&tag) {
            continue;
        }
        if text.contains("\"error\"") || expect.is_some_and(|e| !text.contains(e)) {
            return Err(Wrong);
        }
        return Ok(());
    }
}
