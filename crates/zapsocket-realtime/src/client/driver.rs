//! The client's driver task: reads every message and dispatches it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::watch;
use zapsocket::{Message, WebSocketReceiver};

use super::{ConnectError, Shared};
use crate::envelope::{self, Envelope, Refused};
use crate::error::{ErrorCode, ReplyError};

/// The data of `$hello`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Hello {
    /// The protocol version (1).
    pub version: u32,
    /// The session id.
    pub session: String,
    /// The server's history epoch.
    pub epoch: String,
    /// The server's limits.
    pub limits: HelloLimits,
}

/// The limits announced in `$hello`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct HelloLimits {
    /// The largest envelope, in bytes.
    pub max_message: usize,
    /// The most rooms per socket.
    pub max_rooms: usize,
    /// The server's ack timeout.
    pub ack_timeout_ms: u64,
}

/// Names from the server are not bounded by our limit on names we accept as a server.
const ANY_NAME: usize = usize::MAX;

/// Reads the first message, which must be `$hello` (or `$error` when refused).
pub(super) async fn read_hello(rx: &mut WebSocketReceiver) -> Result<Hello, ConnectError> {
    let message = match rx.recv().await {
        Some(Ok(message)) => message,
        Some(Err(e)) => return Err(ConnectError::WebSocket(e)),
        None => return Err(ConnectError::Protocol(format!("closed before $hello: {:?}", rx.close_frame()))),
    };
    let text = message.as_text().ok_or_else(|| ConnectError::Protocol("a binary first message".into()))?;
    match envelope::parse(text, ANY_NAME) {
        Ok(Envelope::Event { name, data, .. }) if name == "$hello" => {
            serde_json::from_str(data).map_err(|e| ConnectError::Protocol(format!("bad $hello: {e}")))
        }
        Ok(Envelope::Event { name, data, .. }) if name == "$error" => {
            let error = serde_json::from_str::<ReplyError>(data)
                .unwrap_or_else(|e| ReplyError::new(ErrorCode::BAD_PAYLOAD, e.to_string()));
            Err(ConnectError::Refused(error))
        }
        _ => Err(ConnectError::Protocol(format!("expected $hello, got {text:.200}"))),
    }
}

pub(super) async fn run(shared: Arc<Shared>, mut rx: WebSocketReceiver, closed: watch::Sender<bool>) {
    while let Some(Ok(message)) = rx.recv().await {
        if let Message::Text(text) = message {
            receive(&shared, text.as_str());
        }
    }
    for (_, tx) in shared.lock_pending().drain() {
        let _ = tx.send(Err(ReplyError::new(ErrorCode::DISCONNECTED, "the connection closed")));
    }
    let _ = closed.send(true);
}

fn receive(shared: &Shared, text: &str) {
    let envelope = match envelope::parse(text, ANY_NAME) {
        Ok(envelope) => envelope,
        Err(Refused { ack, error }) => return answer(shared, ack, Err(error)),
    };
    match envelope {
        Envelope::Reply { id, result } => {
            if let Some(tx) = shared.lock_pending().remove(&id) {
                let _ = tx.send(result.map(str::to_owned));
            }
        }
        Envelope::Event { name, data, ack, rooms } => {
            if let Some(rooms) = rooms {
                record_offsets(shared, rooms.get());
            }
            let handler = shared.handlers.read().unwrap_or_else(|p| p.into_inner()).get(&*name).cloned();
            match handler.and_then(|h| h(data)) {
                Some(result) => answer(shared, ack, result),
                None if ack.is_some() => {
                    let error =
                        ReplyError::new(ErrorCode::UNKNOWN_EVENT, format!("no handler for event {name:?}"));
                    answer(shared, ack, Err(error));
                }
                None => {}
            }
            let any = shared.any.read().unwrap_or_else(|p| p.into_inner()).clone();
            for handler in any {
                handler(&name, data);
            }
        }
        Envelope::Call { name, ack, .. } => {
            let error =
                ReplyError::new(ErrorCode::UNKNOWN_PROCEDURE, format!("a client has no procedure {name:?}"));
            answer(shared, Some(ack), Err(error));
        }
    }
}

/// Keeps the highest offset seen per room.
fn record_offsets(shared: &Shared, rooms: &str) {
    let Ok(rooms) = serde_json::from_str::<HashMap<String, u64>>(rooms) else { return };
    let mut offsets = shared.offsets.lock().unwrap_or_else(|p| p.into_inner());
    for (room, offset) in rooms {
        let seen = offsets.entry(room).or_default();
        *seen = (*seen).max(offset);
    }
}

fn answer(shared: &Shared, ack: Option<u64>, result: Result<String, ReplyError>) {
    let json = match (ack, &result) {
        (Some(id), _) => envelope::reply(id, &result),
        (None, Err(error)) => {
            // The server did not ask for an answer: a client reports nothing back.
            tracing::debug!(%error, "a server event the client could not handle");
            return;
        }
        (None, Ok(_)) => return,
    };
    if let Err(e) = shared.sender.try_send(Message::from(json)) {
        tracing::debug!(error = %e, "could not queue a reply");
    }
}
