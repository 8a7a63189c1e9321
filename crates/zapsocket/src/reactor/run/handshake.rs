//! A connection before it is a WebSocket: the request head, the decision, the 101.

use super::*;

impl<H: Handler> Worker<H> {
    pub(super) fn read_handshake(&mut self, key: usize) {
        for _ in 0..MAX_READS {
            let Some(conn) = self.conns.get_mut(key) else { return };
            let Phase::Handshake(h) = &mut conn.phase else { return };
            if h.refusal.is_some() {
                return;
            }
            let read = read_plain(&conn.stream, conn.tls.as_deref_mut(), &mut self.cx.scratch);
            if conn.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
                // The TLS handshake's answer.
                self.cx.dirty.push(key);
            }
            match read {
                Ok(0) => {
                    self.finish(key);
                    return;
                }
                Ok(_) if h.lingering => {}
                Ok(n) => match h.parser.feed(&self.cx.scratch[..n]) {
                    Ok(None) => {}
                    Ok(Some(request)) => {
                        let leftover = h.parser.take_leftover();
                        self.upgrade(key, request, &leftover);
                        // More may wait behind what this read took: no new edge for it.
                        self.cx.again.push(key);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(
                            status = e.status(),
                            reason = e.reason(),
                            "reactor: handshake refused"
                        );
                        self.refuse(key, e.to_response());
                        return;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.finish(key);
                    return;
                }
            }
        }
        self.cx.again.push(key);
    }

    pub(super) fn refuse(&mut self, key: usize, response: Vec<u8>) {
        let Some(Conn { phase: Phase::Handshake(h), .. }) = self.conns.get_mut(key) else { return };
        h.refusal = Some((response, 0));
        h.deadline = self.cx.now + LINGER;
        self.cx.dirty.push(key);
    }

    pub(super) fn upgrade(
        &mut self,
        key: usize,
        request: zapsocket_proto::handshake::Request,
        leftover: &[u8],
    ) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let Ok(peer) = conn.stream.peer_addr() else {
            self.finish(key);
            return;
        };
        let certificates = conn
            .tls
            .as_ref()
            .and_then(|tls| tls.peer_certificates())
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>().into());
        let trusted = &self.cx.shared.settings.trusted_proxies;
        let request = Request::new(request, peer, trusted).with_peer_certificates(certificates);
        let admitted = match admit(&request, &self.cx, &mut self.handler) {
            Ok(admitted) => admitted,
            Err(response) => {
                self.refuse(key, response);
                return;
            }
        };
        let shared = &self.cx.shared;
        let mut ws = Connection::with_shared_config(Role::Server, shared.protocol.clone());
        if let (Some(params), Some(config)) = (admitted.deflate, &shared.settings.deflate) {
            ws.set_deflate(params, config);
        }
        ws.outbound().push(admitted.response.into());
        // Starts the heartbeat's clock.
        let _ = ws.handle_timeout(self.cx.now);
        ws.feed(leftover);
        let live = Live {
            ws,
            flags: ACTIVE,
            protocol: admitted.protocol.map(String::into_boxed_str),
            topics: Vec::new(),
            stalled: None,
            link: None,
            ending: None,
        };
        let open = Open { live, state: admitted.state };
        conn.phase = Phase::Open(Box::new(open));
        let Worker { conns, handler, cx, .. } = self;
        if let Some(Conn { stream, phase: Phase::Open(open), .. }) = conns.get_mut(key) {
            cx.mark(open, key);
            handler.open(&mut Socket::of(open, key, stream, cx));
        }
        if !self.cx.published.is_empty() {
            deliver_published(&mut self.conns, &mut self.cx);
        }
        self.process(key);
    }
}

/// What [`admit`] lets in with.
struct Admitted<S> {
    state: S,
    response: Vec<u8>,
    deflate: Option<DeflateParams>,
    protocol: Option<String>,
}

/// Decides on a request, in order: plain HTTP, shutting down (503), path (404), validity
/// (400, 426...), origin (403), the connection cap (503), the handler's `upgrade`; then
/// the subprotocol and compression. A refusal is the HTTP answer's bytes.
fn admit<H: Handler>(request: &Request, cx: &Cx, handler: &mut H) -> Result<Admitted<H::State>, Vec<u8>> {
    let settings = &cx.shared.settings;
    let text = |status: u16, body: &str| crate::HttpResponse::text(status, body).encode();
    if !request.as_proto().is_upgrade()
        && let Some(response) = handler.http(request)
    {
        return Err(response.encode());
    }
    if cx.shutdown.is_some() {
        return Err(text(503, "server is shutting down"));
    }
    if !settings.paths.is_empty() && !settings.paths.iter().any(|p| p == request.path()) {
        return Err(text(404, "no WebSocket endpoint at this path"));
    }
    let accept = request.as_proto().validate_upgrade().map_err(|e| e.to_response())?;
    if !crate::server::origin_allowed(request, &settings.allowed_origins) {
        return Err(text(403, "origin not allowed"));
    }
    let max = settings.max_connections.unwrap_or(usize::MAX);
    if cx
        .shared
        .connections
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_err()
    {
        return Err(text(503, "too many connections"));
    }
    let state = match handler.upgrade(request) {
        Ok(state) => state,
        Err(response) => {
            cx.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(response.encode());
        }
    };
    let offered = request.subprotocols();
    let protocol = settings.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned();
    let deflate = settings.deflate.as_ref().and_then(|config| config.accept(request.as_proto(), false));
    let response = ServerResponse {
        protocol: protocol.clone(),
        extensions: deflate.map(|p| p.to_header()),
        headers: settings.headers.clone(),
    };
    Ok(Admitted { state, response: response.encode(&accept), deflate, protocol })
}
