//! The client's driver task: reads every message and dispatches it; when the connection
//! drops, reconnects, resumes or rejoins, then flushes the offline buffer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Deserialize;
use zapsocket::{Message, WebSocketReceiver, WebSocketSender};

use super::link::Shared;
use super::{ConnState, ConnectError, Settings};
use bytes::Bytes;

use crate::binary::Json;
use crate::envelope::{self, Envelope, Refused};
use crate::error::{ErrorCode, ReplyError};
use crate::handler::Reply;

/// The data of `$hello`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Hello {
    /// The protocol version: 2 when the server chose `zap.v2` (byte arrays as bytes),
    /// else 1.
    pub version: u32,
    /// The session id.
    pub session: String,
    /// The server's history epoch.
    pub epoch: String,
    /// The node connected to (servers before it was sent: empty).
    #[serde(default)]
    pub node: String,
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

/// Connects and reads `$hello` (or the `$error` of a refusal).
pub(super) async fn open(
    settings: &Settings,
) -> Result<(WebSocketSender, WebSocketReceiver, Hello), ConnectError> {
    let ws = settings.websocket().connect(&settings.url).await.map_err(ConnectError::WebSocket)?;
    let (sender, mut rx) = ws.split();
    let hello = zapsocket::time::timeout(settings.hello_timeout, read_hello(&mut rx))
        .await
        .map_err(|_| ConnectError::Protocol("no $hello in time".into()))??;
    Ok((sender, rx, hello))
}

/// The first connection: [`open`], tried again with the reconnection's backoff when
/// `retry_first_connect` asks for it and the failure is not a refusal.
pub(super) async fn open_first(
    settings: &Settings,
) -> Result<(WebSocketSender, WebSocketReceiver, Hello), ConnectError> {
    let policy = settings.reconnect.clone().filter(|_| settings.retry_first);
    let mut attempt = 0;
    loop {
        let error = match open(settings).await {
            Ok(opened) => return Ok(opened),
            Err(error) => error,
        };
        let final_refusal = match &error {
            ConnectError::Refused(_) => true,
            ConnectError::WebSocket(e) => e.status().is_some_and(refusal_is_final),
            ConnectError::Protocol(_) => false,
        };
        attempt += 1;
        let more = |p: &&super::Reconnect| !final_refusal && p.max_attempts.is_none_or(|max| attempt < max);
        let Some(policy) = policy.as_ref().filter(more) else { return Err(error) };
        tracing::debug!(attempt, %error, "first connection failed, trying again");
        zapsocket::time::sleep(backoff(policy, attempt)).await;
    }
}

