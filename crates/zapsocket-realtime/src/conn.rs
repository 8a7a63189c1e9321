//! One connection's life: connect middlewares, `$hello`, then every envelope it sends.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use zapsocket::{CloseCode, Message, WebSocket};

use crate::envelope::{self, Envelope, Refused};
use crate::error::{ErrorCode, ReplyError};
use crate::handler::{BoxFuture, Reply};
use crate::hub::Hub;
use crate::presence::RoomRequest;
use crate::socket::{Socket, SocketInner};

#[derive(Serialize)]
struct Hello<'a> {
    version: u32,
    session: &'a str,
    epoch: &'a str,
    limits: Limits,
}

#[derive(Serialize)]
struct Limits {
    max_message: usize,
    max_rooms: usize,
    ack_timeout_ms: u128,
}

pub(crate) async fn run(hub: Hub, ws: WebSocket) {
    let (sender, mut rx) = ws.split();
    let inner = Arc::new(SocketInner::new(sender));
    let mut inner = inner;
    let mut socket = Socket { inner: inner.clone(), hub: hub.clone(), ack: None, timeout: None };
    if let Err(error) = connect(&socket).await {
        socket.send_direct(envelope::error_event(&error));
        hub.inner.counters.errors_out.fetch_add(1, Relaxed);
        let _ = inner.sender.close(CloseCode::POLICY_VIOLATION, truncate(&error.message, 120)).await;
        return;
    }
    register(&hub, &inner);
    hub.inner.counters.connections.fetch_add(1, Relaxed);
    hub.inner.counters.connections_total.fetch_add(1, Relaxed);
    socket.send_direct(hello(&hub, &inner.sid));

    let mut running: FuturesUnordered<BoxFuture<()>> = FuturesUnordered::new();
    let max_running = hub.config().max_pending_acks.max(1);
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            message = rx.recv(), if running.len() < max_running => match message {
                Some(Ok(message)) => match receive(&socket, message) {
                    Next::Idle => {}
                    Next::Run(task) => running.push(task),
                    Next::Resumed(resumed) => {
                        inner = resumed;
                        socket = Socket { inner: inner.clone(), ..socket };
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!(session = %inner.sid, error = %e, "connection failed");
                    break;
                }
                None => break,
            },
        }
    }
    let rooms = hub.remove(&inner);
    hub.inner.counters.connections.fetch_sub(1, Relaxed);
    let callbacks = hub.inner.on_disconnect.read().unwrap_or_else(|p| p.into_inner()).clone();
    for callback in callbacks {
        callback(&socket);
    }
    hub.detach(inner, rooms);
    if !running.is_empty() {
        // Handlers still running finish on their own; their replies go nowhere.
        tokio::spawn(async move { while running.next().await.is_some() {} });
    }
}

/// What a received message leads to.
enum Next {
    /// Nothing more to do.
    Idle,
    /// A handler to run.
    Run(BoxFuture<()>),
    /// `$resume` succeeded: the connection is now this session.
    Resumed(Arc<SocketInner>),
}

/// Adds a connected socket to the hub, in `$all` and its own room from their current
/// offsets on.
fn register(hub: &Hub, inner: &Arc<SocketInner>) {
    let mut state = hub.write_state();
    let all = hub.inner.adapter.last_offset(crate::ALL_ROOM);
    let own = hub.inner.adapter.last_offset(&inner.room);
    let mut joined_at = inner.joined_at.lock().unwrap_or_else(|p| p.into_inner());
    joined_at.insert(crate::ALL_ROOM.to_owned(), all);
    joined_at.insert(inner.room.clone(), own);
    state.sockets.insert(inner.sid.clone(), inner.clone());
}

async fn connect(socket: &Socket) -> Result<(), ReplyError> {
    let middlewares = socket.hub.inner.on_connect.read().unwrap_or_else(|p| p.into_inner()).clone();
    for middleware in middlewares {
        middleware(socket.clone()).await.map_err(|e| ReplyError::new(ErrorCode::FORBIDDEN, e.message))?;
    }
    Ok(())
}

fn hello(hub: &Hub, sid: &str) -> String {
    let config = hub.config();
    let hello = Hello {
        version: 1,
        session: sid,
        epoch: hub.epoch(),
        limits: Limits {
            max_message: config.max_message,
            max_rooms: config.max_rooms,
            ack_timeout_ms: config.ack_timeout.as_millis(),
        },
    };
    envelope::event("$hello", &envelope::to_json(&hello), None)
}

/// Handles one received message; returns the handler to run, if one was started.
fn receive(socket: &Socket, message: Message) -> Next {
    let counters = &socket.hub.inner.counters;
    let text = match message {
        Message::Text(text) => text,
        Message::Binary(data) => {
            counters.received(data.len());
            let error =
                ReplyError::new(ErrorCode::UNSUPPORTED, "binary frames are not part of protocol version 1");
            respond(socket, None, Err(error));
            return Next::Idle;
        }
        Message::Ping(_) | Message::Pong(_) => return Next::Idle,
    };
    counters.received(text.len());
    let max = socket.hub.config().max_message;
    if text.len() > max {
        let error =
            ReplyError::new(ErrorCode::TOO_LARGE, format!("{} bytes, over the limit of {max}", text.len()));
        respond(socket, None, Err(error));
        return Next::Idle;
    }
    match envelope::parse(text.as_str(), socket.hub.config().max_name) {
        Ok(envelope) => dispatch(socket, envelope),
        Err(Refused { ack, error }) => {
            respond(socket, ack, Err(error));
            Next::Idle
        }
    }
}

