//! Keepalive and close-handshake deadlines. Time is always an argument.

use std::time::{Duration, Instant};

use super::{Connection, State};
use crate::{Error, OpCode};

#[derive(Debug, Default)]
pub(super) struct Timers {
    /// Bytes arrived since the last keepalive ping.
    heard: bool,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
}

impl Timers {
    pub(super) fn heard(&mut self) {
        self.heard = true;
    }

    pub(super) fn close_started(&mut self, now: Instant, timeout: Duration) {
        self.close_deadline = Some(now + timeout);
    }
}

impl Connection {
    /// The next instant at which [`Connection::handle_timeout`] must be called, if any.
    ///
    /// Call [`Connection::handle_timeout`] once when the connection opens to start the
    /// keepalive timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let t = &self.timers;
        [t.next_ping, t.pong_deadline, t.close_deadline].into_iter().flatten().min()
    }

    /// Runs the timers: sends keepalive pings, and ends the connection (without a close
    /// frame) when the peer stayed silent past the pong timeout or did not answer our
    /// close frame in time.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.state == State::Closed {
            return Ok(());
        }
        if self.timers.close_deadline.is_some_and(|d| now >= d) {
            self.finish();
            return Err(Error::CloseTimeout);
        }
        let Some(interval) = self.config.ping_interval else { return Ok(()) };
        if let Some(deadline) = self.timers.pong_deadline {
            if self.timers.heard {
                self.timers.pong_deadline = None;
            } else if now >= deadline {
                self.finish();
                return Err(Error::KeepaliveTimeout);
            }
        }
        match self.timers.next_ping {
            None => self.timers.next_ping = Some(now + interval),
            Some(at) if now >= at => {
                if self.state == State::Open {
                    self.queue_control(OpCode::Ping, b"");
                    // A ping sent while an earlier one is unanswered must not push its
                    // deadline back: with a pong timeout longer than the interval, a
                    // silent peer would otherwise never time out.
                    if self.timers.pong_deadline.is_none() {
                        self.timers.heard = false;
                        self.timers.pong_deadline = Some(now + self.config.pong_timeout);
                    }
                }
                self.timers.next_ping = Some(now + interval);
            }
            Some(_) => {}
        }
        Ok(())
    }
}
