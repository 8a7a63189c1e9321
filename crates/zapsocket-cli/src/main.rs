//! `zap`: run a WebSocket server (`zap serve`), talk to one (`zap connect`) or load-test
//! one (`zap bench`).
//!
//! ```text
//! zap serve --port 8080                        # echo on / and /echo, relay on /broadcast, realtime on /ws
//! zap connect ws://127.0.0.1:8080              # like wscat: type lines, see replies
//! zap bench echo ws://127.0.0.1:8080 -c 100    # load test: every echo checked, p50/p99 latency
//! ```

mod admin;
mod bench;
mod connect;
mod realtime;
mod serve;
mod serve_reactor;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run a WebSocket server or talk to one.
#[derive(Parser, Debug)]
#[command(name = "zap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve WebSocket endpoints: echo on `/` and `/echo`, relay to all on `/broadcast`.
    Serve(Box<serve::ServeArgs>),
    /// Connect to a WebSocket server, like wscat: send lines, print messages.
    Connect(connect::ConnectArgs),
    /// Load-test any WebSocket server: echo, broadcast, connect or realtime room events;
    /// every answer is checked.
    Bench(bench::BenchArgs),
}

/// With the `jemalloc` feature (the default), the process's allocator: it gives the memory
/// of ended connections back to the system, where glibc's malloc kept a server's peak
/// (docs/BENCHMARKS.md, "Churn and soak").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // jemalloc purges freed pages as it allocates; its background thread also does it
    // while the server is idle (the buffers of connections gone quiet, after about 10 s).
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!(
            "zap: cannot start jemalloc's background thread ({e}); freed memory is returned more slowly"
        );
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Connect(args) = &mut cli.command {
        args.order_sends(matches.subcommand_matches("connect"));
    }
    // The Redis client (redis-rs) times its commands with tokio's timer.
    let timers = matches!(&cli.command, Command::Serve(args) if args.uses_redis());
    let runtime = match runtime(timers) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    })
}

/// A multi-thread runtime with one worker per CPU this process may use; with a single
/// CPU (say under `taskset`), a current-thread runtime, which does the same work without
/// the work-stealing machinery. No tokio timer unless `timers` (the Redis client needs
/// it): zapsocket's timers have their own thread (`zapsocket::time`), and without
/// tokio's every park of the runtime is cheaper.
fn runtime(timers: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(cpus);
        builder
    };
    builder.enable_io();
    if timers {
        builder.enable_time();
    }
    builder.build()
}

/// Where log lines go.
#[derive(Clone, Copy, Debug)]
enum Output {
    /// A server's log is its output.
    Stdout,
    /// A client keeps stdout for the messages it receives.
    Stderr,
}

/// Logs with `tracing`, filtered by `RUST_LOG` (default: `default_level`), in color only
/// on a terminal.
fn init_logging(default_level: &str, output: Output) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match output {
        Output::Stdout => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        Output::Stderr => {
            builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init()
        }
    }
}
