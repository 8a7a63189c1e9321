//! `zap bench`: a load generator for any WebSocket server.
//!
//! Four modes, each checking every answer (a wrong answer fails the run, it is not a
//! number): `echo` (C connections, messages of S bytes, P in flight on each, each echo
//! compared byte for byte and in order), `broadcast` (C subscribers and one publisher;
//! every subscriber must get every message, in order), `connect` (handshakes per second,
//! and the server's memory per idle connection given its PID), and `realtime` (events to
//! a room of the realtime protocol, as `broadcast`). A progress line each second on
//! stderr; a summary (or `--json`) on stdout; exit status 1 for a failed run.

mod common;
mod connect;
mod echo;
mod fanout;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{Value, json};

use self::common::{parse_seconds, parse_size, print_human};
use self::fanout::Realtime;

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
        Mode::Echo(a) => (a.common.clone(), echo::echo(a).await),
        Mode::Broadcast(a) => (a.common.clone(), fanout::fanout(a, None).await),
        Mode::Realtime(a) => {
            let target = Realtime { room: a.room, event: a.event };
            (a.fanout.common.clone(), fanout::fanout(a.fanout, Some(target)).await)
        }
        Mode::Connect(a) => (a.common.clone(), connect::connect(a).await),
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
