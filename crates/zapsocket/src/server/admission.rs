//! Who gets in: the origin allow-list, the connection caps and the `authorize` hook's
//! answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::extensions::Extensions;
use crate::request::Request;
use crate::server::HttpResponse;

/// The `authorize` hook's "yes": data to attach to the connection and headers to add to
/// its 101 response.
///
/// ```
/// struct UserId(u64);
/// let accept = zapsocket::Accept::new().data(UserId(7)).header("X-Session", "abc");
/// ```
#[derive(Debug, Default)]
pub struct Accept {
    pub(crate) extensions: Extensions,
    pub(crate) headers: Vec<(String, String)>,
}

impl Accept {
    /// Accepts with nothing attached.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches `value` (one per type), read later with
    /// [`WebSocket::data`](crate::WebSocket::data).
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Adds a header to the 101 response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Whether `request`'s `Origin` is allowed: any when `allowed` is empty. A request
/// without `Origin` does not come from a browser, the only client that cross-site
/// WebSocket hijacking can abuse, and is let through.
pub(crate) fn origin_allowed(request: &Request, allowed: &[String]) -> bool {
    match request.origin() {
        Some(origin) if !allowed.is_empty() => {
            let origin = origin.trim_end_matches('/');
            allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        }
        _ => true,
    }
}

/// The open connections, in total and per IP, against the server's caps.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One place under the caps, given back on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    /// A place for a connection from `ip`, or the 503 to answer.
    pub(crate) fn take(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: Option<usize>,
        max_per_ip: Option<usize>,
    ) -> Result<Permit, HttpResponse> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if max_total.is_some_and(|max| counts.0 >= max) {
            return Err(HttpResponse::text(503, "server is at its connection limit, try again later"));
        }
        let per_ip = counts.1.entry(ip).or_default();
        if max_per_ip.is_some_and(|max| *per_ip >= max) {
            return Err(HttpResponse::text(503, "too many connections from your address, try again later"));
        }
        *per_ip += 1;
        counts.0 += 1;
        Ok(Permit { slots: self.clone(), ip })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.0 -= 1;
        if let Some(n) = counts.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.1.remove(&self.ip);
            }
        }
    }
}
