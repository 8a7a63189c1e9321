//! The timers, the shutdown, and how a connection ends.

use super::*;

impl<H: Handler> Worker<H> {
    /// Runs the timers of every connection, and accepts what a failed accept (out of
    /// descriptors) left waiting: no new edge comes for it.
    pub(super) fn tick(&mut self) {
        self.accept();
        let now = self.cx.now;
        let config = &self.cx.shared.settings.config;
        let shutdown_over = self.cx.shutdown.is_some_and(|deadline| now >= deadline);
        let mut ended = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let open = match &mut conn.phase {
                Phase::Open(open) => open,
                Phase::Handshake(h) => {
                    // A TLS handshake not done by then cannot carry a 408: dropped.
                    let tls_pending = conn.tls.as_ref().is_some_and(|tls| tls.is_handshaking());
                    if now >= h.deadline || shutdown_over {
                        if h.refusal.is_none() && !h.lingering && !shutdown_over && !tls_pending {
                            let response = error_response(408, &[], "request head not received in time");
                            h.refusal = Some((response, 0));
                            h.deadline = now + LINGER;
                            self.cx.dirty.push(key);
                        } else {
                            ended.push(key);
                        }
                    }
                    continue;
                }
            };
            if shutdown_over {
                open.end(CloseCode::GOING_AWAY, "server shut down");
            }
            if open.ws.poll_timeout().is_some_and(|at| at <= now)
                && let Err(e) = open.ws.handle_timeout(now)
            {
                open.end(CloseCode::ABNORMAL, e.to_string());
            }
            if let (Some(since), Some(limit)) = (open.stalled, config.write_timeout)
                && now.duration_since(since) >= limit
            {
                open.end(CloseCode::POLICY_VIOLATION, "write timeout");
            }
            if open.ws.is_closed()
                && open
                    .stalled
                    .is_some_and(|since| now.duration_since(since) >= config.protocol.close_timeout)
            {
                // Over, and its last bytes (a close frame) not taken within the close timeout.
                open.end(CloseCode::ABNORMAL, "close frame not taken in time");
            }
            if open.flags & HELD != 0 {
                // Not read while its handler holds it, so its pongs are not seen: the
                // hold is the handler's (a wait it bounds), not the peer's silence.
                open.ws.note_received();
            }
            if open.flags & ACTIVE == 0 {
                if open.ws.outbound().is_empty() {
                    open.ws.release_buffers();
                }
            } else {
                open.flags &= !ACTIVE;
            }
            if !open.ws.outbound().is_empty() || open.flags & TERMINATE != 0 {
                open.mark(&mut self.cx.dirty, key);
            }
        }
        for key in ended {
            self.finish(key);
        }
    }

    pub(super) fn begin_shutdown(&mut self) {
        if self.cx.shutdown.is_some() {
            return;
        }
        self.cx.shutdown = Some(after(self.cx.now, self.cx.shared.settings.shutdown_timeout));
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let mut ended = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            match &mut conn.phase {
                Phase::Handshake(_) => ended.push(key),
                Phase::Open(open) => {
                    let _ = open.ws.close(self.cx.now, CloseCode::GOING_AWAY, "server shutting down");
                    self.cx.mark(open, key);
                }
            }
        }
        for key in ended {
            self.finish(key);
        }
    }

    /// Ends connection `key`: closes the socket, leaves its topics, and tells the
    /// handler.
    pub(super) fn finish(&mut self, key: usize) {
        self.end(key, false);
    }

    /// [`Worker::finish`]; with `linger`, the socket is only shut for writing and read
    /// until the peer closes it (or [`LINGER`] passes).
    pub(super) fn end(&mut self, key: usize, linger: bool) {
        if let Some(conn) = self.conns.get_mut(key)
            && let Some(tls) = conn.tls.as_deref_mut()
        {
            // Through TLS: close_notify, best effort, and no lingering (the peer's TLS
            // stack reads our records before any reset).
            tls.send_close_notify();
            let _ = tls.write_tls(&mut &conn.stream);
        }
        let linger = linger && self.conns.get(key).is_some_and(|conn| conn.tls.is_none());
        if linger && let Some(conn) = self.conns.get_mut(key) {
            let lingering = Handshake {
                parser: RequestParser::new(self.cx.shared.settings.limits.clone()),
                deadline: after(self.cx.now, LINGER),
                refusal: None,
                lingering: true,
            };
            if let Phase::Open(open) =
                std::mem::replace(&mut conn.phase, Phase::Handshake(Box::new(lingering)))
            {
                let _ = conn.stream.shutdown(Shutdown::Write);
                self.cx.again.push(key);
                self.closed(key, *open);
                return;
            }
        }
        let Some(conn) = self.conns.try_remove(key) else { return };
        let Phase::Open(open) = conn.phase else { return };
        drop(conn.stream);
        self.closed(key, *open);
    }

    /// A connection is over: it leaves its topics and the count, and the handler hears.
    fn closed(&mut self, key: usize, open: Open<H::State>) {
        let Open { live: Live { ws, topics, ending, link, .. }, state } = open;
        if let Some(link) = link {
            link.ended();
        }
        for id in topics {
            self.cx.topics.leave(id, key);
        }
        self.cx.shared.connections.fetch_sub(1, Ordering::AcqRel);
        let (code, reason) = match (ws.close_frame(), ending) {
            (Some(frame), _) => (frame.code, frame.reason.to_string()),
            (None, Some(ending)) => *ending,
            (None, None) => (CloseCode::ABNORMAL, String::new()),
        };
        self.handler.close(state, code, &reason);
    }
}

impl Live {
    /// Ends the connection once what is queued (the close frame for a violation) is
    /// written.
    pub(super) fn end_after_write(&mut self, code: CloseCode, reason: String) {
        self.ending.get_or_insert_with(|| Box::new((code, reason)));
    }
}
