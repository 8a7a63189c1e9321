//! `zap bench broadcast` and `zap bench realtime`: one publisher, C subscribers, every
//! message checked at every subscriber.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use zapsocket::{CloseCode, Message, WebSocket};

use super::common::*;
use super::*;

/// The realtime protocol's room and event, for `realtime`.
pub(super) struct Realtime {
    pub(super) room: String,
    pub(super) event: String,
}

struct FanoutRun {
    /// Per sequence number: when it was published (ns after `origin`), and how many
    /// subscribers got it.
    published: Vec<AtomicU64>,
    received: Vec<AtomicU32>,
    origin: Instant,
    subscribers: u32,
    /// Permits for messages to publish (the window).
    window: Semaphore,
    /// Publish → the last subscriber, per message.
    fanout: Mutex<Histogram<u64>>,
    last_delivery: Mutex<Instant>,
    failed: Mutex<Option<String>>,
    size: usize,
    filler: Bytes,
}

impl FanoutRun {
    fn fail(&self, error: String) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
        // Unblock the publisher.
        self.window.close();
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub(super) async fn fanout(args: FanoutArgs, realtime: Option<Realtime>) -> Outcome {
    let mode = if realtime.is_some() { "realtime" } else { "broadcast" };
    let fail = |e: String| Failure::new(mode, e);
    if args.connections == 0 || args.window == 0 {
        return Err(fail("--connections and --window must be at least 1".into()));
    }
    if args.size < SEQ_DIGITS {
        return Err(fail(format!("--size must be at least {SEQ_DIGITS} (the sequence number)")));
    }
    let progress = Progress::new(&args.common);
    let mut builder = builder(&args.common).map_err(fail)?;
    if realtime.is_some() && args.common.protocols.is_empty() {
        builder = builder.protocol(zapsocket_realtime::SUBPROTOCOL);
    }
    let n = args.connections;
    let (mut sockets, connect_hist, _) =
        open_all(&builder, &args.common.url, n + 1, args.common.concurrency, &progress)
            .await
            .map_err(fail)?;
    if let Some(target) = &realtime {
        join_all(&mut sockets, target, args.common.concurrency).await.map_err(fail)?;
    }
    let publisher = sockets.remove(0);
    let run = Arc::new(FanoutRun {
        published: (0..=args.messages).map(|_| AtomicU64::new(0)).collect(),
        received: (0..=args.messages).map(|_| AtomicU32::new(0)).collect(),
        origin: Instant::now(),
        subscribers: n as u32,
        window: Semaphore::new(0),
        fanout: Mutex::new(histogram()),
        last_delivery: Mutex::new(Instant::now()),
        failed: Mutex::new(None),
        size: args.size,
        filler: filler(args.size),
    });
    let realtime = realtime.map(Arc::new);
    let subscribers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(subscriber(i, ws, run.clone(), realtime.clone())))
        .collect();
    let (ptx, mut prx) = publisher.split();
    // The publisher's own copies (if the server sends them) are read and let go.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = prx.recv().await {} });

