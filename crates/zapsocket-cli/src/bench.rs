//! `zap bench`: a load generator for any WebSocket server.
//!
//! Four modes, each checking every answer (a wrong answer fails the run, it is not a
//! number): `echo` (C connections, messages of S bytes, P in flight on each, each echo
//! compared byte for byte and in order), `broadcast` (C subscribers and one publisher;
//! every subscriber must get every message, in order), `connect` (handshakes per second,
//! and the server's memory per idle connection given its PID), and `realtime` (events to
//! a room of the realtime protocol, as `broadcast`). A progress line each second on
//! stderr; a summary (or `--json`) on stdout; exit status 1 for a failed run.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use zapsocket::{Client, ClientBuilder, CloseCode, Message, WebSocket, WebSocketReceiver, WebSocketSender};

/// Options of `zap bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// C connections each send messages of S bytes and check every echo (P in flight).
    Echo(EchoArgs),
    /// C subscribers and one publisher on one URL: every message must reach every
    /// subscriber, in order (the server relays each message to all its clients).
    /// Deliveries count the subscribers' copies, not the publisher's own.
    Broadcast(FanoutArgs),
    /// Opens C connections (K handshakes in flight), holds them idle, and reports
    /// handshakes per second and, with --server-pid, the server's memory per connection.
    Connect(ConnectArgs),
    /// Events of the realtime protocol to a room: C members join ROOM, one of them emits
    /// EVENT with {"text", "room"} (as `zap serve`'s chat relays it), every member must
    /// get every event, in order.
    Realtime(RealtimeArgs),
}

/// What every mode takes.
#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// The server's URL, e.g. `ws://127.0.0.1:8080/echo`.
    url: String,
    /// The server's process id: also report its CPU time per message (from
    /// /proc/PID/task/*/schedstat) and, in `connect`, its memory per idle connection.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print the summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(short, long)]
    quiet: bool,
    /// A request header, `'Name: value'` (may be repeated).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer (may be repeated).
    #[arg(long = "protocol", value_name = "PROTOCOL")]
    protocols: Vec<String>,
    /// Offer permessage-deflate (off by default: the bench measures the server, not zlib).
    #[arg(long)]
    deflate: bool,
    /// For wss://: also trust the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "PATH")]
    ca: Option<std::path::PathBuf>,
    /// Handshakes in flight while connecting.
    #[arg(short = 'k', long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait, at most, for a handshake, a send, an echo, or a message to reach
    /// every subscriber: past it the run fails.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    timeout: f64,
}

#[derive(clap::Args, Debug)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(short, long, default_value_t = 100)]
    connections: usize,
    /// Message size: bytes, or with a unit (`1KiB`, `64KiB`, `1MiB`).
    #[arg(short, long, default_value = "16", value_parser = parse_size)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(short, long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds measured.
    #[arg(short, long, default_value_t = 5.0, value_parser = parse_seconds)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(short, long, default_value_t = 1.0, value_parser = parse_seconds)]
    warmup: f64,
    /// Send text messages (the server validates UTF-8) instead of binary.
    #[arg(long)]
    text: bool,
}

#[derive(clap::Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribers (the publisher comes on top).
    #[arg(short, long, default_value_t = 1000)]
    connections: usize,
    /// Message size: bytes, or with a unit (`1KiB`); at least 16.
    #[arg(short, long, default_value = "64", value_parser = parse_size)]
    size: usize,
    /// Messages published (after one warm-up message).
    #[arg(short, long, default_value_t = 200)]
    messages: usize,
    /// Messages not yet delivered to every subscriber, at most: 1 shows the fan-out
    /// latency, 16 the throughput.
    #[arg(long, default_value_t = 1)]
    window: usize,
}

#[derive(clap::Args, Debug)]
struct RealtimeArgs {
    #[command(flatten)]
    fanout: FanoutArgs,
    /// The room the members join.
    #[arg(long, default_value = "bench")]
    room: String,
    /// The event the publisher emits and the members receive.
    #[arg(long, default_value = "chat")]
    event: String,
}

