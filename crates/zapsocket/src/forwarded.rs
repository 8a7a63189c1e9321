//! The client's address behind reverse proxies: taken from `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` only when the connection comes from a proxy the server trusts.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network, `ADDRESS/PREFIX` (`10.0.0.0/8`, `fd00::/8`) or one address
/// (`127.0.0.1`, `::1`): what [`ServerBuilder::trusted_proxy`](crate::ServerBuilder::trusted_proxy)
/// takes.
///
/// ```
/// let net: zapsocket::IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<zapsocket::IpNet>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr`'s first `prefix` bits; `None` when `prefix` is longer
    /// than the address (32 bits for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// Whether `ip` is in this network. An IPv4 address mapped into IPv6
    /// (`::ffff:a.b.c.d`) is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(net.to_bits().into(), ip.to_bits().into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(net.to_bits(), ip.to_bits(), self.prefix, 128),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let prefix = u32::from(prefix);
    prefix == 0 || (a ^ b) >> (bits - prefix) == 0
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl From<IpAddr> for IpNet {
    fn from(addr: IpAddr) -> Self {
        let addr = canonical(addr);
        IpNet { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a text is not an [`IpNet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidIpNet(String);

impl fmt::Display for InvalidIpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an IP network (ADDRESS or ADDRESS/PREFIX): {:?}", self.0)
    }
}

impl std::error::Error for InvalidIpNet {}

impl FromStr for IpNet {
    type Err = InvalidIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidIpNet(s.to_owned());
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| invalid()),
            Some((addr, prefix)) => {
                let addr = addr.parse::<IpAddr>().map_err(|_| invalid())?;
                let prefix = prefix.parse::<u8>().map_err(|_| invalid())?;
                IpNet::new(canonical(addr), prefix).ok_or_else(invalid)
            }
        }
    }
}

/// The client's address for a request from `peer` whose header `NAME` has the values
/// `header(NAME)` (each header line, in order): `peer` itself unless
/// it is a trusted proxy; then the forwarded chain (`Forwarded`'s `for=`, else
/// `X-Forwarded-For`) walked from the nearest hop back, to the first address that is
/// not a trusted proxy. A hop that cannot be read (`unknown`, an obfuscated name,
/// garbage) stops the walk at the last address known; a chain of trusted proxies only
/// gives its first hop.
pub(crate) fn client_ip<'a>(
    peer: IpAddr,
    trusted: &[IpNet],
    header: impl Fn(&'static str) -> Vec<&'a str>,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> =
        header("forwarded").iter().flat_map(|v| v.split(',')).map(forwarded_for).collect();
    if hops.is_empty() {
        hops =
            header("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|hop| node(hop.trim())).collect();
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The `for=` address of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })?;
    node(value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value))
}

/// An address with an optional port: `192.0.2.43`, `192.0.2.43:47011`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node(text: &str) -> Option<IpAddr> {
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, _port) = rest.split_once(']')?;
        return addr.parse().ok().map(canonical);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (addr, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, trusted: &[&str], headers: &[(&str, &str)]) -> IpAddr {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let header = |name: &'static str| {
            headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
        };
        client_ip(ip(peer), &trusted, header)
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains(ip("192.168.255.1")) && !net.contains(ip("192.169.0.1")));
        assert!(net.contains(ip("::ffff:192.168.1.1")), "IPv4-mapped IPv6");
        assert!("fd00::/8".parse::<IpNet>().unwrap().contains(ip("fdab::1")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("8.8.8.8")));
        assert!(!"0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("::1")));
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
        for bad in ["", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let xff = [("X-Forwarded-For", "203.0.113.7")];
        assert_eq!(client("198.51.100.1", &["10.0.0.0/8"], &xff), ip("198.51.100.1"));
        assert_eq!(client("10.0.0.2", &["10.0.0.0/8"], &xff), ip("203.0.113.7"));
        assert_eq!(client("10.0.0.2", &[], &xff), ip("10.0.0.2"), "no trusted proxies: the peer");
        assert_eq!(client("10.0.0.2", &["10.0.0.0/8"], &[]), ip("10.0.0.2"), "no header: the peer");
    }

    #[test]
    fn the_chain_is_walked_from_the_nearest_hop_to_the_first_untrusted() {
        let trusted = ["10.0.0.0/8", "127.0.0.1"];
        // The client wrote "1.1.1.1" itself (spoofed); 203.0.113.7 is who reached the
        // first trusted proxy.
        let chain = [("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &trusted, &chain), ip("203.0.113.7"));
        let split = [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.7 , 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &trusted, &split), ip("203.0.113.7"), "several headers, in order");
        let all_trusted = [("x-forwarded-for", "10.0.0.9, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &trusted, &all_trusted), ip("10.0.0.9"));
        let garbage = [("x-forwarded-for", "203.0.113.7, nonsense, 10.0.0.5")];
        assert_eq!(client("127.0.0.1", &trusted, &garbage), ip("10.0.0.5"), "stops at what it cannot read");
        let ports = [("x-forwarded-for", "203.0.113.7:5000, [2001:db8::1]:80")];
        assert_eq!(client("127.0.0.1", &trusted, &ports), ip("2001:db8::1"));
    }

    #[test]
    fn forwarded_comes_first_and_reads_rfc_7239() {
        let trusted = ["10.0.0.0/8"];
        let both = [
            ("X-Forwarded-For", "198.51.100.9"),
            ("Forwarded", r#"for=192.0.2.43;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1"#),
        ];
        assert_eq!(client("10.0.0.1", &trusted, &both), ip("2001:db8:cafe::17"));
        let quoted_v4 = [("forwarded", r#"For="192.0.2.43:47011""#)];
        assert_eq!(client("10.0.0.1", &trusted, &quoted_v4), ip("192.0.2.43"));
        let unknown = [("forwarded", "for=192.0.2.43, for=unknown")];
        assert_eq!(client("10.0.0.1", &trusted, &unknown), ip("10.0.0.1"), "an unknown hop: the peer");
        let obfuscated = [("forwarded", "for=_hidden, for=10.0.0.7")];
        assert_eq!(client("10.0.0.1", &trusted, &obfuscated), ip("10.0.0.7"));
        let no_for = [("forwarded", "proto=https;by=10.0.0.1")];
        assert_eq!(client("10.0.0.1", &trusted, &no_for), ip("10.0.0.1"));
    }
}
