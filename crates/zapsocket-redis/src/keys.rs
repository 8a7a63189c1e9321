//! Where everything lives in Redis. With prefix `zap`:
//!
//! | key or channel | type | holds |
//! |---|---|---|
//! | `zap:epoch` | string | the history's epoch (new when Redis lost its data) |
//! | `zap:seq` | string | the sequence number of the last publication |
//! | `zap:nodes` | sorted set | live nodes, scored by when their lease ends (ms) |
//! | `zap:requests` | channel | requests to every node |
//! | `zap:{ROOM}:o` | string | the room's last offset |
//! | `zap:{ROOM}:h` | stream | the room's history, entry id `OFFSET-0` |
//! | `zap:{ROOM}:p` | hash | presence: session id → member JSON |
//! | `zap:{ROOM}:n` | hash | presence: session id → node |
//! | `zap:{ROOM}:c` | channel | the room's messages (nodes with members subscribe) |
//! | `zap:{$s:SID}:s` | hash | session `SID`: `node` (empty when detached), `rec`, `until` |
//! | `zap:node:{NODE}:m` | set | the node's presence entries, `ROOM\0SID` |
//! | `zap:node:{NODE}:s` | set | the node's sessions |
//! | `zap:node:{NODE}:i` | channel | the node's inbox: its sockets' own rooms, answers |
//!
//! A room's keys share the hash tag `{ROOM}` (with `{`, `}` and `%` of the name
//! percent-encoded), so that they stay together should the layout move to Redis Cluster.
//! A socket's own room `$s:SID` is a room like the others; its messages go to the inbox
//! of the node its session is attached to, not to a channel of its own.

/// Key and channel names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// A room name made safe inside a hash tag.
fn tag(room: &str) -> String {
    let mut out = String::with_capacity(room.len() + 2);
    out.push('{');
    for c in room.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    pub(crate) fn seq(&self) -> String {
        format!("{}:seq", self.prefix)
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub(crate) fn requests(&self) -> String {
        format!("{}:requests", self.prefix)
    }

    fn room(&self, room: &str, what: &str) -> String {
        format!("{}:{}:{what}", self.prefix, tag(room))
    }

    pub(crate) fn offset(&self, room: &str) -> String {
        self.room(room, "o")
    }

    pub(crate) fn stream(&self, room: &str) -> String {
        self.room(room, "h")
    }

    pub(crate) fn presence(&self, room: &str) -> String {
        self.room(room, "p")
    }

    pub(crate) fn presence_nodes(&self, room: &str) -> String {
        self.room(room, "n")
    }

    /// The channel of a named room or `$all`; a socket's room has none (its node's inbox).
    pub(crate) fn channel(&self, room: &str) -> Option<String> {
        (!room.starts_with("$s:")).then(|| self.room(room, "c"))
    }

    pub(crate) fn session(&self, sid: &str) -> String {
        self.room(&format!("$s:{sid}"), "s")
    }

    /// `(start, end)` of a node's keys: `START NODE END` + `m`, `s` or `i`.
    pub(crate) fn node_parts(&self) -> (String, String) {
        (format!("{}:node:{{", self.prefix), "}:".to_owned())
    }

    fn node(&self, node: &str, what: &str) -> String {
        let (start, end) = self.node_parts();
        format!("{start}{node}{end}{what}")
    }

    pub(crate) fn node_members(&self, node: &str) -> String {
        self.node(node, "m")
    }

    pub(crate) fn node_sessions(&self, node: &str) -> String {
        self.node(node, "s")
    }

    pub(crate) fn inbox(&self, node: &str) -> String {
        self.node(node, "i")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_share_a_hash_tag_that_the_name_cannot_break() {
        let k = Keys::new("zap");
        assert_eq!(k.offset("lobby"), "zap:{lobby}:o");
        assert_eq!(k.stream("a}b{c%"), "zap:{a%7Db%7Bc%25}:h");
        assert_eq!(k.channel("$all").as_deref(), Some("zap:{$all}:c"));
        assert_eq!(k.channel("$s:x"), None);
        assert_eq!(k.session("x"), "zap:{$s:x}:s");
        assert_eq!(k.inbox("n-1"), "zap:node:{n-1}:i");
        assert_ne!(k.offset("a%7Db"), k.offset("a}b"), "the encoding is one to one");
    }
}