#[derive(clap::Args, Debug)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Connections.
    #[arg(short, long, default_value_t = 1000)]
    connections: usize,
    /// Seconds the connections stay open and idle before the server's memory is read.
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    hold: f64,
    /// Then send one message on every connection and check its echo (for echo servers).
    #[arg(long)]
    verify: bool,
}

/// How long, at most, for one handshake, one send, one echo or one message's fan-out, in
/// milliseconds (`--timeout`, set once at the start of a run).
static PATIENCE_MS: AtomicU64 = AtomicU64::new(30_000);

fn patience() -> Duration {
    Duration::from_millis(PATIENCE_MS.load(Relaxed))
}

/// After the measured time, how long the echoes still in flight may take.
const GRACE: Duration = Duration::from_secs(3);
/// How often a waiting connection looks at the run's phase.
const SLICE: Duration = Duration::from_millis(100);
/// The bytes of a message that carry its sequence number (hex).
const SEQ_DIGITS: usize = 16;

/// Runs the mode; prints the summary; the exit status tells whether the run was valid.
pub(crate) async fn run(args: BenchArgs) -> ExitCode {
    crate::init_logging("error", crate::Output::Stderr);
    let common = match &args.mode {
        Mode::Echo(a) => &a.common,
        Mode::Broadcast(a) => &a.common,
        Mode::Realtime(a) => &a.fanout.common,
        Mode::Connect(a) => &a.common,
    };
    PATIENCE_MS.store((common.timeout * 1000.0).max(1.0) as u64, Relaxed);
    let (common, result) = match args.mode {
        Mode::Echo(a) => (a.common.clone(), echo(a).await),
        Mode::Broadcast(a) => (a.common.clone(), fanout(a, None).await),
        Mode::Realtime(a) => {
            let target = Realtime { room: a.room, event: a.event };
            (a.fanout.common.clone(), fanout(a.fanout, Some(target)).await)
        }
        Mode::Connect(a) => (a.common.clone(), connect(a).await),
    };
    let (report, ok) = match result {
        Ok(report) => (report, true),
        Err(failure) => (failure.report(), false),
    };
    if common.json {
        println!("{report}");
    } else {
        print_human(&report);
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Why a run is invalid, with what was measured until then.
struct Failure {
    mode: &'static str,
    error: String,
}

impl Failure {
    fn new(mode: &'static str, error: impl Into<String>) -> Self {
        Failure { mode, error: error.into() }
    }

    fn report(&self) -> Value {
        json!({ "tool": "zap bench", "mode": self.mode, "ok": false, "error": self.error })
    }
}

type Outcome = Result<Value, Failure>;

/// The summary's figures in the order shown, with their labels.
const FIGURES: &[(&str, &str)] = &[
    ("url", "url"),
    ("connections", "connections"),
    ("subscribers", "subscribers"),
    ("concurrency", "handshakes in flight"),
    ("size", "message bytes"),
    ("text", "text messages"),
    ("pipeline", "in flight per connection"),
    ("window", "window (messages)"),
    ("seconds", "seconds measured"),
    ("messages", "messages"),
    ("messages_per_s", "messages/s"),
    ("mb_per_s", "MB/s (one way)"),
    ("deliveries", "deliveries"),
    ("deliveries_per_s", "deliveries/s"),
    ("handshakes_per_s", "handshakes/s"),
    ("latency_us", "latency (us)"),
    ("fanout_latency_us", "publish -> last (us)"),
    ("delivery_latency_us", "publish -> each (us)"),
    ("connect_latency_us", "handshake (us)"),
    ("server_cpu_us_per_message", "server CPU us/message"),
    ("server_cpu_us_per_delivery", "server CPU us/delivery"),
    ("server_cpu_us_per_handshake", "server CPU us/handshake"),
    ("server_rss_before", "server RSS before (B)"),
    ("server_rss_after", "server RSS after (B)"),
    ("server_bytes_per_connection", "server bytes/connection"),
    ("verified", "echo verified"),
];

fn print_human(report: &Value) {
    let mode = report["mode"].as_str().unwrap_or("?");
    if report["ok"] == false {
        println!("zap bench {mode}: FAILED: {}", report["error"].as_str().unwrap_or("?"));
        return;
    }
    println!("zap bench {mode}: ok");
    for (key, label) in FIGURES {
        let value = &report[*key];
        let shown = match value {
            Value::Null => continue,
            Value::Object(_) => ["p50", "p99", "max", "mean"]
                .iter()
                .map(|k| format!("{k} {}", human(&value[*k])))
                .collect::<Vec<_>>()
                .join(", "),
            other => human(other),
        };
        println!("  {label:<26} {shown}");
    }
}

fn human(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.abs() >= 100.0 { format!("{f:.0}") } else { format!("{f:.3}") }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Seconds: a finite number from 0 to a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds from 0 to 86400")),
    }
}

/// `1KiB`, `64 KiB`, `1MiB`, `1000`, `2kB`.
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| format!("bad size {text:?}"))?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "kb" => 1000,
        "m" | "mib" => 1024 * 1024,
        "mb" => 1_000_000,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, kB, MB)")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("size {text:?} is too large"))
}

