//! The data of the protocol's reserved events and requests (docs/PROTOCOL.md,
//! *Reserved events*), shared by the server, the Rust client and the TypeScript
//! declarations.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A room member as presence shows it: its session id and public data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Member {
    /// The member's session id.
    pub id: String,
    /// Its public per-socket data (e.g. `{"name": "ada"}`).
    pub data: serde_json::Value,
}

/// The data of `$joined` and `$left`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct PresenceEvent {
    /// The room.
    pub room: String,
    /// Who joined or left.
    pub member: Member,
}

/// The data of `$join`, `$leave` and `$members` requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct RoomRequest {
    /// The room.
    pub room: String,
}

/// The reply to `$join` and `$members`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct MembersReply {
    /// The room.
    pub room: String,
    /// Its members on every node, in no particular order; empty when the room has more
    /// than [`HubConfig::max_presence`](crate::HubConfig::max_presence) members.
    pub members: Vec<Member>,
    /// How many members the room has.
    #[serde(default)]
    pub count: usize,
}

/// The data of `$resync`: messages of these rooms were lost for this socket and cannot
/// be replayed (a new epoch, or a gap that left the history): fetch their state again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Resync {
    /// The rooms (`$all` and `$s:SID` included when they are concerned).
    pub rooms: Vec<String>,
    /// The epoch from now on.
    pub epoch: String,
}