fn dispatch(socket: &Socket, envelope: Envelope<'_>) -> Next {
    match envelope {
        Envelope::Reply { id, result } => {
            socket.inner.resolve(id, result.map(str::to_owned));
            Next::Idle
        }
        Envelope::Event { name, data, ack, .. } if name == "$resume" => {
            match check_middlewares(socket, &name, data).and_then(|()| socket.hub.resume(&socket.inner, data))
            {
                Ok((resumed, reply)) => {
                    let socket = Socket { inner: resumed.clone(), ..socket.clone() };
                    respond(&socket, ack, Ok(envelope::to_json(&reply)));
                    Next::Resumed(resumed)
                }
                Err(error) => {
                    respond(socket, ack, Err(error));
                    Next::Idle
                }
            }
        }
        Envelope::Event { name, data, ack, .. } if name.starts_with('$') => {
            let result = check_middlewares(socket, &name, data).and_then(|()| reserved(socket, &name, data));
            respond(socket, ack, result);
            Next::Idle
        }
        Envelope::Event { name, data, ack, .. } => {
            let handler =
                socket.hub.inner.handlers.read().unwrap_or_else(|p| p.into_inner()).get(&*name).cloned();
            let Some(handler) = handler else {
                let error =
                    ReplyError::new(ErrorCode::UNKNOWN_EVENT, format!("no handler for event {name:?}"));
                if ack.is_some() || socket.inner.warn_unknown(&name) {
                    respond(socket, ack, Err(error));
                }
                return Next::Idle;
            };
            start(socket, ack, &name, data, &*handler).map_or(Next::Idle, Next::Run)
        }
        Envelope::Call { name, data, ack } => {
            let procedure =
                socket.hub.inner.procedures.read().unwrap_or_else(|p| p.into_inner()).get(&*name).cloned();
            let Some(procedure) = procedure else {
                let error = ReplyError::new(ErrorCode::UNKNOWN_PROCEDURE, format!("no procedure {name:?}"));
                respond(socket, Some(ack), Err(error));
                return Next::Idle;
            };
            start(socket, Some(ack), &name, data, &*procedure).map_or(Next::Idle, Next::Run)
        }
    }
}

/// Runs the middlewares, decodes the data and starts the handler.
fn start(
    socket: &Socket,
    ack: Option<u64>,
    name: &str,
    data: &str,
    handler: &dyn crate::handler::Erased,
) -> Option<BoxFuture<()>> {
    let started = check_middlewares(socket, name, data)
        .and_then(|()| handler.start(Socket { ack, ..socket.clone() }, data));
    match started {
        Ok(future) => {
            let socket = socket.clone();
            Some(Box::pin(async move { respond(&socket, ack, future.await) }))
        }
        Err(error) => {
            respond(socket, ack, Err(error));
            None
        }
    }
}

fn check_middlewares(socket: &Socket, name: &str, data: &str) -> Result<(), ReplyError> {
    let middlewares = socket.hub.inner.on_event.read().unwrap_or_else(|p| p.into_inner()).clone();
    for middleware in middlewares {
        middleware(socket, name, data).map_err(|e| ReplyError::new(ErrorCode::FORBIDDEN, e.message))?;
    }
    Ok(())
}

/// The protocol's own requests: `$join`, `$leave`, `$members`, `$ping`, `$resume`.
fn reserved(socket: &Socket, name: &str, data: &str) -> Reply {
    let room = || -> Result<String, ReplyError> {
        let request: RoomRequest =
            serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        Ok(request.room)
    };
    match name {
        "$join" => {
            let room = room()?;
            Ok(envelope::to_json(&socket.join(&room)?))
        }
        "$leave" => {
            let room = room()?;
            socket.leave(&room)?;
            Ok(envelope::to_json(&RoomRequest { room }))
        }
        "$members" => {
            let room = room()?;
            socket.hub.check_room(&room)?;
            Ok(envelope::to_json(&socket.hub.presence_of(&socket.hub.read_state(), &room)))
        }
        // A liveness check from a client that cannot see WebSocket pings (a browser):
        // the reply is the answer.
        "$ping" => Ok("null".into()),
        "$error" => {
            tracing::debug!(session = socket.id(), error = data, "$error from a client");
            Ok("null".into())
        }
        _ => Err(ReplyError::new(ErrorCode::RESERVED, format!("event {name:?} is reserved"))),
    }
}

/// Answers a request: the reply when it asked for an ack, else `$error` for an error.
fn respond(socket: &Socket, ack: Option<u64>, result: Reply) {
    if result.is_err() {
        socket.hub.inner.counters.errors_out.fetch_add(1, Relaxed);
    }
    match (ack, result) {
        (Some(id), result) => socket.send_direct(envelope::reply(id, &result)),
        (None, Err(error)) => socket.send_direct(envelope::error_event(&error)),
        (None, Ok(_)) => {}
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
