//! Requests between nodes (socket.io's server API across nodes): the sockets of some
//! rooms, making them join or leave rooms or disconnect, events from server to server,
//! and the release of a session that another node resumes.
//!
//! A request is answered by this node directly and by every other live node through the
//! broker; each result says which live nodes did not answer in time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::{Core, ServerRoute};
use crate::error::{ErrorCode, ReplyError};
use crate::handler::BoxFuture;
use crate::registry::Rooms;
use crate::state::SocketState;

/// A socket anywhere in the cluster, as [`Operator::fetch_sockets`](crate::Operator::fetch_sockets)
/// finds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteSocket {
    /// Its session id (emit to it with `hub.to(RoomName::socket(&id))`).
    pub id: String,
    /// The node it is connected to.
    pub node: String,
    /// Its public data.
    pub data: serde_json::Value,
    /// Its named rooms.
    pub rooms: Vec<String>,
}

/// What the nodes answered: the results of those that did, and the live nodes that did
/// not answer in time (their sockets are missing from the results).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeResults<T> {
    /// The results.
    pub results: T,
    /// Live nodes that did not answer within the timeout.
    pub missing: Vec<String>,
}

impl<T> NodeResults<T> {
    /// Whether every live node answered.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// A request between nodes, as it travels (JSON, `{"fetch": {...}}`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Request {
    /// The sockets in `rooms` but not in `except`.
    Fetch { rooms: Vec<String>, except: Vec<String> },
    /// Make them join `room`.
    Join { rooms: Vec<String>, except: Vec<String>, room: String },
    /// Make them leave `room`.
    Leave { rooms: Vec<String>, except: Vec<String>, room: String },
    /// Close their connections (1000).
    Disconnect { rooms: Vec<String>, except: Vec<String> },
    /// A server-side event.
    Emit { event: String, data: Box<serde_json::value::RawValue> },
    /// End the connection of session `sid` (it is being resumed elsewhere).
    Release { sid: String },
}

/// The answer to a request, as it travels.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Sockets(Vec<RemoteSocket>),
    Count(usize),
    Reply(Box<serde_json::value::RawValue>),
    Error(ReplyError),
}

/// The JSON of a release request for session `sid`.
pub(crate) fn release_request(sid: &str) -> String {
    crate::envelope::to_json(&Request::Release { sid: sid.to_owned() })
}

impl Core {
    /// Sends `request` to every node (this one answers directly) and gathers the answers.
    async fn ask(&self, request: Request, timeout: Duration) -> NodeResults<Vec<(String, Answer)>> {
        let body = crate::envelope::to_json(&request);
        let node = self.broker.node().to_owned();
        let (local, remote) =
            tokio::join!(self.answer(&node, request), self.broker.request(None, &body, timeout));
        let mut results = vec![(node, local)];
        results.extend(parse(remote.answers));
        NodeResults { results, missing: remote.missing }
    }

    /// The sockets in `rooms` but not in `except`, on every node.
    pub(crate) async fn fetch_sockets(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        timeout: Duration,
    ) -> NodeResults<Vec<RemoteSocket>> {
        let answers = self.ask(Request::Fetch { rooms, except }, timeout).await;
        let mut sockets = Vec::new();
        for (_, answer) in answers.results {
            if let Answer::Sockets(found) = answer {
                sockets.extend(found);
            }
        }
        NodeResults { results: sockets, missing: answers.missing }
    }

    /// Runs a join, leave or disconnect request on every node; returns how many sockets
    /// it changed.
    pub(crate) async fn change_sockets(&self, request: Request, timeout: Duration) -> NodeResults<usize> {
        let answers = self.ask(request, timeout).await;
        let count = answers.results.iter().map(|(_, a)| if let Answer::Count(n) = a { *n } else { 0 }).sum();
        NodeResults { results: count, missing: answers.missing }
    }

    /// Sends a server-side event to the other nodes; returns each node's reply.
    pub(crate) async fn server_emit(
        &self,
        event: &str,
        data: Box<serde_json::value::RawValue>,
        timeout: Duration,
    ) -> NodeResults<Vec<(String, Result<String, ReplyError>)>> {
        let body = crate::envelope::to_json(&Request::Emit { event: event.to_owned(), data });
        let remote = self.broker.request(None, &body, timeout).await;
        let replies = parse(remote.answers)
            .map(|(node, answer)| {
                let reply = match answer {
                    Answer::Reply(raw) => Ok(raw.get().to_owned()),
                    Answer::Error(error) => Err(error),
                    _ => Err(ReplyError::new(ErrorCode::BAD_ENVELOPE, "an answer of the wrong kind")),
                };
                (node, reply)
            })
            .collect();
        NodeResults { results: replies, missing: remote.missing }
    }

    /// Answers a request from another node (or from this one).
    pub(crate) fn answer_json(self: &Arc<Self>, from: &str, body: &str) -> BoxFuture<String> {
        let core = self.clone();
        let from = from.to_owned();
        let request: Result<Request, _> = serde_json::from_str(body);
        Box::pin(async move {
            let answer = match request {
                Ok(request) => core.answer(&from, request).await,
                Err(e) => {
                    Answer::Error(ReplyError::new(ErrorCode::BAD_ENVELOPE, format!("from {from}: {e}")))
                }
            };
            crate::envelope::to_json(&answer)
        })
    }