    let publish = |seq: usize| {
        let run = &run;
        let ptx = &ptx;
        let realtime = &realtime;
        async move {
            let data = payload(&run.filler, seq as u64, run.size);
            let message = match realtime.as_deref() {
                None => Message::binary(data),
                Some(target) => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    let data = json!({ "text": format!("#{text}"), "room": target.room });
                    Message::text(json!({ "event": target.event, "data": data }).to_string())
                }
            };
            run.published[seq].store(run.origin.elapsed().as_nanos() as u64, Relaxed);
            match zapsocket::time::timeout(patience(), ptx.send(message)).await {
                Ok(result) => result.map_err(|e| format!("the publisher's send failed: {e}")),
                Err(_) => {
                    Err(format!("the server took none of message {seq} in {} s", patience().as_secs_f64()))
                }
            }
        }
    };
    // Warm-up: message 0 reaches everyone.
    publish(0).await.map_err(fail)?;
    wait_delivered(&run, 0).await.map_err(fail)?;
    let cpu_before = server_cpu(args.common.server_pid);
    let start = Instant::now();
    run.window.add_permits(args.window);
    for seq in 1..=args.messages {
        // A message some subscriber never gets keeps its slot: bounded like the rest.
        match zapsocket::time::timeout(patience(), run.window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => break,
            Err(_) => {
                let oldest =
                    (1..seq).find(|&s| run.received[s].load(Relaxed) < run.subscribers).unwrap_or(seq);
                wait_delivered(&run, oldest).await.map_err(fail)?;
                return Err(fail(format!("no window slot came back within {} s", patience().as_secs_f64())));
            }
        }
        publish(seq).await.map_err(fail)?;
        progress.tick(|| {
            let delivered = run.received.iter().skip(1).map(|r| u64::from(r.load(Relaxed))).sum::<u64>();
            format!("{seq} of {} published, {delivered} deliveries", args.messages)
        });
    }
    if let Some(error) = run.failure() {
        return Err(fail(error));
    }
    wait_delivered(&run, args.messages).await.map_err(fail)?;
    let cpu_after = server_cpu(args.common.server_pid);
    let elapsed = run.last_delivery.lock().unwrap_or_else(|p| p.into_inner()).duration_since(start);
    progress.done();
    let _ = ptx.close(CloseCode::NORMAL, "").await;
    let mut delivery_hist = histogram();
    for task in subscribers {
        if let Ok(Ok(h)) = task.await {
            delivery_hist.add(&h).unwrap_or_default();
        }
    }
    drain.abort();
    if let Some(error) = run.failure() {
        return Err(fail(error));
    }
    let deliveries = (args.messages * n) as u64;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let fanout = run.fanout.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(json!({
        "tool": "zap bench",
        "mode": mode,
        "ok": true,
        "url": args.common.url,
        "subscribers": n,
        "size": args.size,
        "messages": args.messages,
        "window": args.window,
        "seconds": seconds,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries as f64 / seconds,
        "fanout_latency_us": latency(&fanout),
        "delivery_latency_us": latency(&delivery_hist),
        "connect_latency_us": latency(&connect_hist),
        "server_cpu_us_per_delivery": cpu_per(cpu_before, cpu_after, deliveries),
    }))
}

