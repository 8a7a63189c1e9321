//! `zap serve --admin-token TOKEN`: an admin page at `/admin?token=TOKEN` (socket.io's
//! Admin UI, built in): nodes, connections, rooms with member counts, messages and
//! bytes per second in and out as live charts, recent disconnect reasons. The page polls
//! `/admin/data?token=TOKEN` (JSON) every second. Without the token (or with another):
//! 401; without `--admin-token`: 404, as for any unknown path.
//!
//! The data is a snapshot that a task takes every second (presence and the node list
//! are asynchronous; the HTTP hook is not), so a request never waits for Redis.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use zapsocket::{HttpResponse, Request};
use zapsocket_realtime::Hub;

/// The admin page (self-contained: no script or style from elsewhere).
const ADMIN_HTML: &str = include_str!("../assets/admin.html");

/// How often the snapshot is taken.
const EVERY: Duration = Duration::from_secs(1);
/// The most rooms listed (the largest on this node).
const MAX_ROOMS: usize = 100;
/// The most rooms whose members are counted on every node (one presence lookup each).
const MAX_COUNTED: usize = 20;

/// The admin page's token and the latest snapshot of what it shows.
pub(crate) struct Admin {
    token: String,
    snapshot: Mutex<String>,
}

impl Admin {
    /// Starts taking snapshots of `hub` (until the hub is dropped); the first is taken
    /// before this returns.
    pub(crate) async fn start(token: String, hub: &Hub) -> Arc<Admin> {
        let admin = Arc::new(Admin { token, snapshot: Mutex::new(snapshot(hub).await) });
        let weak = Arc::downgrade(&admin);
        let hub = hub.clone();
        tokio::spawn(async move {
            loop {
                zapsocket::time::sleep(EVERY).await;
                let text = snapshot(&hub).await;
                let Some(admin) = weak.upgrade() else { return };
                *admin.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = text;
            }
        });
        admin
    }

    /// `/admin` and `/admin/data`; `None` for other paths.
    pub(crate) fn http(&self, request: &Request) -> Option<HttpResponse> {
        let page = match request.path() {
            "/admin" | "/admin/" => true,
            "/admin/data" => false,
            _ => return None,
        };
        if !self.allows(request) {
            let text =
                "401 Unauthorized: the admin page needs ?token=TOKEN, the --admin-token given to zap serve\n";
            return Some(HttpResponse::text(401, text).with_header("Cache-Control", "no-store"));
        }
        let response = if page {
            HttpResponse::html(ADMIN_HTML)
        } else {
            let json = self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            HttpResponse::bytes("application/json", json)
        };
        Some(response.with_header("Cache-Control", "no-store"))
    }

    /// The token in the query (`?token=`) or as `Authorization: Bearer`, compared in
    /// constant time.
    fn allows(&self, request: &Request) -> bool {
        let bearer =
            request.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
        let given = request.query_param("token").or(bearer).unwrap_or_default();
        same(given.as_bytes(), self.token.as_bytes())
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the page shows, as JSON.
async fn snapshot(hub: &Hub) -> String {
    let metrics = hub.metrics();
    let now = millis(SystemTime::now());
    let nodes = match hub.nodes().await {
        Ok(nodes) => nodes
            .into_iter()
            .map(|n| {
                // One node in memory holds no lease (its end is far away).
                let lease = n.lease_until_ms.checked_sub(now).filter(|ms| *ms < 86_400_000);
                json!({"id": n.id, "lease_s": lease.map(|ms| ms as f64 / 1000.0)})
            })
            .collect(),
        Err(_) => vec![json!({"id": hub.node(), "lease_s": null})],
    };
    let many = nodes.len() > 1;
    let mut rooms = hub.rooms();
    rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rooms.truncate(MAX_ROOMS);
    let mut listed = Vec::with_capacity(rooms.len());
    for (i, (room, here)) in rooms.into_iter().enumerate() {
        // With other nodes, the largest rooms are counted on all of them.
        let members =
            if many && i < MAX_COUNTED { hub.members(&room).await.map_or(here, |m| m.len()) } else { here };
        listed.push(json!({"room": room, "members": members}));
    }
    let note = if many {
        format!("with members on this node; the largest {MAX_COUNTED} counted on every node")
    } else {
        String::new()
    };
    let disconnects: Vec<_> = hub
        .recent_disconnects()
        .into_iter()
        .map(|d| json!({"session": d.session, "code": d.code, "reason": d.reason, "at_ms": millis(d.at)}))
        .collect();
    json!({
        "node": hub.node(),
        "time_ms": now,
        "connections": metrics.connections,
        "connections_total": metrics.connections_total,
        "messages_in": metrics.messages_in,
        "messages_out": metrics.messages_out,
        "bytes_in": metrics.bytes_in,
        "bytes_out": metrics.bytes_out,
        "nodes": nodes,
        "rooms": listed,
        "rooms_note": note,
        "disconnects": disconnects,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secret2"));
        assert!(!super::same(b"", b"secret"));
    }
}