/// A latency histogram in microseconds (1 µs to 1 hour, 3 significant digits).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
    hist.saturating_record(micros);
}

fn latency(hist: &Histogram<u64>) -> Value {
    if hist.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": hist.value_at_quantile(0.5),
        "p99": hist.value_at_quantile(0.99),
        "max": hist.max(),
        "mean": hist.mean().round() as u64,
    })
}

/// The server's CPU time so far (ns), summed over its threads; `None` without a PID.
fn server_cpu(pid: Option<u32>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", pid?)).ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// The server's resident memory (bytes).
fn server_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU µs per unit of work between two readings, if both were taken.
fn cpu_per(before: Option<u64>, after: Option<u64>, units: u64) -> Value {
    match (before, after) {
        (Some(b), Some(a)) if units > 0 => json!(a.saturating_sub(b) as f64 / 1000.0 / units as f64),
        _ => Value::Null,
    }
}

fn builder(common: &Common) -> Result<ClientBuilder, String> {
    let mut builder = Client::builder().connect_timeout(patience());
    for header in &common.headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| format!("bad header {header:?}: expected 'Name: value'"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    for protocol in &common.protocols {
        builder = builder.protocol(protocol.as_str());
    }
    if !common.deflate {
        builder = builder.deflate(None);
    }
    if let Some(path) = &common.ca {
        let ca = zapsocket::Certificate::from_pem_file(path).map_err(|e| format!("--ca: {e}"))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder)
}

/// Opens `n` connections to `url`, `concurrency` handshakes at a time, recording each
/// handshake's time; the first failure ends it with a message.
async fn open_all(
    builder: &ClientBuilder,
    url: &str,
    n: usize,
    concurrency: usize,
    progress: &Progress,
) -> Result<(Vec<WebSocket>, Histogram<u64>, Duration), String> {
    let started = Instant::now();
    let mut hist = histogram();
    let mut sockets = Vec::with_capacity(n);
    let mut attempts = futures_util::stream::iter(0..n)
        .map(|_| {
            let builder = builder.clone();
            async move {
                let start = Instant::now();
                let result = builder.connect(url).await;
                (result, start.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((result, took)) = attempts.next().await {
        let ws = result.map_err(|e| {
            let which = sockets.len() + 1;
            let text = e.to_string();
            if text.contains("Too many open files") {
                format!("connection {which} of {n}: {text} (raise the limit of open files: `ulimit -n`)")
            } else if e.is_handshake() {
                format!("connection {which} of {n}: {text}")
            } else {
                format!("connection {which} of {n} to {url}: {text}")
            }
        })?;
        record(&mut hist, took);
        sockets.push(ws);
        progress.tick(|| format!("{} of {n} connected", sockets.len()));
    }
    Ok((sockets, hist, started.elapsed()))
}

/// A progress line on stderr at most once a second (none with `--quiet`).
struct Progress {
    on: bool,
    last: Mutex<Instant>,
    start: Instant,
}

impl Progress {
    fn new(common: &Common) -> Self {
        let now = Instant::now();
        Progress { on: !common.quiet, last: Mutex::new(now), start: now }
    }

    fn tick(&self, line: impl FnOnce() -> String) {
        if !self.on {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            let end = if std::io::stderr().is_terminal() { "\x1b[K\r" } else { "\n" };
            eprint!("[{:5.1}s] {}{end}", self.start.elapsed().as_secs_f64(), line());
        }
    }

    fn done(&self) {
        if self.on && std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

/// The payload of message `seq`: its number in the first (up to) 16 bytes as hex, then
/// a pattern; ASCII, so valid as text too.
fn payload(filler: &Bytes, seq: u64, size: usize) -> Bytes {
    let digits = hex_digits(seq);
    let head = size.min(SEQ_DIGITS);
    let mut buf = BytesMut::with_capacity(size);
    buf.extend_from_slice(&digits[SEQ_DIGITS - head..]);
    buf.extend_from_slice(&filler[head..size]);
    buf.freeze()
}

/// `seq` as 16 lowercase hex digits (no formatting machinery: this runs per message).
fn hex_digits(seq: u64) -> [u8; SEQ_DIGITS] {
    let mut digits = [0u8; SEQ_DIGITS];
    for (i, d) in digits.iter_mut().enumerate() {
        let nibble = (seq >> (4 * (SEQ_DIGITS - 1 - i))) & 0xf;
        *d = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// Whether `data` is the payload of message `seq`, compared in place.
fn is_payload(data: &[u8], filler: &Bytes, seq: u64, size: usize) -> bool {
    let head = size.min(SEQ_DIGITS);
    data.len() == size
        && data[..head] == hex_digits(seq)[SEQ_DIGITS - head..]
        && data[head..] == filler[head..size]
}

fn filler(size: usize) -> Bytes {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>().into()
}

fn message(data: Bytes, text: bool) -> Message {
    if text {
        // ASCII by construction: valid, and not copied.
        match zapsocket::Utf8Bytes::from_bytes(data) {
            Ok(text) => Message::text(text),
            Err(_) => Message::text(""),
        }
    } else {
        Message::binary(data)
    }
}

/// What a message starting with a sequence number carries.
fn seq_of(data: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(data.get(..SEQ_DIGITS)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// A short, readable view of what came instead of what was expected.
fn preview(data: &[u8]) -> String {
    let shown = &data[..data.len().min(24)];
    let text = String::from_utf8_lossy(shown);
    if data.len() > shown.len() {
        format!("{text:?}... ({} bytes)", data.len())
    } else {
        format!("{text:?} ({} bytes)", data.len())
    }
}

// ---------------------------------------------------------------------------------
// echo

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

async fn echo(args: EchoArgs) -> Outcome {
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

// ---------------------------------------------------------------------------------
// broadcast and realtime

/// The realtime protocol's room and event, for `realtime`.
struct Realtime {
    room: String,
    event: String,
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

async fn fanout(args: FanoutArgs, realtime: Option<Realtime>) -> Outcome {
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
            Some(target) => match realtime_payload(&message, &target.event) {
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

/// The payload a realtime event carries: the first string in it that starts with `#`
/// (the publisher's `text`), if the event is `event`.
fn realtime_payload<'a>(message: &'a Message, event: &str) -> Option<&'a [u8]> {
    let text = message.as_text()?;
    let prefix = format!("{{\"event\":{}", serde_json::to_string(event).ok()?);
    if !text.starts_with(&prefix) {
        return None;
    }
    let start = text.find("\"#")? + 2;
    let end = start + text[start..].find('"')?;
    Some(&text.as_bytes()[start..end])
}

// ---------------------------------------------------------------------------------
// connect

async fn connect(args: ConnectArgs) -> Outcome {
    const MODE: &str = "connect";
    let fail = |e: String| Failure::new(MODE, e);
    let progress = Progress::new(&args.common);
    let builder = builder(&args.common).map_err(fail)?;
    let pid = args.common.server_pid;
    let rss_before = pid.and_then(server_rss);
    let cpu_before = server_cpu(pid);
    let (mut sockets, hist, took) =
        open_all(&builder, &args.common.url, args.connections, args.common.concurrency, &progress)
            .await
            .map_err(fail)?;
    let cpu_after = server_cpu(pid);
    progress.done();
    zapsocket::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let rss_after = pid.and_then(server_rss);
    if let Some(ws) = sockets.iter().find(|ws| ws.ready_state() != zapsocket::ReadyState::Open) {
        let frame = ws.close_frame().map(|f| format!("{} {:?}", f.code.0, f.reason)).unwrap_or_default();
        return Err(fail(format!("the server closed an idle connection ({frame})")));
    }
    if args.verify {
        verify(&mut sockets).await.map_err(fail)?;
    }
    let n = sockets.len();
    let closes = sockets.into_iter().map(|ws| async move { ws.close(CloseCode::NORMAL, "").await });
    futures_util::future::join_all(closes).await;
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if n > 0 => json!((after as f64 - before as f64) / n as f64),
        _ => Value::Null,
    };
    let seconds = took.as_secs_f64().max(1e-9);
    Ok(json!({
        "tool": "zap bench",
        "mode": MODE,
        "ok": true,
        "url": args.common.url,
        "connections": n,
        "concurrency": args.common.concurrency,
        "seconds": seconds,
        "handshakes_per_s": n as f64 / seconds,
        "connect_latency_us": latency(&hist),
        "server_cpu_us_per_handshake": cpu_per(cpu_before, cpu_after, n as u64),
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_bytes_per_connection": per_connection,
        "verified": args.verify,
    }))
}

/// One 16-byte message on every connection, each echo checked.
async fn verify(sockets: &mut [WebSocket]) -> Result<(), String> {
    let filler = filler(SEQ_DIGITS);
    let checks = sockets.iter_mut().enumerate().map(|(i, ws)| {
        let data = payload(&filler, i as u64, SEQ_DIGITS);
        async move {
            ws.send(Message::binary(data.clone())).await.map_err(|e| format!("connection {}: {e}", i + 1))?;
            loop {
                match zapsocket::time::timeout(patience(), ws.recv()).await {
                    Ok(Some(Ok(m))) if m.is_data() && m.as_bytes() == data.as_ref() => return Ok(()),
                    Ok(Some(Ok(m))) if m.is_data() => {
                        return Err(format!("connection {}: wrong echo {}", i + 1, preview(m.as_bytes())));
                    }
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => return Err(format!("connection {}: {e}", i + 1)),
                    Ok(None) => return Err(format!("connection {}: closed before its echo", i + 1)),
                    Err(_) => {
                        return Err(format!(
                            "connection {}: no echo within {} s",
                            i + 1,
                            patience().as_secs_f64()
                        ));
                    }
                }
            }
        }
    });
    for result in futures_util::future::join_all(checks).await {
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64 KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert!(parse_size("1GiB").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
        assert!(
            parse_seconds("inf").is_err() && parse_seconds("NaN").is_err() && parse_seconds("-1").is_err()
        );
    }

    #[test]
    fn payloads_carry_their_sequence_number() {
        let long = filler(64);
        let p = payload(&long, 0x1234, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(seq_of(&p), Some(0x1234));
        assert_ne!(payload(&long, 1, 64), payload(&long, 2, 64));
        // Shorter than the number: its last digits.
        assert_eq!(payload(&filler(4), 0x1234, 4).as_ref(), b"1234");
        assert_eq!(&hex_digits(0x00ff_1234_abcd_0001), b"00ff1234abcd0001");
        assert!(is_payload(&p, &long, 0x1234, 64));
        assert!(!is_payload(&p, &long, 0x1235, 64));
        let mut changed = p.to_vec();
        changed[40] ^= 1;
        assert!(!is_payload(&changed, &long, 0x1234, 64));
        assert!(!is_payload(&p[..63], &long, 0x1234, 64));
    }

    #[test]
    fn realtime_payload_is_found_after_the_marker() {
        let m = Message::text(r##"{"event":"chat","data":{"from":"a","text":"#00ffabc","room":"bench"}}"##);
        assert_eq!(realtime_payload(&m, "chat"), Some(&b"00ffabc"[..]));
        assert_eq!(realtime_payload(&m, "other"), None);
    }
}
