//! What a session does, whichever server hosts it (`conn`: a task on the async server;
//! `host`: a state machine on a reactor loop): its start (connect middlewares,
//! registration, `$hello`), each envelope it receives (parsed and answered at once, or
//! a protocol request such as `$join` or `$resume` that may wait), and its end
//! (presence, the session kept for recovery).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use serde::Serialize;
use zapsocket::{CloseCode, Message};

use crate::binary::{self, Json};
use crate::core::{AnyHook, Core, Ctx, EventHook, Route};
use crate::envelope::{self, Envelope, Refused};
use crate::error::{ErrorCode, ReplyError};
use crate::handler::{BoxFuture, Reply};
use crate::protocol::RoomRequest;
use crate::state::SocketState;

#[derive(Serialize)]
struct Hello<'a> {
    version: u32,
    session: &'a str,
    epoch: &'a str,
    node: &'a str,
    limits: Limits,
}

#[derive(Serialize)]
struct Limits {
    max_message: usize,
    max_rooms: usize,
    ack_timeout_ms: u128,
}

/// The events a client may send whose names start with `$`; other such names are
/// `reserved`, a protocol violation.
const CLIENT_EVENTS: [&str; 6] = ["$resume", "$join", "$leave", "$members", "$ping", "$error"];

/// The close reason of a socket past `HubConfig::max_violations` (with 1008).
pub(crate) const TOO_MANY_VIOLATIONS: &str = "too many malformed messages";

/// What a received message was, for `HubConfig::max_violations`.
#[derive(Debug)]
pub(crate) enum Received<'m> {
    /// Served, or answered with an error that the application or the data caused.
    Handled,
    /// Breaks the protocol: answered with its error, and counted.
    Violation,
    /// A valid request of the protocol itself (`$resume`, `$join`...), which may wait:
    /// for [`serve_reserved`].
    Reserved { name: Cow<'m, str>, data: &'m str, ack: Option<u64> },
}

/// Where [`receive`] puts the handlers it starts.
pub(crate) trait Tasks {
    /// Whether a running handler will answer `ack`.
    fn answers(&self, ack: Option<u64>) -> bool;
    /// Runs `task`, which answers `ack` (if any) and ends with it.
    fn push(&mut self, ack: Option<u64>, task: BoxFuture<Option<u64>>);
}

/// A socket is closed for breaking the protocol too often.
pub(crate) fn count_violation_close(ctx: &Ctx) {
    tracing::debug!(session = %ctx.state.sid, "{TOO_MANY_VIOLATIONS}: closing with 1008");
    ctx.core.counters.violation_closes.fetch_add(1, Relaxed);
}

/// The reason recorded for a connection that ended without a close frame.
pub(crate) const NO_CLOSE_FRAME: &str = "the connection ended without a close frame";

/// A connection's start: the connect middlewares (a refusal is answered with its error
/// and a close with 1008: `false`), then the socket joins this node (`$all`, its own
/// room, its session written through) and gets `$hello`.
pub(crate) async fn arrive(ctx: &Ctx) -> bool {
    let core = &ctx.core;
    if let Err(error) = connect(ctx).await {
        core.send_direct(&ctx.state, Json::plain(envelope::error_event(&error)));
        core.counters.errors_out.fetch_add(1, Relaxed);
        ctx.state.sender.close(CloseCode::POLICY_VIOLATION, truncate(&error.message, 120)).await;
        return false;
    }
    register(core, &ctx.state).await;
    core.counters.connections.fetch_add(1, Relaxed);
    core.counters.connections_total.fetch_add(1, Relaxed);
    core.send_direct(&ctx.state, Json::plain(hello(core, &ctx.state)));
    true
}

/// A connection's end, after [`arrive`]: the disconnect is recorded, the hooks hear,
/// the socket leaves this node (presence) and its session is kept for recovery.
/// `code` is `None` when the connection ended without a close frame.
pub(crate) async fn depart(ctx: &Ctx, code: Option<u16>, reason: String) {
    let core = &ctx.core;
    let at = std::time::SystemTime::now();
    core.record_disconnect(crate::Disconnect { session: ctx.state.sid.to_string(), code, reason, at });
    for hook in crate::core::read(&core.routes.on_disconnecting) {
        hook(ctx);
    }
    let record = core.remove(&ctx.state).await;
    core.counters.connections.fetch_sub(1, Relaxed);
    for hook in crate::core::read(&core.routes.on_disconnect) {
        hook(ctx);
    }
    core.detach(&ctx.state, record).await;
}

