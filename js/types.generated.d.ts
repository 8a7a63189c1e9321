// TypeScript declarations of the events and procedures of a zapsocket-realtime Hub,
// generated from its Rust types (ts-rs) by Hub::typescript / Hub::write_typescript.
// Do not edit: regenerate them.

/**
 * The input of `add`.
 */
export type AddInput = { 
/**
 * A number.
 */
a: number, 
/**
 * Another.
 */
b: number, };

/**
 * The input of `ask`: what to send back to the asker, with an ack.
 */
export type AskInput = { 
/**
 * The event to emit.
 */
event: string, 
/**
 * Its data (byte arrays included).
 */
data?: unknown, 
/**
 * How long to wait for the ack (default 5,000, at most 10,000).
 */
timeout_ms?: number, };

/**
 * `chat`, from a client: the text, and the room (default: every room joined).
 */
export type ChatMessage = { 
/**
 * 1 to 4096 bytes.
 */
text: string, 
/**
 * The room; the sender must be in it.
 */
room?: string, };

/**
 * `chat`, from the server, to each room the message went to.
 */
export type ChatRelay = { 
/**
 * The sender's name.
 */
from: string, 
/**
 * The text.
 */
text: string, 
/**
 * The room.
 */
room: string, };

/**
 * The reply to `chat`: where it went.
 */
export type ChatReply = { 
/**
 * The rooms.
 */
rooms: Array<string>, };

/**
 * An error reply: a code and a message. What a request (an event with an ack, or a
 * call) fails with, on either side, and what a handler returns to choose the code its
 * peer sees (any other error type becomes `handler_error`).
 */
export type ErrorData = { 
/**
 * The error code.
 */
code: string, 
/**
 * A human-readable message.
 */
message: string, };

/**
 * The input of `fail`.
 */
export type FailInput = { 
/**
 * The error message.
 */
message: string, };

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

/**
 * A room member as presence shows it: its session id and public data.
 */
export type Member = { 
/**
 * The member's session id.
 */
id: string, 
/**
 * Its public per-socket data (e.g. `{"name": "ada"}`).
 */
data: JsonValue, };

/**
 * The reply to `$join` and `$members`.
 */
export type MembersReply = { 
/**
 * The room.
 */
room: string, 
/**
 * Its members on every node, in no particular order; empty when the room has more
 * than [`HubConfig::max_presence`](crate::HubConfig::max_presence) members.
 */
members: Array<Member>, 
/**
 * How many members the room has.
 */
count: number, };

/**
 * The data of `$joined` and `$left`.
 */
export type PresenceEvent = { 
/**
 * The room.
 */
room: string, 
/**
 * Who joined or left.
 */
member: Member, };

/**
 * The data of `$resync`: messages of these rooms were lost for this socket and cannot
 * be replayed (a new epoch, or a gap that left the history): fetch their state again.
 */
export type Resync = { 
/**
 * The rooms (`$all` and `$s:SID` included when they are concerned).
 */
rooms: Array<string>, 
/**
 * The epoch from now on.
 */
epoch: string, };

/**
 * `set_name`: the socket's new name (1–32 characters, no control characters).
 */
export type SetName = { 
/**
 * The name.
 */
name: string, };

/**
 * The input of `sleep`.
 */
export type SleepInput = { 
/**
 * How long, 0 to 10,000 ms.
 */
ms: number, };

/** Events a client sends: the data, and the data of the reply when it asks for an ack. */
export interface ClientEvents {
  "ask": { data: AskInput; reply: unknown };
  "chat": { data: ChatMessage; reply: ChatReply };
  "echo": { data: unknown; reply: unknown };
  "set_name": { data: SetName; reply: SetName };
}

/** Events the server sends, with their data. */
export interface ServerEvents {
  "$error": ErrorData;
  "$joined": PresenceEvent;
  "$left": PresenceEvent;
  "$resync": Resync;
  "chat": ChatRelay;
  "echo": unknown;
}

/** Procedures: the input and the output of each. */
export interface Procedures {
  "add": { input: AddInput; output: number };
  "echo": { input: unknown; output: unknown };
  "fail": { input: FailInput; output: null };
  "sleep": { input: SleepInput; output: null };
}
