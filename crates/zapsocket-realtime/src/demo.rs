//! The hub `zap serve` runs at `/ws`: a chat with names and rooms, and small helpers
//! for clients' tests (docs/PROTOCOL.md, *zap serve's built-in chat*). Its types are
//! the ones in `js/types.generated.d.ts`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::binary::Payload;
use crate::error::ReplyError;
use crate::hub::Hub;
use crate::socket::Socket;

/// The longest name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// The longest chat text, in bytes.
const MAX_TEXT: usize = 4096;
/// The longest wait of `sleep` and `ask`, in milliseconds.
const MAX_WAIT_MS: u64 = 10_000;

/// `set_name`: the socket's new name (1–32 characters, no control characters).
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct SetName {
    /// The name.
    pub name: String,
}

/// `chat`, from a client: the text, and the room (default: every room joined).
#[derive(Clone, Debug, Deserialize, TS)]
pub struct ChatMessage {
    /// 1 to 4096 bytes.
    pub text: String,
    /// The room; the sender must be in it.
    #[ts(optional)]
    pub room: Option<String>,
}

/// `chat`, from the server, to each room the message went to.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct ChatRelay {
    /// The sender's name.
    pub from: String,
    /// The text.
    pub text: String,
    /// The room.
    pub room: String,
}

/// The reply to `chat`: where it went.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct ChatReply {
    /// The rooms.
    pub rooms: Vec<String>,
}

/// The input of `add`.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct AddInput {
    /// A number.
    pub a: f64,
    /// Another.
    pub b: f64,
}

/// The input of `sleep`.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct SleepInput {
    /// How long, 0 to 10,000 ms.
    pub ms: u64,
}

/// The input of `ask`: what to send back to the asker, with an ack.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct AskInput {
    /// The event to emit.
    pub event: String,
    /// Its data (byte arrays included).
    #[ts(optional)]
    pub data: Option<Payload>,
    /// How long to wait for the ack (default 5,000, at most 10,000).
    #[ts(optional)]
    pub timeout_ms: Option<u64>,
}

/// The input of `fail`.
#[derive(Clone, Debug, Serialize, Deserialize, TS)]
pub struct FailInput {
    /// The error message.
    pub message: String,
}

/// The hub of `zap serve`: the chat (`set_name`, `chat`, names from `?name=`) and the
/// helpers `echo` (an event and a procedure), `add`, `sleep`, `ask`, `fail`.
pub fn hub(hub: Hub) -> Hub {
    hub.use_connect(|socket: Socket| async move {
        let name = socket.request().and_then(|r| r.query_param("name")).and_then(|n| valid_name(&n).ok());
        let name = name.unwrap_or_else(|| format!("guest-{:04}", rand::random::<u16>() % 10_000));
        socket.set_public_data(serde_json::json!({ "name": name }));
        Ok(())
    });
    hub.on("set_name", |socket: Socket, input: SetName| async move {
        let name = valid_name(&input.name)?;
        socket.set_public_data(serde_json::json!({ "name": name }));
        Ok::<_, ReplyError>(SetName { name })
    });
    hub.on("chat", chat);
    hub.declare_event::<ChatRelay>("chat");
    // Whatever comes, byte arrays included, goes back as it came: the reply with an
    // ack, else an `echo` event.
    hub.on("echo", |socket: Socket, data: Payload| async move {
        if !socket.ack_requested() {
            socket.emit("echo", &data)?;
        }
        Ok::<_, ReplyError>(data)
    });
    hub.declare_event::<Payload>("echo");
    hub.procedure("echo", |_: Socket, data: Payload| async move { Ok::<_, ReplyError>(data) });
    hub.procedure("add", |_: Socket, input: AddInput| async move { Ok::<_, ReplyError>(input.a + input.b) });
    hub.procedure("sleep", |_: Socket, input: SleepInput| async move {
        if input.ms > MAX_WAIT_MS {
            return Err(ReplyError::bad_payload(format!("ms must be at most {MAX_WAIT_MS}")));
        }
        zapsocket::time::sleep(Duration::from_millis(input.ms)).await;
        Ok(())
    });
    hub.on("ask", |socket: Socket, input: AskInput| async move {
        let timeout = Duration::from_millis(input.timeout_ms.unwrap_or(5_000).min(MAX_WAIT_MS));
        socket.timeout(timeout).emit_with_ack::<_, Payload>(&input.event, &input.data).await
    });
    hub.procedure("fail", |_: Socket, input: FailInput| async move { Err::<(), _>(input.message) });
    hub
}

async fn chat(socket: Socket, input: ChatMessage) -> Result<ChatReply, ReplyError> {
    if input.text.is_empty() || input.text.len() > MAX_TEXT {
        return Err(ReplyError::bad_payload(format!("text must be 1 to {MAX_TEXT} bytes")));
    }
    let joined = socket.rooms();
    let rooms = match input.room {
        Some(room) if joined.contains(&room) => vec![room],
        Some(room) => return Err(ReplyError::forbidden(format!("not in room {room:?}"))),
        None if joined.is_empty() => return Err(ReplyError::forbidden("not in any room: $join one first")),
        None => joined,
    };
    let from = socket.public_data().get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
    for room in &rooms {
        let relay = ChatRelay { from: from.clone(), text: input.text.clone(), room: room.clone() };
        socket.hub().to(room).emit("chat", &relay)?;
    }
    Ok(ChatReply { rooms })
}

/// A name trimmed, 1–32 characters, without control characters.
fn valid_name(name: &str) -> Result<String, ReplyError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ReplyError::bad_payload(format!(
            "a name is 1 to {MAX_NAME_CHARS} characters, no control characters"
        )));
    }
    Ok(name.to_owned())
}
