//! How a connection ends: terminated at once, failed with an error, closed (our own
//! record of why, when no close frame was exchanged), done; and why, for the metrics.

use zapsocket_proto::{CloseCode, CloseFrame};

use super::{Inner, Life};
use crate::error::{Error, Kind};

/// Why a connection ended, when this end decided it (see [`crate::MetricsSnapshot::ended`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Heartbeat,
    WriteTimeout,
    CloseTimeout,
    SlowConsumer,
    MemoryBudget,
    Terminated,
    HandlerPanic,
    ConnectionLost,
    Error,
}

impl Ending {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ending::Heartbeat => "heartbeat",
            Ending::WriteTimeout => "write_timeout",
            Ending::CloseTimeout => "close_timeout",
            Ending::SlowConsumer => "slow_consumer",
            Ending::MemoryBudget => "memory_budget",
            Ending::Terminated => "terminated",
            Ending::HandlerPanic => "handler_panic",
            Ending::ConnectionLost => "connection_lost",
            Ending::Error => "error",
        }
    }
}

impl Inner {
    /// Ends the connection at once, without a close handshake (the driver does it);
    /// nothing if it is over already.
    pub(crate) fn terminate(&mut self) {
        if self.life == Life::Running {
            self.life = Life::Terminating;
        }
        self.wake_driver();
    }

    /// Records a terminal error for `recv()` (the first one wins).
    pub(crate) fn set_error(&mut self, error: Error) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// Why the connection ended, for the metrics.
    pub(crate) fn cause(&self) -> &'static str {
        if let Some(ending) = self.ending {
            return ending.name();
        }
        if self.conn.close_frame().is_some() || self.conn.sent_close_code().is_some() {
            "closed"
        } else {
            "connection_lost"
        }
    }

    /// Marks the connection finished and wakes everyone waiting on it.
    pub(crate) fn set_done(&mut self) {
        self.life = Life::Done;
        self.conn.outbound().clear();
        self.account.close(false);
        self.wake_recv();
        for w in self.waiters.drain(..) {
            w.wake();
        }
    }

    pub(super) fn terminal_error(&self) -> Error {
        self.error.clone().unwrap_or_else(|| Error::new(Kind::Closed))
    }

    /// The peer's close frame, or our own record of why the connection ended.
    pub(crate) fn close_frame(&self) -> Option<CloseFrame> {
        self.conn.close_frame().cloned().or_else(|| self.local_close.as_deref().cloned())
    }

    pub(crate) fn set_local_close(&mut self, code: CloseCode, reason: &str) {
        if self.local_close.is_none() {
            self.local_close = Some(Box::new(CloseFrame::new(code, reason)));
        }
    }
}
