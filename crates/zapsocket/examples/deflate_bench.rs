//! The permessage-deflate benchmark driver: echo throughput with compressible and
//! incompressible messages, with and without compression, and the server's memory per
//! idle compressed connection. It drives any echo server (zapsocket's `zap serve`, Node
//! `ws`) with the zapsocket client, so both servers face the same client;
//! scripts/bench-deflate.sh runs the comparison. Loopback only; every run is bounded.
//!
//! ```text
//! cargo run --release -p zapsocket --example deflate_bench -- echo URL SIZE json|random on|off CONNS SECS [PID]
//! cargo run --release -p zapsocket --example deflate_bench -- idle URL CONNS on|off|alone PID [SIZE [WAIT_SECS]]
//! ```
//!
//! - `echo`: CONNS connections each send a binary message of SIZE bytes and wait for its
//!   echo (checked byte for byte), for SECS seconds. `json` is a chat-like JSON feed (every
//!   message different, highly compressible), `random` is incompressible. `on` offers
//!   permessage-deflate (it is used only if the server agrees; the output says), `alone`
//!   offers it with `client_no_context_takeover`, `off` offers nothing. With PID,
//!   the server's CPU time per message from /proc.
//! - `idle`: reads the server's VmRSS, opens CONNS connections (each echoes one JSON message
//!   of SIZE bytes, default 4096, so compression state exists on both sides; 32768 or more
//!   fills a 15-bit window), waits WAIT_SECS (default 2; a server with a heartbeat releases
//!   idle buffers on its ticks), reads VmRSS again and
//!   reports bytes per connection; then checks every connection still echoes.
//!
//! Each run prints one JSON line.

use std::time::{Duration, Instant};

use zapsocket::{Client, DeflateConfig, Message, WebSocket, WebSocketReceiver, WebSocketSender};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") if args.len() >= 7 => echo(&args[1..]).await,
        Some("idle") if (5..=7).contains(&args.len()) => idle(&args[1..]).await,
        _ => Err("usage: deflate_bench echo URL SIZE json|random on|off CONNS SECS [PID] | idle URL CONNS on|off PID".into()),
    }
}

/// A chat-like JSON feed: records that differ from message to message but share their
/// shape, as most real traffic does; `seq` makes every message unique.
fn json_payload(size: usize, seq: u64) -> Vec<u8> {
    let mut out = format!("{{\"seq\":{seq},\"events\":[").into_bytes();
    let mut i = seq;
    while out.len() < size {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let record = format!(
            "{{\"id\":{},\"user\":\"user{}\",\"room\":\"lobby\",\"text\":\"message number {} in the feed\",\"ts\":{}}},",
            i % 100_000,
            i % 97,
            i % 1000,
            1_700_000_000 + (i % 86_400)
        );
        out.extend_from_slice(record.as_bytes());
    }
    out.truncate(size);
    out
}

/// Incompressible bytes (xorshift), different for every message.
fn random_payload(size: usize, seq: u64) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the client offers: nothing, the default offer, or the default plus
/// `client_no_context_takeover` (which lets a server drop its decompressor between messages).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offer {
    Off,
    On,
    Alone,
}

async fn connect(url: &str, offer: Offer) -> Result<WebSocket, Error> {
    let config = match offer {
        Offer::Off => None,
        Offer::On => Some(DeflateConfig::default()),
        Offer::Alone => Some(DeflateConfig::default().client_no_context_takeover(true)),
    };
    let builder = Client::builder()
        .deflate(config)
        .config(zapsocket::WebSocketConfig::default().max_message_size(64 << 20));
    Ok(builder.connect(url).await?)
}

fn offer(arg: &str) -> Result<Offer, Error> {
    match arg {
        "on" => Ok(Offer::On),
        "off" => Ok(Offer::Off),
        "alone" => Ok(Offer::Alone),
        other => Err(format!("expected on, off or alone, got {other:?}").into()),
    }
}