async fn read_hello(rx: &mut WebSocketReceiver) -> Result<Hello, ConnectError> {
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

/// Reads and dispatches until the connection ends; then reconnects, as long as the
/// close code and the settings allow.
pub(super) async fn run(shared: Arc<Shared>, mut rx: WebSocketReceiver) {
    loop {
        while let Some(Ok(message)) = rx.recv().await {
            read(&message, |text, bins| receive(&shared, text, bins));
        }
        shared.detach().await;
        let code = rx.close_frame().map_or(1006, |f| f.code.0);
        let policy = shared.settings.reconnect.clone();
        let Some(policy) = policy.filter(|_| may_reconnect(code) && !shared.closing.load(Relaxed)) else {
            shared.finish().await;
            return;
        };
        match reconnect(&shared, &policy).await {
            Some(next) => rx = next,
            None => {
                shared.finish().await;
                return;
            }
        }
    }
}

/// Whether a close code lets the client reconnect (docs/PROTOCOL.md, *Close codes*).
pub(super) fn may_reconnect(code: u16) -> bool {
    matches!(code, 1001 | 1006 | 1011 | 1012 | 1013 | 4100..=4999)
}

/// The delay before attempt `attempt` (1, 2, ...): doubling, capped, minus jitter.
pub(super) fn backoff(policy: &super::Reconnect, attempt: u32) -> Duration {
    let doubled = policy.initial_delay.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let delay = doubled.min(policy.max_delay);
    let cut = policy.jitter.clamp(0.0, 1.0) * rand::random::<f64>();
    delay.mul_f64(1.0 - cut)
}

async fn reconnect(shared: &Shared, policy: &super::Reconnect) -> Option<WebSocketReceiver> {
    for attempt in 1.. {
        if policy.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        shared.state.send_replace(ConnState::Reconnecting { attempt });
        tokio::select! {
            () = zapsocket::time::sleep(backoff(policy, attempt)) => {}
            () = shared.wake.notified() => {}
        }
        if shared.closing.load(Relaxed) {
            return None;
        }
        match open(&shared.settings).await {
            Ok((sender, mut rx, hello)) => {
                *shared.answer.write().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
                if restore(shared, &sender, &mut rx, hello).await.is_ok() {
                    shared.attach(sender).await;
                    return Some(rx);
                }
            }
            Err(ConnectError::Refused(e)) => {
                tracing::debug!(error = %e, "reconnection refused");
                return None;
            }
            Err(ConnectError::WebSocket(e)) if e.status().is_some_and(refusal_is_final) => {
                // The server itself said no (401 expired token, 403, 404): dialing again
                // would get the same answer. 408, 429 and 5xx are worth another try.
                tracing::debug!(error = %e, "reconnection refused by the server");
                return None;
            }
            Err(e) => tracing::debug!(attempt, error = %e, "reconnection failed"),
        }
    }
    None
}

/// Whether an HTTP answer to the upgrade ends the reconnection: a 4xx other than 408
/// (request timeout) and 429 (too many requests).
fn refusal_is_final(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// After reconnecting: `$resume` the session, or take the new one and rejoin the rooms.
async fn restore(
    shared: &Shared,
    sender: &WebSocketSender,
    rx: &mut WebSocketReceiver,
    hello: Hello,
) -> Result<(), ReplyError> {
    let old = shared.hello();
    if shared.settings.recovery {
        let offsets = shared.offsets().clone();
        let data = serde_json::json!({"session": old.session, "epoch": old.epoch, "offsets": offsets});
        match inline_request(shared, sender, rx, "$resume", &data).await {
            Ok(_) => {
                // The connection is the old session again, on whatever node it reached.
                let resumed = Hello { session: old.session, ..hello };
                *shared.hello.write().unwrap_or_else(|p| p.into_inner()) = resumed;
                return Ok(());
            }
            Err(e) if e.code == ErrorCode::RECOVERY_UNAVAILABLE => tracing::debug!(error = %e, "resync"),
            Err(e) => return Err(e),
        }
    }
    *shared.hello.write().unwrap_or_else(|p| p.into_inner()) = hello;
    shared.offsets().clear();
    let rooms: Vec<String> = shared.rooms().iter().cloned().collect();
    for room in rooms {
        if let Err(e) =
            inline_request(shared, sender, rx, "$join", &serde_json::json!({ "room": room })).await
        {
            if e.code == ErrorCode::DISCONNECTED || e.code == ErrorCode::TIMEOUT {
                return Err(e);
            }
            tracing::debug!(%room, error = %e, "could not rejoin");
            shared.rooms().remove(&room);
        }
    }
    Ok(())
}

/// Sends a request on a connection that is not in use yet and reads until its reply,
/// dispatching what arrives before it (a resume's replayed messages).
async fn inline_request(
    shared: &Shared,
    sender: &WebSocketSender,
    rx: &mut WebSocketReceiver,
    event: &str,
    data: &serde_json::Value,
) -> Result<String, ReplyError> {
    let id = shared.next_id.fetch_add(1, Relaxed);
    let json = envelope::event(event, &envelope::to_json(data), Some(id));
    sender.send(Message::from(json)).await.map_err(|_| super::link::disconnected())?;
    let deadline = std::time::Instant::now() + shared.ack_timeout();
    loop {
        let message = zapsocket::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| ReplyError::new(ErrorCode::TIMEOUT, format!("no reply to {event}")))?;
        let Some(Ok(message)) = message else { return Err(super::link::disconnected()) };
        let reply = read(&message, |text, bins| match envelope::parse(text, ANY_NAME) {
            Ok(Envelope::Reply { id: reply, result }) if reply == id => Some(result.map(str::to_owned)),
            _ => {
                receive(shared, text, bins);
                None
            }
        });
        if let Some(Some(reply)) = reply {
            return reply;
        }
    }
}

/// Calls `f` with a message's envelope and byte arrays: a text frame, or a version 2
/// binary frame (a malformed one is logged and skipped).
fn read<T>(message: &Message, f: impl FnOnce(&str, &[Bytes]) -> T) -> Option<T> {
    match message {
        Message::Text(text) => Some(f(text.as_str(), &[])),
        Message::Binary(data) => match crate::binary::read_frame(data) {
            Ok(frame) => Some(f(frame.text, &frame.bins)),
            Err(error) => {
                tracing::debug!(error = %error.message, "a malformed binary message from the server");
                None
            }
        },
        _ => None,
    }
}

fn receive(shared: &Shared, text: &str, bins: &[Bytes]) {
    let envelope = match envelope::parse(text, ANY_NAME) {
        Ok(envelope) => envelope,
        Err(Refused { ack, error }) => return answer(shared, ack, Err(error)),
    };
    match envelope {
        Envelope::Reply { id, result } => {
            shared.resolve(id, result.map(|data| Json { text: data.to_owned(), bins: bins.to_vec() }));
        }
        Envelope::Event { name, data, ack, rooms } => {
            if let Some(offsets) = rooms {
                let epoch = offsets.epoch.and_then(|e| serde_json::from_str::<String>(e.get()).ok());
                if let Some(epoch) = epoch {
                    adopt_epoch(shared, &epoch);
                }
                record_offsets(shared, offsets.rooms.get());
            }
            if name == "$resync" {
                resync(shared, data);
            }
            let handler = shared.handlers.read().unwrap_or_else(|p| p.into_inner()).get(&*name).cloned();
            match handler.and_then(|h| h(data, bins)) {
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

/// A history that started over (a new epoch): offsets of the old one mean nothing.
fn adopt_epoch(shared: &Shared, epoch: &str) {
    let mut hello = shared.hello.write().unwrap_or_else(|p| p.into_inner());
    if hello.epoch != epoch {
        hello.epoch = epoch.to_owned();
        shared.offsets().clear();
    }
}

/// `$resync`: messages of these rooms were lost; their offsets are forgotten (all of
/// them under a new epoch), so that a later `$resume` does not claim them. The
/// application hears the event too (`on("$resync")`) and fetches state again.
fn resync(shared: &Shared, data: &str) {
    let Ok(resync) = serde_json::from_str::<crate::protocol::Resync>(data) else { return };
    adopt_epoch(shared, &resync.epoch);
    let mut offsets = shared.offsets();
    for room in &resync.rooms {
        offsets.remove(room);
    }
}

/// Keeps the highest offset seen per room.
fn record_offsets(shared: &Shared, rooms: &str) {
    let Ok(rooms) = serde_json::from_str::<HashMap<String, u64>>(rooms) else { return };
    let mut offsets = shared.offsets();
    for (room, offset) in rooms {
        let seen = offsets.entry(room).or_default();
        *seen = (*seen).max(offset);
    }
}

fn answer(shared: &Shared, ack: Option<u64>, result: Reply) {
    match (ack, result) {
        (Some(id), Ok(data)) => shared.answer(data.wrap(|data| envelope::reply(id, Ok(data)))),
        (Some(id), Err(error)) => shared.answer(Json::plain(envelope::reply(id, Err(&error)))),
        // The server did not ask for an answer: a client reports nothing back.
        (None, Err(error)) => tracing::debug!(%error, "a server event the client could not handle"),
        (None, Ok(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_decide_reconnection() {
        for code in [1001, 1006, 1011, 1012, 1013, 4100, 4999] {
            assert!(may_reconnect(code), "{code}");
        }
        for code in [1000, 1002, 1008, 1009, 4000, 4099] {
            assert!(!may_reconnect(code), "{code}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_only_shortens() {
        let policy = super::super::Reconnect { jitter: 0.0, ..Default::default() };
        let delays: Vec<u128> = (1..=7).map(|a| backoff(&policy, a).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
        let policy = super::super::Reconnect::default();
        for _ in 0..100 {
            let d = backoff(&policy, 2);
            assert!(d <= Duration::from_secs(1) && d >= Duration::from_millis(500), "{d:?}");
        }
    }
}
