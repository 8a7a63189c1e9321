//! The reactor server (`zapsocket::reactor`): connections owned by one event loop per core,
//! callback handlers. Echoes on every path, and relays every message sent on `/broadcast`
//! to every client of `/broadcast` (the sender included), encoded once: the convention
//! of `../shared/bench` (`compare.sh`), where uWebSockets runs the same two routes.
//!
//! ```text
//! cargo run --release --example reactor_server -- 9001 [--deflate] [--threads N]
//! ```
//!
//! The uWebSockets equivalent:
//!
//! ```cpp
//! app.ws<D>("/broadcast", { .open = [](auto *ws) { ws->subscribe("b"); },
//!                           .message = [&](auto *ws, auto m, auto op) { app.publish("b", m, op); } })
//!    .ws<D>("/*", { .message = [](auto *ws, auto m, auto op) { ws->send(m, op); } });
//! ```

use zapsocket::reactor::{Handler, Reactor, Socket};
use zapsocket::{DeflateConfig, HttpResponse, Message, Request, WebSocketConfig};

/// What a connection does, chosen by its path at the upgrade.
#[derive(Clone, Copy)]
enum Route {
    Echo,
    Broadcast,
}

struct App;

impl Handler for App {
    type State = Route;

    fn upgrade(&mut self, request: &Request) -> Result<Route, HttpResponse> {
        Ok(if request.path() == "/broadcast" { Route::Broadcast } else { Route::Echo })
    }

    fn open(&mut self, ws: &mut Socket<'_, Route>) {
        if let Route::Broadcast = ws.state() {
            ws.subscribe("broadcast");
        }
    }

    fn message(&mut self, ws: &mut Socket<'_, Route>, message: Message) {
        if !message.is_data() {
            return; // pings are answered by the library
        }
        match *ws.state() {
            Route::Echo => {
                // Backpressure pauses this socket's reading until its queue drains.
                let _ = ws.send(message);
            }
            Route::Broadcast => ws.publish("broadcast", message),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(log_filter()).init();
    let mut args = std::env::args().skip(1);
    let mut port = 9001;
    let mut builder = Reactor::builder();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--deflate" => builder = builder.deflate(DeflateConfig::default()),
            "--threads" => builder = builder.threads(args.next().ok_or("--threads N")?.parse()?),
            "--no-heartbeat" => builder = builder.config(WebSocketConfig::default().no_heartbeat()),
            other => port = other.parse()?,
        }
    }
    let running = builder.host("127.0.0.1").port(port).start(|_| App)?;
    // On stdout: scripts that start us on port 0 read the port from this line.
    println!("listening on ws://{}", running.local_addr());
    running.join();
    Ok(())
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())
}