async fn echo(args: &[String]) -> Result<(), Error> {
    let url = args[0].clone();
    let size: usize = args[1].parse()?;
    let json = match args[2].as_str() {
        "json" => true,
        "random" => false,
        other => return Err(format!("expected json or random, got {other:?}").into()),
    };
    let offer_arg = args[3].clone();
    let deflate = offer(&offer_arg)?;
    let conns: usize = args[4].parse()?;
    let secs: f64 = args[5].parse()?;
    let pid = args.get(6).cloned();
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(connect(&url, deflate).await?.split());
    }
    let agreed = sockets[0].0.deflate().map(|p| p.to_header());
    // Warm up, then measure.
    let (sockets, _) = run_echo(sockets, size, json, Duration::from_millis(500)).await?;
    let cpu0 = pid.as_deref().map(cpu_ticks).transpose()?;
    let started = Instant::now();
    let (sockets, messages) = run_echo(sockets, size, json, Duration::from_secs_f64(secs)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (pid.as_deref(), cpu0) {
        (Some(pid), Some(before)) => {
            Some((cpu_ticks(pid)? - before) as f64 * 1e6 / ticks_per_second() / messages as f64)
        }
        _ => None,
    };
    for (tx, _) in &sockets {
        tx.close(zapsocket::CloseCode::NORMAL, "").await?;
    }
    println!(
        "{{\"mode\":\"echo\",\"url\":\"{url}\",\"size\":{size},\"payload\":\"{}\",\"offer\":\"{offer_arg}\",\"agreed\":{},\"conns\":{conns},\"messages\":{messages},\"msgs_per_s\":{:.0},\"mb_per_s\":{:.1},\"server_cpu_us_per_msg\":{}}}",
        if json { "json" } else { "random" },
        agreed.map_or("null".to_owned(), |h| format!("\"{h}\"")),
        messages as f64 / elapsed,
        (messages * size) as f64 / elapsed / 1e6,
        cpu.map_or("null".to_owned(), |c| format!("{c:.1}")),
    );
    Ok(())
}

type Pair = (WebSocketSender, WebSocketReceiver);

/// Every connection sends, waits for its echo and checks it, until `duration` is over;
/// returns the connections and how many messages made the round trip.
async fn run_echo(
    sockets: Vec<Pair>,
    size: usize,
    json: bool,
    duration: Duration,
) -> Result<(Vec<Pair>, usize), Error> {
    let deadline = tokio::time::Instant::now() + duration;
    let mut handles = Vec::new();
    for (i, (tx, mut rx)) in sockets.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut count = 0usize;
            let mut seq = (i as u64) << 32;
            while tokio::time::Instant::now() < deadline {
                seq += 1;
                let payload = if json { json_payload(size, seq) } else { random_payload(size, seq) };
                tx.send(Message::binary(payload.clone())).await?;
                match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                    Ok(Some(Ok(Message::Binary(echo)))) if echo[..] == payload[..] => count += 1,
                    _ => return Err::<_, Error>(format!("connection {i}: no echo, or a wrong one").into()),
                }
            }
            Ok((count, (tx, rx)))
        }));
    }
    let mut total = 0;
    let mut sockets = Vec::new();
    for handle in handles {
        let (count, pair) = handle.await??;
        total += count;
        sockets.push(pair);
    }
    Ok((sockets, total))
}

async fn idle(args: &[String]) -> Result<(), Error> {
    let url = args[0].clone();
    let conns: usize = args[1].parse()?;
    let offer_arg = args[2].clone();
    let deflate = offer(&offer_arg)?;
    let pid = &args[3];
    let size: usize = args.get(4).map_or(Ok(4096), |s| s.parse())?;
    let wait: f64 = args.get(5).map_or(Ok(2.0), |s| s.parse())?;
    let before = vm_rss(pid)?;
    let mut sockets = Vec::with_capacity(conns);
    let mut agreed = None;
    for i in 0..conns {
        let (tx, mut rx) = connect(&url, deflate).await?.split();
        agreed = tx.deflate().map(|p| p.to_header());
        let payload = json_payload(size, i as u64);
        tx.send(Message::binary(payload.clone())).await?;
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Ok(Message::Binary(echo)))) if echo[..] == payload[..] => {}
            _ => return Err(format!("connection {i}: no echo").into()),
        }
        sockets.push((tx, rx));
    }
    // Each connection keeps a reader (it answers the server's heartbeat pings as they are
    // read) and reports the text messages it gets.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::with_capacity(conns);
    for (i, (tx, mut rx)) in sockets.into_iter().enumerate() {
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = rx.recv().await {
                if message.is_text() {
                    let _ = seen_tx.send(i);
                }
            }
        });
        senders.push(tx);
    }
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let after = vm_rss(pid)?;
    // Every connection is still there.
    for tx in &senders {
        tx.send(Message::text("still there?")).await?;
    }
    for _ in 0..conns {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .map_err(|_| "a connection did not answer after idling")?;
    }
    println!(
        "{{\"mode\":\"idle\",\"url\":\"{url}\",\"offer\":\"{offer_arg}\",\"agreed\":{},\"conns\":{conns},\"message_size\":{size},\"rss_before_kib\":{},\"rss_after_kib\":{},\"bytes_per_conn\":{:.0}}}",
        agreed.map_or("null".to_owned(), |h| format!("\"{h}\"")),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) as f64 / conns as f64,
    );
    for tx in &senders {
        let _ = tx.close(zapsocket::CloseCode::NORMAL, "").await;
    }
    Ok(())
}

/// The server's resident memory, in bytes (VmRSS of /proc/PID/status).
fn vm_rss(pid: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    let kib: u64 = line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?;
    Ok(kib * 1024)
}

/// The server's CPU time (user + system), in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: &str) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
fn ticks_per_second() -> f64 {
    100.0
}