/// Adds a connected socket to this node, in `$all` and its own room from their current
/// offsets on, and writes its session through to the history.
async fn register(core: &Core, state: &Arc<SocketState>) {
    core.registry.add_socket(state);
    for room in [crate::ALL_ROOM, &*state.room] {
        if let Err(error) = core.broker.subscribe(room).await {
            tracing::debug!(%room, %error, "not subscribed");
        }
    }
    let rooms = [crate::ALL_ROOM, &*state.room];
    match core.history.last_offsets(&rooms).await {
        Ok(offsets) => rooms.iter().zip(offsets).for_each(|(room, offset)| state.set_joined_at(room, offset)),
        Err(error) => tracing::debug!(%error, "offsets unknown"),
    }
    core.save_session(state).await;
}

async fn connect(ctx: &Ctx) -> Result<(), ReplyError> {
    for hook in crate::core::read(&ctx.core.routes.on_connect) {
        hook(ctx.clone()).await.map_err(|e| ReplyError::new(ErrorCode::FORBIDDEN, e.message))?;
    }
    Ok(())
}

fn hello(core: &Core, state: &SocketState) -> String {
    let config = &core.config;
    let hello = Hello {
        version: if state.binary { 2 } else { 1 },
        session: &state.sid,
        epoch: &core.epoch(),
        node: core.broker.node(),
        limits: Limits {
            max_message: config.max_message,
            max_rooms: config.max_rooms,
            ack_timeout_ms: config.ack_timeout.as_millis(),
        },
    };
    envelope::event("$hello", &envelope::to_json(&hello), None)
}

/// Handles one received message without waiting; tells whether it broke the protocol,
/// or is a request of the protocol itself, for [`serve_reserved`].
pub(crate) fn receive<'m>(ctx: &Ctx, message: &'m Message, running: &mut impl Tasks) -> Received<'m> {
    let size = match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
        Message::Ping(_) | Message::Pong(_) => return Received::Handled,
    };
    ctx.core.counters.received(size);
    let max = ctx.core.config.max_message;
    if size > max {
        let error = ReplyError::new(ErrorCode::TOO_LARGE, format!("{size} bytes, over the limit of {max}"));
        return violation(ctx, None, error);
    }
    let (text, bins) = match payload(ctx, message) {
        Ok(payload) => payload,
        Err(received) => return received,
    };
    let envelope = match envelope::parse(text, ctx.core.config.max_name) {
        Ok(envelope) => envelope,
        Err(Refused { ack, error }) => return violation(ctx, ack, error),
    };
    match envelope {
        Envelope::Reply { id, result } => {
            ctx.state.resolve(id, result.map(|data| Json { text: data.to_owned(), bins }));
        }
        Envelope::Event { name, ack, .. } if name.starts_with('$') && !CLIENT_EVENTS.contains(&&*name) => {
            return violation(ctx, ack, reserved_name(&name));
        }
        Envelope::Event { name, data, ack, .. } if name.starts_with('$') => {
            return Received::Reserved { name, data, ack };
        }
        Envelope::Event { name, data, ack, .. } => {
            let route = Core::route(&ctx.core.routes.handlers, &name);
            let any = crate::core::read(&ctx.core.routes.on_any);
            if route.is_none() && (ack.is_some() || any.is_empty()) {
                let error =
                    ReplyError::new(ErrorCode::UNKNOWN_EVENT, format!("no handler for event {name:?}"));
                if ack.is_some() || ctx.state.warn_unknown(&name) {
                    respond(ctx, ack, Err(error));
                }
                return Received::Handled;
            }
            if running.answers(ack) {
                return violation(ctx, ack, ack_in_use(ack));
            }
            if let Some(task) = start(ctx, ack, &name, data, bins, route, any) {
                running.push(ack, task);
            }
        }
        Envelope::Call { name, data, ack } => {
            let Some(route) = Core::route(&ctx.core.routes.procedures, &name) else {
                let error = ReplyError::new(ErrorCode::UNKNOWN_PROCEDURE, format!("no procedure {name:?}"));
                respond(ctx, Some(ack), Err(error));
                return Received::Handled;
            };
            if running.answers(Some(ack)) {
                return violation(ctx, Some(ack), ack_in_use(Some(ack)));
            }
            if let Some(task) = start(ctx, Some(ack), &name, data, bins, Some(route), Vec::new()) {
                running.push(Some(ack), task);
            }
        }
    }
    Received::Handled
}

