//! Who gets in: the origin allow-list, the connection caps and the `authorize` hook's
//! answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::extensions::Extensions;
use crate::rate::{RateLimit, TokenBucket};
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
    pub(crate) no_compression: bool,
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

    /// Declines permessage-deflate for this connection, whatever the client offers and
    /// the server's [`deflate`](crate::ServerBuilder::deflate) setting: for clients known
    /// to handle it badly (some `User-Agent`s), or to spare CPU for a class of clients.
    ///
    /// ```
    /// # fn hook(request: &zapsocket::Request) -> zapsocket::Accept {
    /// let old_safari = request.header("user-agent").is_some_and(|ua| ua.contains("Version/15"));
    /// let accept = zapsocket::Accept::new();
    /// if old_safari { accept.no_compression() } else { accept }
    /// # }
    /// ```
    pub fn no_compression(mut self) -> Self {
        self.no_compression = true;
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

/// The most addresses the per-IP handshake rate keeps a bucket for. Past it, buckets
/// that are full again are forgotten; if all are in use, a new address is not counted
/// (the server-wide rate still applies): a crowd of addresses cannot grow this table, nor
/// lock out addresses it has not seen.
pub const MAX_RATE_ADDRESSES: usize = 65_536;

/// The handshake rates of a server: server-wide and per IP address (IPv6 by /64, the
/// block one host usually has).
#[derive(Debug, Default)]
pub(crate) struct Rates {
    state: Mutex<RateState>,
}

#[derive(Debug, Default)]
struct RateState {
    server: Option<TokenBucket>,
    addresses: HashMap<IpAddr, TokenBucket>,
    /// When full buckets were last forgotten: at most once a second, so that a crowd of
    /// new addresses does not make every handshake walk the whole table.
    pruned_at: Option<Instant>,
}

impl Rates {
    /// Takes a handshake from the buckets of `ip`, or gives the 429 to answer. A refusal
    /// takes nothing: refused by its address's bucket, a handshake does not count against
    /// the server's, and the other way round.
    pub(crate) fn take(
        &self,
        ip: IpAddr,
        total: Option<RateLimit>,
        per_ip: Option<RateLimit>,
        now: Instant,
    ) -> Result<(), HttpResponse> {
        let refuse = |bucket: &mut TokenBucket, who: &str| {
            // Whole seconds until a token is back (at least 1; a minute if never).
            let wait = bucket.wait(now).map_or(60, |d| d.as_secs_f64().ceil().max(1.0) as u64);
            HttpResponse::text(429, format!("too many handshakes {who}, try again later"))
                .with_header("Retry-After", wait.to_string())
        };
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let RateState { server, addresses, pruned_at } = &mut *guard;
        let ip = rate_key(ip);
        let mut own = None;
        if let Some(limit) = per_ip {
            if !addresses.contains_key(&ip)
                && addresses.len() >= MAX_RATE_ADDRESSES
                && pruned_at.is_none_or(|at| now.saturating_duration_since(at).as_secs() >= 1)
            {
                *pruned_at = Some(now);
                addresses.retain(|_, b| !b.is_full(now));
            }
            if addresses.len() < MAX_RATE_ADDRESSES || addresses.contains_key(&ip) {
                let bucket = addresses.entry(ip).or_insert_with(|| TokenBucket::full(limit, now));
                if bucket.wait(now) != Some(Duration::ZERO) {
                    return Err(refuse(bucket, "from your address"));
                }
                own = Some(bucket);
            }
        }
        if let Some(limit) = total {
            let bucket = server.get_or_insert_with(|| TokenBucket::full(limit, now));
            if !bucket.take(now) {
                return Err(refuse(bucket, "on this server"));
            }
        }
        if let Some(bucket) = own {
            bucket.take(now);
        }
        Ok(())
    }
}

/// The address a per-IP bucket is kept for: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by
/// its /64 prefix.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_average_rate_per_address() {
        let rates = Rates::default();
        let rate = RateLimit::new(2.0, 3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            rates.take(a, None, Some(rate), t0).unwrap();
        }
        let refused = rates.take(a, None, Some(rate), t0).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused.headers.contains(&("Retry-After".into(), "1".into())), "{:?}", refused.headers);
        // Another address has its own bucket.
        rates.take(b, None, Some(rate), t0).unwrap();
        // Half a second gives one handshake back (2 a second), not two.
        let t1 = t0 + Duration::from_millis(500);
        rates.take(a, None, Some(rate), t1).unwrap();
        assert!(rates.take(a, None, Some(rate), t1).is_err());
    }

    #[test]
    fn the_server_wide_rate_counts_every_address_and_a_refusal_costs_nothing() {
        let rates = Rates::default();
        let (total, per_ip) = (RateLimit::new(1.0, 2), RateLimit::new(1.0, 1));
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        rates.take(ip(1), Some(total), Some(per_ip), t0).unwrap();
        // Refused by its own bucket: the server's is not charged.
        assert!(rates.take(ip(1), Some(total), Some(per_ip), t0).is_err());
        rates.take(ip(2), Some(total), Some(per_ip), t0).unwrap();
        let refused = rates.take(ip(3), Some(total), Some(per_ip), t0).unwrap_err();
        assert!(String::from_utf8_lossy(&refused.body).contains("on this server"));
        // Refused by the server's bucket: its own is not charged either.
        rates.take(ip(3), Some(total), Some(per_ip), t0 + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn ipv6_addresses_share_a_bucket_per_64_block() {
        let rates = Rates::default();
        let rate = RateLimit::new(1.0, 1);
        let t0 = Instant::now();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff".parse().unwrap(),
            "2001:db8:0:1::1".parse().unwrap(),
        );
        rates.take(a, None, Some(rate), t0).unwrap();
        assert!(rates.take(b, None, Some(rate), t0).is_err(), "same /64");
        rates.take(c, None, Some(rate), t0).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        rates.take(mapped, None, Some(rate), t0).unwrap();
        assert!(rates.take("10.0.0.1".parse().unwrap(), None, Some(rate), t0).is_err(), "mapped is v4");
    }

    #[test]
    fn the_address_table_stays_bounded_and_forgets_full_buckets() {
        let rates = Rates::default();
        let rate = RateLimit::new(1.0, 2);
        let t0 = Instant::now();
        let ip = |n: usize| IpAddr::from(u32::try_from(n).unwrap().to_be_bytes());
        for n in 0..MAX_RATE_ADDRESSES {
            rates.take(ip(n), None, Some(rate), t0).unwrap();
        }
        // Full of buckets in use: a new address is let in without a bucket.
        for _ in 0..5 {
            rates.take(ip(MAX_RATE_ADDRESSES), None, Some(rate), t0).unwrap();
        }
        assert_eq!(rates.state.lock().unwrap().addresses.len(), MAX_RATE_ADDRESSES);
        // Once the old buckets are full again they are forgotten and the new one counted.
        let later = t0 + Duration::from_secs(2);
        rates.take(ip(MAX_RATE_ADDRESSES), None, Some(rate), later).unwrap();
        assert_eq!(rates.state.lock().unwrap().addresses.len(), 1);
        rates.take(ip(MAX_RATE_ADDRESSES), None, Some(rate), later).unwrap();
        assert!(rates.take(ip(MAX_RATE_ADDRESSES), None, Some(rate), later).is_err());
    }
}
