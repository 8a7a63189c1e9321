//! `zap bench echo`: connections that keep messages in flight and check every echo.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use zapsocket::{CloseCode, WebSocket, WebSocketReceiver, WebSocketSender};

use super::common::*;
use super::*;

/// The phases of an echo run, as the connections see them.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const DRAIN: u8 = 2;

struct EchoRun {
    phase: AtomicU8,
    measured: AtomicU64,
    /// Set by the first connection that fails; the others stop.
    failed: AtomicBool,
    size: usize,
    pipeline: usize,
    text: bool,
    filler: Bytes,
}

pub(super) async fn echo(args: EchoArgs) -> Outcome {
    const MODE: &str = "echo";
    let fail = |e: String| Failure::new(MODE, e);
    if args.connections == 0 || args.pipeline == 0 {
        return Err(fail("--connections and --pipeline must be at least 1".into()));
    }
    let progress = Progress::new(&args.common);
    let builder = builder(&args.common).map_err(fail)?;
    let (sockets, connect_hist, _) =
        open_all(&builder, &args.common.url, args.connections, args.common.concurrency, &progress)
            .await
            .map_err(fail)?;
    let run = Arc::new(EchoRun {
        phase: AtomicU8::new(WARMUP),
        measured: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        size: args.size,
        pipeline: args.pipeline,
        text: args.text,
        filler: filler(args.size),
    });
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(echo_connection(i, ws, run.clone())))
        .collect();

    zapsocket::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    run.phase.store(MEASURE, Relaxed);
    let cpu_before = server_cpu(args.common.server_pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration.max(0.001));
    let mut last = (start, 0u64);
    while Instant::now() < end && !run.failed.load(Relaxed) {
        zapsocket::time::sleep_until(end.min(Instant::now() + Duration::from_millis(250))).await;
        let now = Instant::now();
        let count = run.measured.load(Relaxed);
        if now.duration_since(last.0) >= Duration::from_secs(1) {
            let rate = (count - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            progress.tick(|| format!("{rate:>12.0} msgs/s"));
            last = (now, count);
        }
    }
    let messages = run.measured.load(Relaxed);
    let elapsed = start.elapsed();
    let cpu_after = server_cpu(args.common.server_pid);
    run.phase.store(DRAIN, Relaxed);
    progress.done();

    let mut hist = histogram();
    let mut first_error = None;
    let mut failed = 0usize;
    for task in tasks {
        match task.await {
            Ok(Ok(h)) => hist.add(&h).unwrap_or_default(),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("a connection's task failed: {e}"));
            }
        }
    }
    if let Some(error) = first_error {
        let more =
            if failed > 1 { format!(" (and {} more connections failed)", failed - 1) } else { String::new() };
        return Err(fail(format!("{error}{more}")));
    }
    if messages == 0 {
        return Err(fail(format!("no echo arrived in {:.1} s", elapsed.as_secs_f64())));
    }
    let seconds = elapsed.as_secs_f64();
    Ok(json!({
        "tool": "zap bench",
        "mode": MODE,
        "ok": true,
        "url": args.common.url,
        "connections": args.connections,
        "size": args.size,
        "pipeline": args.pipeline,
        "text": args.text,
        "seconds": seconds,
        "messages": messages,
        "messages_per_s": messages as f64 / seconds,
        "mb_per_s": (messages as f64 * args.size as f64) / seconds / 1e6,
        "latency_us": latency(&hist),
        "connect_latency_us": latency(&connect_hist),
        "server_cpu_us_per_message": cpu_per(cpu_before, cpu_after, messages),
    }))
}

/// One connection of an echo run: keeps `pipeline` messages in flight and checks every
/// echo against what was sent, in order; after the measured time, waits for the echoes
/// still in flight, then closes.
async fn echo_connection(index: usize, ws: WebSocket, run: Arc<EchoRun>) -> Result<Histogram<u64>, String> {
    let (tx, mut rx) = ws.split();
    let mut hist = histogram();
    let result = echo_loop(index, &tx, &mut rx, &run, &mut hist).await;
    if result.is_err() {
        run.failed.store(true, Relaxed);
    }
    let _ = tx.close(CloseCode::NORMAL, "").await;
    result.map(|()| hist)
}