/// Waits until message `seq` reached every subscriber, at most `--timeout`.
async fn wait_delivered(run: &FanoutRun, seq: usize) -> Result<(), String> {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(error) = run.failure() {
            return Err(error);
        }
        let got = run.received[seq].load(Relaxed);
        if got >= run.subscribers {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "message {seq} reached {got} of {} subscribers within {} s",
                run.subscribers,
                patience().as_secs_f64()
            ));
        }
        zapsocket::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Joins every socket to the room (the realtime protocol's `$join`, with an ack).
async fn join_all(sockets: &mut [WebSocket], target: &Realtime, concurrency: usize) -> Result<(), String> {
    let request = json!({ "event": "$join", "data": { "room": target.room }, "ack": 1 }).to_string();
    let joins = futures_util::stream::iter(sockets.iter_mut().enumerate())
        .map(|(i, ws)| {
            let request = request.clone();
            async move {
                ws.send(request).await.map_err(|e| format!("connection {}: $join: {e}", i + 1))?;
                let deadline = Instant::now() + patience();
                loop {
                    let message = match zapsocket::time::timeout_at(deadline, ws.recv()).await {
                        Ok(Some(Ok(message))) => message,
                        Ok(Some(Err(e))) => return Err(format!("connection {}: {e}", i + 1)),
                        Ok(None) => return Err(format!("connection {}: closed before joining", i + 1)),
                        Err(_) => return Err(format!("connection {}: no reply to $join", i + 1)),
                    };
                    let Some(text) = message.as_text() else { continue };
                    let Ok(value) = serde_json::from_str::<Value>(text) else {
                        return Err(format!("connection {}: not JSON: {}", i + 1, preview(text.as_bytes())));
                    };
                    if value["reply"] == 1 {
                        if value.get("error").is_some_and(|e| !e.is_null()) {
                            return Err(format!("connection {}: $join refused: {}", i + 1, value["error"]));
                        }
                        return Ok(());
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    futures_util::pin_mut!(joins);
    while let Some(result) = joins.next().await {
        result?;
    }
    Ok(())
}

/// One subscriber: checks that every message arrives once, in order, intact.
async fn subscriber(
    index: usize,
    mut ws: WebSocket,
    run: Arc<FanoutRun>,
    realtime: Option<Arc<Realtime>>,
) -> Result<Histogram<u64>, String> {
    let who = format!("subscriber {}", index + 1);
    let mut hist = histogram();
    let mut next = 0usize;
    let last = run.published.len() - 1;
    // Made once, not per message received.
    let prefix = realtime.as_ref().map(|target| event_prefix(&target.event));
    while next <= last {
        let message = match ws.recv().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return fail_with(&run, format!("{who}: {e}")),
            None => {
                return fail_with(&run, format!("{who}: the server closed the connection at message {next}"));
            }
        };
        let data = match &realtime {
            None if message.is_data() => message.as_bytes(),
            None => continue,
            Some(_) => match realtime_payload(&message, prefix.as_deref().unwrap_or_default()) {
                Some(data) => data,
                None => continue,
            },
        };
        let Some(seq) = seq_of(data) else {
            return fail_with(&run, format!("{who}: a message without a sequence number: {}", preview(data)));
        };
        if seq != next as u64 {
            return fail_with(&run, format!("{who}: message {seq} arrived where {next} was expected"));
        }
        if !is_payload(data, &run.filler, seq, run.size) {
            return fail_with(
                &run,
                format!("{who}: message {seq} differs from what was sent: got {}", preview(data)),
            );
        }
        let now = Instant::now();
        let published = run.origin + Duration::from_nanos(run.published[next].load(Relaxed));
        if next > 0 {
            record(&mut hist, now.saturating_duration_since(published));
        }
        if run.received[next].fetch_add(1, Relaxed) + 1 == run.subscribers {
            *run.last_delivery.lock().unwrap_or_else(|p| p.into_inner()) = now;
            if next > 0 {
                record(
                    &mut run.fanout.lock().unwrap_or_else(|p| p.into_inner()),
                    now.saturating_duration_since(published),
                );
                // The warm-up message holds no slot of the window.
                run.window.add_permits(1);
            }
        }
        next += 1;
    }
    Ok(hist)
}

fn fail_with(run: &FanoutRun, error: String) -> Result<Histogram<u64>, String> {
    run.fail(error.clone());
    Err(error)
}

/// How an envelope of `event` starts.
fn event_prefix(event: &str) -> String {
    format!("{{\"event\":{}", Value::String(event.to_owned()))
}

/// The payload a realtime event carries: the first string in it that starts with `#`
/// (the publisher's `text`), if the envelope starts with `prefix` (see `event_prefix`).
fn realtime_payload<'a>(message: &'a Message, prefix: &str) -> Option<&'a [u8]> {
    let text = message.as_text()?;
    if !text.starts_with(prefix) {
        return None;
    }
    let start = text.find("\"#")? + 2;
    let end = start + text[start..].find('"')?;
    Some(&text.as_bytes()[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_payload_is_found_after_the_marker() {
        let m = Message::text(r##"{"event":"chat","data":{"from":"a","text":"#00ffabc","room":"bench"}}"##);
        assert_eq!(realtime_payload(&m, &event_prefix("chat")), Some(&b"00ffabc"[..]));
        assert_eq!(realtime_payload(&m, &event_prefix("other")), None);
    }
}
