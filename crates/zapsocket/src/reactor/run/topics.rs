//! Pub/sub on one loop: who is subscribed to what, and delivering a published frame.

use super::*;

/// A topic's subscribers on this loop.
struct Topic {
    name: Arc<str>,
    members: Vec<usize>,
}

/// The loop's topics: ids for names, members for ids.
#[derive(Default)]
pub(super) struct Topics {
    ids: HashMap<Arc<str>, u32>,
    list: Vec<Topic>,
    free: Vec<u32>,
}

impl Topics {
    pub(super) fn subscribe(&mut self, key: usize, mine: &mut Vec<u32>, name: &str) -> bool {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => {
                let name: Arc<str> = name.into();
                let topic = Topic { name: name.clone(), members: Vec::new() };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.list[id as usize] = topic;
                        id
                    }
                    None => {
                        self.list.push(topic);
                        (self.list.len() - 1) as u32
                    }
                };
                self.ids.insert(name, id);
                id
            }
        };
        if mine.contains(&id) {
            return false;
        }
        mine.push(id);
        self.list[id as usize].members.push(key);
        true
    }

    pub(super) fn unsubscribe(&mut self, key: usize, mine: &mut Vec<u32>, name: &str) -> bool {
        let Some(&id) = self.ids.get(name) else { return false };
        let Some(at) = mine.iter().position(|&t| t == id) else { return false };
        mine.swap_remove(at);
        self.leave(id, key);
        true
    }

    pub(super) fn leave(&mut self, id: u32, key: usize) {
        let topic = &mut self.list[id as usize];
        if let Some(at) = topic.members.iter().position(|&m| m == key) {
            topic.members.swap_remove(at);
        }
        if topic.members.is_empty() {
            self.ids.remove(&topic.name);
            topic.members = Vec::new();
            self.free.push(id);
        }
    }

    /// Whether `mine` (a socket's topic ids) holds `name`.
    pub(super) fn subscribed(&self, name: &str, mine: &[u32]) -> bool {
        self.ids.get(name).is_some_and(|id| mine.contains(id))
    }

    pub(super) fn members(&self, name: &str) -> &[usize] {
        match self.ids.get(name) {
            Some(&id) => &self.list[id as usize].members,
            None => &[],
        }
    }
}

/// Delivers what the callbacks published on this loop.
pub(super) fn deliver_published<S>(conns: &mut Slab<Conn<S>>, cx: &mut Cx) {
    let mut published = std::mem::take(&mut cx.published);
    for p in published.drain(..) {
        deliver(conns, cx, &p.target, &p.frame, p.except);
    }
    cx.published = published;
}

/// Queues `frame` for its target's sockets on this loop.
pub(super) fn deliver<S>(
    conns: &mut Slab<Conn<S>>,
    cx: &mut Cx,
    target: &Target,
    frame: &EncodedFrame,
    except: Option<usize>,
) {
    let config = &cx.shared.settings.config;
    let (max, policy) = (config.max_send_queue, config.slow_consumer);
    let dirty = &mut cx.dirty;
    let mut to = |key: usize, conn: &mut Conn<S>| {
        if Some(key) == except {
            return;
        }
        let Phase::Open(open) = &mut conn.phase else { return };
        if open.flags & TERMINATE != 0 || open.ws.state() != State::Open {
            return;
        }
        if open.ws.outbound().cost() >= max {
            match policy {
                SlowConsumer::DropMessage => return,
                _ => open.end(CloseCode::POLICY_VIOLATION, "send queue full"),
            }
        } else if open.ws.send_encoded(frame).is_err() {
            return;
        }
        open.mark(dirty, key);
    };
    match target {
        Target::Topic(name) => {
            for &key in cx.topics.members(name) {
                if let Some(conn) = conns.get_mut(key) {
                    to(key, conn);
                }
            }
        }
        Target::All => {
            for (key, conn) in conns.iter_mut() {
                to(key, conn);
            }
        }
    }
}