/// Serves a request of the protocol itself and answers it; a `$resume` that succeeded
/// returns the socket that takes over the connection.
pub(crate) async fn serve_reserved(
    ctx: &Ctx,
    name: &str,
    data: &str,
    ack: Option<u64>,
) -> Option<Arc<SocketState>> {
    if name == "$resume" {
        let result = match check_middlewares(ctx, name, data).await {
            Ok(()) => ctx.core.resume(&ctx.state, data).await,
            Err(error) => Err(error),
        };
        return match result {
            Ok((resumed, reply)) => {
                let ctx = Ctx { state: resumed, ..ctx.clone() };
                respond(&ctx, ack, Ok(Json::plain(envelope::to_json(&reply))));
                Some(ctx.state)
            }
            Err(error) => {
                respond(ctx, ack, Err(error));
                None
            }
        };
    }
    let result = async {
        check_middlewares(ctx, name, data).await?;
        reserved(ctx, name, data).await
    };
    respond(ctx, ack, result.await);
    None
}

/// The JSON text of a data message and the byte arrays of a binary one; a message
/// this connection's protocol version does not allow is answered as a violation.
fn payload<'m>(ctx: &Ctx, message: &'m Message) -> Result<(&'m str, Vec<Bytes>), Received<'m>> {
    Ok(match message {
        Message::Binary(_) if !ctx.state.binary => {
            let error = ReplyError::new(
                ErrorCode::UNSUPPORTED,
                "binary frames are part of protocol version 2 (zap.v2), not of the version 1 this connection speaks",
            );
            return Err(violation(ctx, None, error));
        }
        Message::Binary(data) => match binary::read_frame(data) {
            Ok(frame) => (frame.text, frame.bins),
            Err(bad) => {
                let ack = bad.text.and_then(|text| envelope::ack_of(text, ctx.core.config.max_name));
                return Err(violation(ctx, ack, ReplyError::new(ErrorCode::BAD_ENVELOPE, bad.message)));
            }
        },
        Message::Text(text) => (text.as_str(), Vec::new()),
        Message::Ping(_) | Message::Pong(_) => return Err(Received::Handled),
    })
}

/// Answers a message that broke the protocol with its error.
fn violation(ctx: &Ctx, ack: Option<u64>, error: ReplyError) -> Received<'static> {
    respond(ctx, ack, Err(error));
    Received::Violation
}

fn reserved_name(name: &str) -> ReplyError {
    ReplyError::new(ErrorCode::RESERVED, format!("event {name:?} is reserved"))
}

fn ack_in_use(ack: Option<u64>) -> ReplyError {
    let id = ack.unwrap_or_default();
    ReplyError::new(ErrorCode::BAD_ENVELOPE, format!("ack {id} is already in use by a request still running"))
}

