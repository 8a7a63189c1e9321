//! What every mode of `zap bench` uses: the summary, sizes and durations, latency
//! histograms, the server's figures from /proc, connecting, progress, payloads.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use zapsocket::{ClientBuilder, Message, WebSocket};

use super::*;

/// The summary's figures in the order shown, with their labels.
pub(super) const FIGURES: &[(&str, &str)] = &[
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

pub(super) fn print_human(report: &Value) {
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

pub(super) fn human(value: &Value) -> String {
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
pub(super) fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds from 0 to 86400")),
    }
}

/// `1KiB`, `64 KiB`, `1MiB`, `1000`, `2kB`.
pub(super) fn parse_size(text: &str) -> Result<usize, String> {
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
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

pub(super) fn record(hist: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1);
    hist.saturating_record(micros);
}

pub(super) fn latency(hist: &Histogram<u64>) -> Value {
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
pub(super) fn server_cpu(pid: Option<u32>) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", pid?)).ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// The server's resident memory (bytes).
pub(super) fn server_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU µs per unit of work between two readings, if both were taken.
pub(super) fn cpu_per(before: Option<u64>, after: Option<u64>, units: u64) -> Value {
    match (before, after) {
        (Some(b), Some(a)) if units > 0 => json!(a.saturating_sub(b) as f64 / 1000.0 / units as f64),
        _ => Value::Null,
    }
}

pub(super) fn builder(common: &Common) -> Result<ClientBuilder, String> {
    let ca = common.ca.as_deref();
    let builder = crate::connect::client_builder(&common.headers, &common.protocols, common.deflate, ca)?;
    // Direct, whatever HTTP_PROXY says: a bench measures the server, not a proxy.
    Ok(builder.no_proxy().connect_timeout(patience()))
}

/// Opens `n` connections to `url`, `concurrency` handshakes at a time, recording each
/// handshake's time; the first failure ends it with a message.
pub(super) async fn open_all(
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
pub(super) struct Progress {
    on: bool,
    last: Mutex<Instant>,
    start: Instant,
}

impl Progress {
    pub(super) fn new(common: &Common) -> Self {
        let now = Instant::now();
        Progress { on: !common.quiet, last: Mutex::new(now), start: now }
    }

    pub(super) fn tick(&self, line: impl FnOnce() -> String) {
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

    pub(super) fn done(&self) {
        if self.on && std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

/// The payload of message `seq`: its number in the first (up to) 16 bytes as hex, then
/// a pattern; ASCII, so valid as text too.
pub(super) fn payload(filler: &Bytes, seq: u64, size: usize) -> Bytes {
    let digits = hex_digits(seq);
    let head = size.min(SEQ_DIGITS);
    let mut buf = BytesMut::with_capacity(size);
    buf.extend_from_slice(&digits[SEQ_DIGITS - head..]);
    buf.extend_from_slice(&filler[head..size]);
    buf.freeze()
}

/// `seq` as 16 lowercase hex digits (no formatting machinery: this runs per message).
pub(super) fn hex_digits(seq: u64) -> [u8; SEQ_DIGITS] {
    let mut digits = [0u8; SEQ_DIGITS];
    for (i, d) in digits.iter_mut().enumerate() {
        let nibble = (seq >> (4 * (SEQ_DIGITS - 1 - i))) & 0xf;
        *d = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// Whether `data` is the payload of message `seq`, compared in place.
pub(super) fn is_payload(data: &[u8], filler: &Bytes, seq: u64, size: usize) -> bool {
    let head = size.min(SEQ_DIGITS);
    data.len() == size
        && data[..head] == hex_digits(seq)[SEQ_DIGITS - head..]
        && data[head..] == filler[head..size]
}

pub(super) fn filler(size: usize) -> Bytes {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>().into()
}

pub(super) fn message(data: Bytes, text: bool) -> Message {
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
pub(super) fn seq_of(data: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(data.get(..SEQ_DIGITS)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// A short, readable view of what came instead of what was expected.
pub(super) fn preview(data: &[u8]) -> String {
    let shown = &data[..data.len().min(24)];
    let text = String::from_utf8_lossy(shown);
    if data.len() > shown.len() {
        format!("{text:?}... ({} bytes)", data.len())
    } else {
        format!("{text:?} ({} bytes)", data.len())
    }
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
}
