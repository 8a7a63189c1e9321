//! The bytes of a connection: reads and writes, straight or through TLS, and the
//! end-of-pass write of every connection with something queued.

use super::*;

impl<H: Handler> Worker<H> {
    /// Writes what every dirty connection has queued, and ends those that are done.
    pub(super) fn flush(&mut self) {
        while !self.cx.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.cx.dirty);
            for &key in &dirty {
                self.flush_one(key);
            }
            dirty.clear();
            if self.cx.dirty.is_empty() {
                self.cx.dirty = dirty;
            }
        }
    }

    fn flush_one(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let open = match &mut conn.phase {
            Phase::Open(open) => open,
            Phase::Handshake(h) => {
                match write_refusal(&conn.stream, conn.tls.as_deref_mut(), h) {
                    Ok(false) => {}
                    Ok(true) if conn.tls.is_some() => {
                        // Through TLS: its close_notify says the end; no lingering.
                        if let Some(tls) = conn.tls.as_deref_mut() {
                            tls.send_close_notify();
                            let _ = tls.write_tls(&mut &conn.stream);
                        }
                        self.finish(key);
                    }
                    Ok(true) => {
                        let _ = conn.stream.shutdown(Shutdown::Write);
                        h.lingering = true;
                        h.refusal = None;
                        // Whatever the client sent after its head is read and dropped.
                        self.read_handshake(key);
                    }
                    Err(_) => self.finish(key),
                }
                return;
            }
        };
        open.flags &= !DIRTY;
        if open.flags & TERMINATE != 0 {
            self.finish(key);
            return;
        }
        let max = self.cx.shared.settings.config.max_send_queue;
        match write_out(&conn.stream, conn.tls.as_deref_mut(), &mut open.ws) {
            Err(e) => {
                open.end(CloseCode::ABNORMAL, e.to_string());
                self.finish(key);
                return;
            }
            Ok(Written { progressed, done }) => {
                if done {
                    open.stalled = None;
                    if open.ws.is_closed() {
                        // Our close for a violation went out, and the peer may still be
                        // sending: closing now could reset the connection before it reads
                        // the close frame.
                        let linger = open.ws.close_frame().is_none();
                        self.end(key, linger);
                        return;
                    }
                } else if progressed || open.stalled.is_none() {
                    open.stalled = Some(self.cx.now);
                }
                if progressed && open.flags & PAUSED != 0 {
                    // Not read while paused, so its pongs are not seen; taking our bytes
                    // shows it alive.
                    open.ws.note_received();
                }
            }
        }
        let live: &mut Live = open;
        if let Some(link) = &live.link {
            link.saw_queue(live.ws.outbound());
        }
        if open.flags & PAUSED != 0 && open.ws.outbound().cost() <= max / 2 {
            open.flags &= !PAUSED;
            if open.flags & HELD == 0 {
                self.cx.again.push(key);
            }
            let Worker { conns, handler, cx, .. } = self;
            if let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) {
                handler.drain(&mut Socket::of(open, key, stream, cx));
                if !open.ws.outbound().is_empty() {
                    cx.mark(open, key);
                }
            }
            if !self.cx.published.is_empty() {
                deliver_published(&mut self.conns, &mut self.cx);
            }
        }
    }
}

/// Binds a listening socket; with `shared_port`, one of several loops' on one port.
pub(crate) fn listen(addr: SocketAddr, shared_port: bool) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if shared_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What a write did.
pub(super) struct Written {
    /// Some bytes were written.
    pub(super) progressed: bool,
    /// Nothing is left queued.
    pub(super) done: bool,
}

/// Reads plaintext: from the socket, or through TLS (what the peer sent decrypted, after
/// the TLS handshake's own messages). `Ok(0)` is the end: TCP's, or TLS' close_notify.
pub(super) fn read_plain(
    stream: &TcpStream,
    tls: Option<&mut ServerConnection>,
    buf: &mut [u8],
) -> io::Result<usize> {
    let Some(tls) = tls else { return (&*stream).read(buf) };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match tls.read_tls(&mut &*stream) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // The alert rustls queued for it goes out before the socket closes.
                    let _ = tls.write_tls(&mut &*stream);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes what `ws` has queued, until done or the socket is full: straight, or through
/// TLS (plaintext into its records, up to its buffer limit, then the records out).
pub(super) fn write_out(
    stream: &TcpStream,
    tls: Option<&mut ServerConnection>,
    ws: &mut Connection,
) -> io::Result<Written> {
    let Some(tls) = tls else { return write_plain(stream, ws) };
    let mut progressed = false;
    loop {
        let out = ws.outbound();
        while !out.is_empty() {
            let n = tls.writer().write(out.first_chunk())?;
            if n == 0 {
                break;
            }
            out.advance(n);
        }
        ws.queue_held_pong();
        if !tls.wants_write() {
            let done = ws.outbound().is_empty();
            if done {
                return Ok(Written { progressed, done });
            }
            // Pong queued just now: into the records too.
            continue;
        }
        match tls.write_tls(&mut &*stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => progressed = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Written { progressed, done: false });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`write_out`] without TLS.
pub(super) fn write_plain(stream: &TcpStream, ws: &mut Connection) -> io::Result<Written> {
    let mut progressed = false;
    loop {
        let out = ws.outbound();
        if out.is_empty() {
            return Ok(Written { progressed, done: true });
        }
        let mut slices = [IoSlice::new(&[]); 64];
        let count = out.io_slices(&mut slices);
        // One chunk (the usual case): `send`, lighter in the kernel than `writev`.
        let written = match count {
            1 => (&*stream).write(&slices[0]),
            _ => (&*stream).write_vectored(&slices[..count]),
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                out.advance(n);
                progressed = true;
                ws.queue_held_pong();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Written { progressed, done: false });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes a refusal (and, through TLS, what its handshake has to send); true once the
/// refusal is all written.
pub(super) fn write_refusal(
    stream: &TcpStream,
    tls: Option<&mut ServerConnection>,
    h: &mut Handshake,
) -> io::Result<bool> {
    if let Some(tls) = tls {
        if let Some((bytes, written)) = &mut h.refusal {
            while *written < bytes.len() {
                match tls.writer().write(&bytes[*written..])? {
                    0 => break,
                    n => *written += n,
                }
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut &*stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Written once rustls holds nothing more and took it all (before the TLS
        // handshake ends, it holds the plaintext back).
        return Ok(h.refusal.as_ref().is_some_and(|(bytes, written)| *written == bytes.len())
            && !tls.is_handshaking());
    }
    let Some((bytes, written)) = &mut h.refusal else { return Ok(false) };
    while *written < bytes.len() {
        match (&*stream).write(&bytes[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
