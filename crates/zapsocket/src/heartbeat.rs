//! The server's heartbeat: one thread ticks the keepalive timers of all its connections.
//!
//! `ws` users write this loop by hand (`setInterval` over `wss.clients`, ping, terminate
//! who did not answer). Here it is built in, and kept off the connections' tasks: with a
//! timer armed per connection, every park of the runtime would arm a kernel timer too,
//! which costs a few percent of CPU per message on a busy server. The protocol timers
//! themselves live in `zapsocket_proto::Connection`; this only tells them the time.

use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use zapsocket_proto::{CloseCode, State};

use crate::error::Error;
use crate::shared::Shared;

/// The connections of one server that have a heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    connections: Mutex<Vec<Weak<Shared>>>,
}

impl Heartbeat {
    /// Starts the ticking thread; it ends once the returned handle is dropped.
    pub(crate) fn start(interval: Duration, timeout: Duration) -> Arc<Heartbeat> {
        let heartbeat = Arc::new(Heartbeat::default());
        let weak = Arc::downgrade(&heartbeat);
        let tick = (interval.min(timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let spawned = thread::Builder::new().name("zapsocket-heartbeat".into()).spawn(move || {
            loop {
                thread::sleep(tick);
                match weak.upgrade() {
                    Some(heartbeat) => heartbeat.tick(Instant::now()),
                    None => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat thread; connections get no keepalive");
        }
        heartbeat
    }

    /// Adds a connection; it leaves when it is gone.
    pub(crate) fn add(&self, shared: &Arc<Shared>) {
        self.lock().push(Arc::downgrade(shared));
    }

    fn tick(&self, now: Instant) {
        let alive: Vec<Arc<Shared>> = {
            let mut connections = self.lock();
            connections.retain(|c| c.strong_count() > 0);
            connections.iter().filter_map(Weak::upgrade).collect()
        };
        for shared in alive {
            keepalive(&shared, now);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Shared>>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs one connection's keepalive timer: queue a ping, or terminate a silent peer.
fn keepalive(shared: &Shared, now: Instant) {
    let mut inner = shared.lock();
    if inner.done || inner.conn.state() != State::Open {
        // Closing: the driver runs the close timeout itself.
        return;
    }
    if inner.conn.poll_timeout().is_some_and(|t| t > now) {
        return;
    }
    let queued = inner.conn.outbound().len();
    match inner.conn.handle_timeout(now) {
        Ok(()) if inner.conn.outbound().len() != queued => inner.wake_driver(),
        Ok(()) => {}
        Err(e) => {
            let error = Error::from(e);
            inner.set_local_close(CloseCode::ABNORMAL, &error.to_string());
            inner.set_error(error);
            inner.terminate = true;
            inner.wake_driver();
        }
    }
}