/// Runs the middlewares and the catch-all listeners (`any`), decodes the data (with the
/// byte arrays `bins` of a binary message) and starts the handler (an event without one
/// was seen by a catch-all listener and needs no answer); the task ends with the ack it
/// answered. With async middlewares, all of that runs in the task.
#[allow(clippy::too_many_arguments)]
fn start(
    ctx: &Ctx,
    ack: Option<u64>,
    name: &str,
    data: &str,
    bins: Vec<Bytes>,
    route: Option<Route>,
    any: Vec<AnyHook>,
) -> Option<BoxFuture<Option<u64>>> {
    let hooks = crate::core::read(&ctx.core.routes.on_event);
    let request = Ctx { ack, ..ctx.clone() };
    if hooks.iter().all(|hook| matches!(hook, EventHook::Now(_))) {
        let started = check_now(ctx, &hooks, name, data).and_then(|()| {
            any.iter().for_each(|hook| hook(ctx, name, data));
            route.map(|route| route(request, data, &bins)).transpose()
        });
        return match started {
            Ok(Some(future)) => {
                let ctx = ctx.clone();
                Some(Box::pin(async move {
                    respond(&ctx, ack, future.await);
                    ack
                }))
            }
            Ok(None) => None,
            Err(error) => {
                respond(ctx, ack, Err(error));
                None
            }
        };
    }
    let (ctx, name, data) = (ctx.clone(), name.to_owned(), data.to_owned());
    Some(Box::pin(async move {
        let result = async {
            run_hooks(&ctx, &hooks, &name, &data).await?;
            any.iter().for_each(|hook| hook(&ctx, &name, &data));
            match route {
                Some(route) => route(request, &data, &bins)?.await.map(Some),
                None => Ok(None),
            }
        };
        match result.await {
            Ok(Some(reply)) => respond(&ctx, ack, Ok(reply)),
            Ok(None) => {}
            Err(error) => respond(&ctx, ack, Err(error)),
        }
        ack
    }))
}

/// Runs the middlewares that answer at once.
fn check_now(ctx: &Ctx, hooks: &[EventHook], name: &str, data: &str) -> Result<(), ReplyError> {
    for hook in hooks {
        if let EventHook::Now(hook) = hook {
            hook(ctx, name, data).map_err(forbidden)?;
        }
    }
    Ok(())
}

/// Runs every middleware in order, waiting for the async ones.
async fn run_hooks(ctx: &Ctx, hooks: &[EventHook], name: &str, data: &str) -> Result<(), ReplyError> {
    for hook in hooks {
        match hook {
            EventHook::Now(hook) => hook(ctx, name, data).map_err(forbidden)?,
            EventHook::Later(hook) => {
                hook(ctx.clone(), name.to_owned(), data.to_owned()).await.map_err(forbidden)?
            }
        }
    }
    Ok(())
}

/// The middlewares of a room request or `$resume`.
async fn check_middlewares(ctx: &Ctx, name: &str, data: &str) -> Result<(), ReplyError> {
    let hooks = crate::core::read(&ctx.core.routes.on_event);
    run_hooks(ctx, &hooks, name, data).await
}

/// A middleware's refusal, as the client gets it.
fn forbidden(error: ReplyError) -> ReplyError {
    ReplyError::new(ErrorCode::FORBIDDEN, error.message)
}

/// The protocol's own requests: `$join`, `$leave`, `$members`, `$ping`, `$error`
/// (`$resume` is done apart).
async fn reserved(ctx: &Ctx, name: &str, data: &str) -> Reply {
    let room = || -> Result<String, ReplyError> {
        let request: RoomRequest =
            serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        Ok(request.room)
    };
    let json = match name {
        "$join" => envelope::to_json(&ctx.core.join(&ctx.state, &room()?).await?),
        "$leave" => {
            let room = room()?;
            ctx.core.leave(&ctx.state, &room).await?;
            envelope::to_json(&RoomRequest { room })
        }
        "$members" => envelope::to_json(&ctx.core.members(&room()?).await?),
        // A liveness check from a client that cannot see WebSocket pings (a browser):
        // the reply is the answer.
        "$ping" => "null".into(),
        "$error" => {
            tracing::debug!(session = %ctx.state.sid, error = data, "$error from a client");
            "null".into()
        }
        _ => return Err(reserved_name(name)),
    };
    Ok(Json::plain(json))
}

/// Answers a request: the reply when it asked for an ack, else `$error` for an error.
fn respond(ctx: &Ctx, ack: Option<u64>, result: Reply) {
    if result.is_err() {
        ctx.core.counters.errors_out.fetch_add(1, Relaxed);
    }
    let json = match (ack, result) {
        (Some(id), Ok(data)) => data.wrap(|data| envelope::reply(id, Ok(data))),
        (Some(id), Err(error)) => Json::plain(envelope::reply(id, Err(&error))),
        (None, Err(error)) => Json::plain(envelope::error_event(&error)),
        (None, Ok(_)) => return,
    };
    ctx.core.send_direct(&ctx.state, json);
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
