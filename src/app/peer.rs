//! The client's address, for the failure limiter and the logs.
//!
//! It is the connection's peer, unless that peer is one of the proxies named
//! by `--trusted-proxy`: then it is the right-most address in
//! `X-Forwarded-For` that is not itself a trusted proxy. Each proxy appends
//! the address it received the request from, so entries to the right of
//! that one were written by proxies we trust, and entries to its left by
//! the client, who may write anything. Entries may carry a port, which is
//! dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed. Empty by default: the
/// header is then ignored, since any client can send it.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Raw bytes, not `to_str`: one non-ASCII byte the client wrote at the
        // far left would otherwise drop the whole header, and with it the
        // entries our own proxies appended. Header lines are one list, in
        // the order they arrived.
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .collect();
        for hop in hops.iter().rev() {
            // An entry we cannot read ends the walk at the last address
            // read: the nearest trusted hop's view. Skipping it instead
            // would reach entries no trusted hop vouches for (a proxy
            // writing `unknown` leaves the client's own entries next), and
            // a client could then pick a fresh address, and a fresh failure
            // budget, for every request.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }

    /// The client of a request: the connection's peer from axum's
    /// `ConnectInfo`, resolved through trusted proxies. A request with no
    /// connection info (driven in-process, as tests do) counts as one
    /// client, the unspecified address.
    pub fn client_of(&self, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
                self.client(c.0.ip(), headers)
            })
    }
}

/// One `X-Forwarded-For` entry: an address, bare or bracketed, with or
/// without the port some proxies append (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop.trim_ascii()).ok()?;
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Parses a `--trusted-proxy` value: a CIDR network, or a single address.
pub fn parse_network(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not a network (10.0.0.0/8) or an address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_network(n).unwrap()).collect())
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.2"), &h),
            ip("10.0.0.2")
        );
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client_whatever_it_wrote_to_its_left() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.10"]);
        // The client forged two entries; two proxies of ours appended theirs.
        let h = headers(&["1.1.1.1, 8.8.8.8", "198.51.100.7, 10.1.1.1"]);
        assert_eq!(p.client(ip("192.0.2.10"), &h), ip("198.51.100.7"));
        // Garbage the client wrote is never reached.
        let h = headers(&["not-an-ip, 198.51.100.7, 10.1.1.1"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // A chain of trusted hops only: the furthest one is the best known.
        let h = headers(&["10.9.9.9, 10.1.1.1"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.9.9.9"));
        // A malformed entry next to us stops the walk at the last good hop.
        let h = headers(&["198.51.100.7, bogus"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // No header: the proxy itself.
        assert_eq!(p.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    fn raw_headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn a_junk_byte_the_client_wrote_does_not_hide_what_our_proxies_appended() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = raw_headers(&[b"1.1.1.1\xff, 198.51.100.7"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        let h = raw_headers(&[b"caf\xc3\xa9", b"198.51.100.7, 10.1.1.1"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Junk where a trusted hop wrote stops the walk at the last good hop.
        let h = raw_headers(&[b"198.51.100.7, 10.1.1.1\xff"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn entries_with_a_port_or_brackets_are_read() {
        let p = proxies(&["10.0.0.0/8"]);
        for (value, client) in [
            ("198.51.100.7:5678", "198.51.100.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("198.51.100.7, 10.1.1.1:80", "198.51.100.7"),
            (
                "1.1.1.1, [::ffff:198.51.100.7]:80 ,[::ffff:10.1.1.1]",
                "198.51.100.7",
            ),
            // Unreadable next to us: the proxy itself is the best known.
            ("198.51.100.7:99999", "10.0.0.2"),
            ("[2001:db8::1", "10.0.0.2"),
            ("198.51.100.7, [10.1.1.1]x", "10.0.0.2"),
            ("198.51.100.7, ", "10.0.0.2"),
        ] {
            let h = headers(&[value]);
            assert_eq!(p.client(ip("10.0.0.2"), &h), ip(client), "{value}");
        }
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.1", "198.51.100.7, 10.1.1.1"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        let h = headers(&["198.51.100.7, 10.1.1.1", "203.0.113.1"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("203.0.113.1"));
        let h = headers(&["203.0.113.1", "10.1.1.1", "10.2.2.2"]);
        assert_eq!(p.client(ip("10.0.0.2"), &h), ip("203.0.113.1"));
    }

    #[test]
    fn ipv6_and_mapped_ipv4_peers_are_matched_canonically() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let h = headers(&["2001:db8::5"]);
        assert_eq!(p.client(ip("::ffff:10.0.0.3"), &h), ip("2001:db8::5"));
        assert_eq!(p.client(ip("fd00::1"), &h), ip("2001:db8::5"));
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("nope").is_err());
        assert_eq!(
            parse_network(" 10.0.0.1 ").unwrap().to_string(),
            "10.0.0.1/32"
        );
    }
}
