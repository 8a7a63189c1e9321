//! The server's heartbeat: one thread ticks the keepalive timers of all its connections
//! and watches their writes.
//!
//! `ws` users write this loop by hand (`setInterval` over `wss.clients`, ping, terminate
//! who did not answer). Here it is built in, and kept off the connections' tasks: with a
//! timer armed per connection, every park of the runtime would arm a kernel timer too,
//! which costs a few percent of CPU per message on a busy server. The protocol timers
//! themselves live in `zapsocket_proto::Connection`; this only tells them the time.
//!
//! The same thread enforces [`WebSocketConfig::write_timeout`]: at each tick it notes how
//! far each connection's writes got, so the hot path pays nothing for it; and it gives
//! back the buffers of connections that were idle for a tick.

use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use zapsocket_proto::{CloseCode, State};

use crate::config::WebSocketConfig;
use crate::error::Error;
use crate::shared::{Inner, Shared};

/// The connections of one server that have a heartbeat or a write timeout.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    connections: Mutex<Vec<Watched>>,
    write_timeout: Option<Duration>,
}

/// One connection, and how far its writes had got when last seen.
#[derive(Debug)]
struct Watched {
    shared: Weak<Shared>,
    /// The written offset of its send queue when it was last seen with bytes queued
    /// (or `u64::MAX` if it had none), and since when it has not moved.
    written: u64,
    since: Instant,
}

impl Heartbeat {
    /// Whether connections with `config` need the thread: a keepalive or a write timeout.
    pub(crate) fn needed(config: &WebSocketConfig) -> bool {
        config.protocol.ping_interval.is_some() || config.write_timeout.is_some()
    }

    /// Starts the ticking thread for connections with `config`; it ends once the returned
    /// handle is dropped.
    pub(crate) fn start(config: &WebSocketConfig) -> Arc<Heartbeat> {
        let heartbeat =
            Arc::new(Heartbeat { connections: Mutex::new(Vec::new()), write_timeout: config.write_timeout });
        let weak = Arc::downgrade(&heartbeat);
        let keepalive =
            config.protocol.ping_interval.map(|interval| interval.min(config.protocol.pong_timeout));
        let shortest = [keepalive, config.write_timeout].into_iter().flatten().min();
        let tick = (shortest.unwrap_or(Duration::from_secs(4)) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
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
        let watched = Watched { shared: Arc::downgrade(shared), written: u64::MAX, since: Instant::now() };
        self.lock().push(watched);
    }

    fn tick(&self, now: Instant) {
        let alive: Vec<(usize, Arc<Shared>)> = {
            let mut connections = self.lock();
            connections.retain(|c| c.shared.strong_count() > 0);
            connections.iter().enumerate().filter_map(|(i, c)| Some((i, c.shared.upgrade()?))).collect()
        };
        // Each connection's lock is taken without the list's: connections come and go
        // meanwhile, but only `tick` removes from the list, so the indexes stay valid.
        let mut stalls = Vec::new();
        for (i, shared) in alive {
            let mut inner = shared.lock();
            if inner.is_done() {
                continue;
            }
            keepalive(&mut inner, now);
            inner.release_if_idle();
            if self.write_timeout.is_some() {
                let out = inner.conn.outbound();
                let written = if out.is_empty() { u64::MAX } else { out.written_offset() };
                stalls.push((i, written, shared.clone()));
            }
        }
        let Some(timeout) = self.write_timeout else { return };
        let mut stalled = Vec::new();
        {
            let mut connections = self.lock();
            for (i, written, shared) in stalls {
                let Some(watched) = connections.get_mut(i) else { continue };
                if watched.written != written || written == u64::MAX {
                    (watched.written, watched.since) = (written, now);
                } else if now.duration_since(watched.since) >= timeout {
                    stalled.push(shared);
                }
            }
        }
        for shared in stalled {
            let mut inner = shared.lock();
            if !inner.is_done() {
                tracing::debug!(id = shared.id, "write timeout: the peer took no byte in time");
                inner.set_local_close(CloseCode::POLICY_VIOLATION, "write timeout");
                inner.ending.get_or_insert(crate::shared::Ending::WriteTimeout);
                inner.terminate();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs one connection's keepalive timer: queue a ping, or terminate a silent peer.
fn keepalive(inner: &mut Inner, now: Instant) {
    if inner.conn.state() != State::Open || inner.conn.config().ping_interval.is_none() {
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
            inner.ending.get_or_insert(crate::shared::Ending::Heartbeat);
            inner.set_error(error);
            inner.terminate();
        }
    }
}