async fn echo_loop(
    index: usize,
    tx: &WebSocketSender,
    rx: &mut WebSocketReceiver,
    run: &EchoRun,
    hist: &mut Histogram<u64>,
) -> Result<(), String> {
    let who = format!("connection {}", index + 1);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(run.pipeline);
    let mut next = 0u64;
    // The time is taken before queueing: a wait for room in the send queue is latency.
    // A send that cannot get room within `--timeout` (a server that stopped reading) fails.
    let send = move |seq: u64| {
        let data = payload(&run.filler, seq, run.size);
        let sent = Instant::now();
        async move {
            match zapsocket::time::timeout(patience(), tx.queue(message(data, run.text))).await {
                Ok(Ok(())) => Ok((seq, sent)),
                Ok(Err(e)) => Err(format!("send failed: {e}")),
                Err(_) => {
                    Err(format!("the server took none of message {seq} in {} s", patience().as_secs_f64()))
                }
            }
        }
    };
    for _ in 0..run.pipeline {
        in_flight.push_back(send(next).await.map_err(|e| format!("{who}: {e}"))?);
        next += 1;
    }
    let mut drain_deadline = None;
    let mut waiting_since = Instant::now();
    loop {
        if run.failed.load(Relaxed) {
            return Ok(());
        }
        let phase = run.phase.load(Relaxed);
        if phase == DRAIN && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + GRACE);
        }
        let deadline = drain_deadline.unwrap_or(waiting_since + patience());
        // In slices, so that the end of the run or another connection's failure is
        // seen without waiting for this connection's next echo (`recv` is cancel safe).
        let slice = deadline.min(Instant::now() + SLICE);
        let received = match zapsocket::time::timeout_at(slice, rx.recv()).await {
            Ok(received) => received,
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => {
                return Err(format!(
                    "{who}: {} echo(es) missing after waiting {} s (message {} was the oldest sent)",
                    in_flight.len(),
                    if drain_deadline.is_some() { GRACE.as_secs_f64() } else { patience().as_secs_f64() },
                    in_flight.front().map_or(0, |f| f.0),
                ));
            }
        };
        waiting_since = Instant::now();
        let message = match received {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(format!("{who}: {e}")),
            None => {
                let close = rx.close_frame().map(|f| format!(" ({} {:?})", f.code.0, f.reason));
                return Err(format!(
                    "{who}: the server closed the connection{} with {} echo(es) outstanding",
                    close.unwrap_or_default(),
                    in_flight.len()
                ));
            }
        };
        if !message.is_data() {
            continue;
        }
        let Some((seq, sent)) = in_flight.pop_front() else {
            return Err(format!(
                "{who}: a message arrived with no echo outstanding: {}",
                preview(message.as_bytes())
            ));
        };
        if message.is_text() != run.text {
            let (want, got) = if run.text { ("text", "binary") } else { ("binary", "text") };
            return Err(format!("{who}: message {seq} was sent as {want} and came back as {got}"));
        }
        if !is_payload(message.as_bytes(), &run.filler, seq, run.size) {
            let expected = payload(&run.filler, seq, run.size);
            return Err(format!(
                "{who}: the echo of message {seq} differs from what was sent: got {}, expected {}",
                preview(message.as_bytes()),
                preview(&expected)
            ));
        }
        let phase = run.phase.load(Relaxed);
        if phase == MEASURE {
            record(hist, sent.elapsed());
            run.measured.fetch_add(1, Relaxed);
        }
        if phase == DRAIN {
            if in_flight.is_empty() {
                return Ok(());
            }
        } else {
            in_flight.push_back(send(next).await.map_err(|e| format!("{who}: {e}"))?);
            next += 1;
        }
    }
}