    /// Answers `request` from node `from`.
    async fn answer(&self, from: &str, request: Request) -> Answer {
        match request {
            Request::Fetch { rooms, except } => {
                let node = self.broker.node().to_owned();
                let sockets = self.selected(&rooms, &except).into_iter().map(|s| RemoteSocket {
                    id: s.sid.to_string(),
                    node: node.clone(),
                    data: s.public(),
                    rooms: s.rooms(),
                });
                Answer::Sockets(sockets.collect())
            }
            Request::Join { rooms, except, room } => {
                let mut count = 0;
                for socket in self.selected(&rooms, &except) {
                    count += usize::from(self.join(&socket, &room).await.is_ok());
                }
                Answer::Count(count)
            }
            Request::Leave { rooms, except, room } => {
                let mut count = 0;
                for socket in self.selected(&rooms, &except) {
                    if socket.in_room(&room) && self.leave(&socket, &room).await.is_ok() {
                        count += 1;
                    }
                }
                Answer::Count(count)
            }
            Request::Disconnect { rooms, except } => {
                let sockets = self.selected(&rooms, &except);
                for socket in &sockets {
                    let sender = socket.sender.clone();
                    tokio::spawn(
                        async move { sender.close(zapsocket::CloseCode::NORMAL, "disconnected").await },
                    );
                }
                Answer::Count(sockets.len())
            }
            Request::Emit { event, data } => {
                let route: Option<ServerRoute> =
                    self.routes.server_events.read().unwrap_or_else(|p| p.into_inner()).get(&event).cloned();
                let Some(route) = route else {
                    let error =
                        ReplyError::new(ErrorCode::UNKNOWN_EVENT, format!("no server event {event:?}"));
                    return Answer::Error(error);
                };
                match route(from.to_owned(), data.get()) {
                    Ok(future) => match future.await {
                        Ok(json) => serde_json::value::RawValue::from_string(json.into_text()).map_or_else(
                            |e| Answer::Error(ReplyError::handler_error(e.to_string())),
                            Answer::Reply,
                        ),
                        Err(error) => Answer::Error(error),
                    },
                    Err(error) => Answer::Error(error),
                }
            }
            Request::Release { sid } => {
                let found = self.registry.socket(&sid);
                if let Some(socket) = &found {
                    socket.sender.terminate();
                }
                Answer::Count(usize::from(found.is_some()))
            }
        }
    }

    /// This node's sockets in any of `rooms` and in none of `except`.
    fn selected(&self, rooms: &[String], except: &[String]) -> Vec<Arc<SocketState>> {
        let registry = self.registry.read();
        let mut seen: HashSet<*const SocketState> = HashSet::new();
        let mut found: Vec<Arc<SocketState>> = Vec::new();
        for room in rooms {
            registry.for_each_member(room, |socket| {
                if !excluded(&registry, socket, except) && seen.insert(Arc::as_ptr(socket)) {
                    found.push(socket.clone());
                }
            });
        }
        found
    }
}

fn excluded(registry: &Rooms, socket: &SocketState, except: &[String]) -> bool {
    except.iter().any(|room| registry.contains(room, &socket.sid))
}

fn parse(answers: Vec<(String, String)>) -> impl Iterator<Item = (String, Answer)> {
    answers.into_iter().filter_map(|(node, body)| match serde_json::from_str(&body) {
        Ok(answer) => Some((node, answer)),
        Err(error) => {
            tracing::debug!(%node, %error, "an answer that could not be read");
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_cross_the_wire() {
        let request = Request::Fetch { rooms: vec!["a".into()], except: vec![] };
        let json = crate::envelope::to_json(&request);
        assert!(matches!(serde_json::from_str::<Request>(&json), Ok(Request::Fetch { .. })), "{json}");
        let data = serde_json::value::RawValue::from_string("[1,{\"x\":2}]".into()).unwrap();
        let json = crate::envelope::to_json(&Request::Emit { event: "e".into(), data });
        assert!(matches!(serde_json::from_str::<Request>(&json), Ok(Request::Emit { .. })), "{json}");
        let socket = RemoteSocket {
            id: "s".into(),
            node: "n".into(),
            data: serde_json::json!({"a": 1}),
            rooms: vec![],
        };
        for answer in
            [Answer::Sockets(vec![socket]), Answer::Count(3), Answer::Error(ReplyError::unavailable("x"))]
        {
            let json = crate::envelope::to_json(&answer);
            assert!(serde_json::from_str::<Answer>(&json).is_ok(), "{json}");
        }
        let reply = Answer::Reply(serde_json::value::RawValue::from_string("{\"k\":[1]}".into()).unwrap());
        let json = crate::envelope::to_json(&reply);
        assert!(
            matches!(serde_json::from_str::<Answer>(&json), Ok(Answer::Reply(r)) if r.get() == "{\"k\":[1]}"),
            "{json}"
        );
    }
}
