//! The visitor's IP address: the socket peer, or — when the peer is a reverse proxy the operator
//! trusts (`AIRLOCK_TRUSTED_PROXIES`) — the address that proxy says it forwarded for.
//!
//! Forwarding headers are written by every hop in turn, each appending the address it received
//! the request from, so only their right end is trustworthy: the chain is walked from the right,
//! skipping trusted proxies, and the first address that is not one is the client. Anything to its
//! left was written by the client itself and is ignored. `X-Forwarded-For` is read when present
//! (nginx, Caddy, Traefik, HAProxy and most load balancers write it), otherwise RFC 7239
//! `Forwarded: for=`. A malformed or unknown entry on the way stops the walk and the socket peer
//! is used: a bad header never lets a client choose its address.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::app::AppState;

/// The reverse proxies whose forwarding headers are believed: IP addresses and CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list such as `127.0.0.1, 10.0.0.0/8, ::1`; empty means none.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(format!(
                            "`{entry}` is neither an IP address nor a CIDR range like 10.0.0.0/8"
                        ));
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }
}

/// The client's address: `peer`, unless `peer` is a trusted proxy, then the right-most address in
/// the forwarding header that is not itself a trusted proxy.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let chain = match forwarded_for(headers) {
        Some(chain) => chain,
        None => return peer,
    };
    let mut client = peer;
    for entry in chain.iter().rev() {
        match entry {
            Some(ip) if trusted.contains(*ip) => client = *ip,
            Some(ip) => return *ip,
            // A hop we cannot read: everything left of it is unverifiable.
            None => return peer,
        }
    }
    // Every hop is a trusted proxy: the left-most one is where the request came from.
    client
}

/// The forwarding chain, left (first hop) to right (last hop), from `X-Forwarded-For` or else
/// `Forwarded`; `None` when neither header is present. Unreadable entries are `None` items.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values = |name: &str| -> Option<Vec<&str>> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        (!values.is_empty()).then_some(values)
    };
    if let Some(lines) = values("x-forwarded-for") {
        // Several header lines are one list, in order.
        return Some(
            lines
                .iter()
                .flat_map(|line| line.split(','))
                .map(parse_node)
                .collect(),
        );
    }
    let lines = values("forwarded")?;
    Some(
        lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                // `for=…;proto=https;by=…`: a hop without `for` cannot be attributed.
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value))
            })
            .collect(),
    )
}

/// One hop's address: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:8080`, any of
/// them in double quotes; `None` for anything else (`unknown`, obfuscated names, garbage).
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .trim();
    let ip = value
        .parse::<IpAddr>()
        .or_else(|_| value.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            value
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()?;
    Some(ip.to_canonical())
}

/// The client's address for a handler (see [`client_ip`]). Without connection info — a router
/// driven directly in tests — the peer is taken to be 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 50_000)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_ranges() {
        let list = trusted(" 127.0.0.1, 10.0.0.0/8 ,::1,2001:db8::/32,");
        assert!(list.contains(ip("127.0.0.1")));
        assert!(list.contains(ip("10.200.3.4")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("2001:db8:1::5")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(!list.contains(ip("127.0.0.2")));
        // An IPv4 peer seen through a dual-stack socket.
        assert!(list.contains(ip("::ffff:10.1.2.3")));
        assert!(trusted("").is_empty());
        assert!("10.0.0.0/40".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(
            client_ip(peer("198.51.100.7"), &spoofed, &TrustedProxies::default()),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(peer("198.51.100.7"), &spoofed, &trusted("127.0.0.1")),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let list = trusted("127.0.0.1");
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(peer("127.0.0.1"), &HeaderMap::new(), &list),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_right() {
        let list = trusted("127.0.0.1, 10.0.0.0/8");
        // The client wrote `1.1.1.1` itself; the edge proxy appended the real client 203.0.113.9;
        // an internal proxy appended the edge proxy.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.5")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("203.0.113.9"));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9, 10.0.0.5"),
        ]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("203.0.113.9"));
        // Only proxies: the left-most.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.5")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("10.0.0.7"));
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let list = trusted("127.0.0.1, 10.0.0.0/8");
        for value in [
            "",
            "not-an-ip",
            "203.0.113.9, garbage",
            "203.0.113.9,,10.0.0.5",
        ] {
            let h = headers(&[("x-forwarded-for", value)]);
            assert_eq!(
                client_ip(peer("127.0.0.1"), &h, &list),
                ip("127.0.0.1"),
                "{value:?}"
            );
        }
        // A bad entry left of the client does not matter: the walk stops at the client.
        let h = headers(&[("x-forwarded-for", "garbage, 203.0.113.9")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("203.0.113.9"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("127.0.0.1"));
        let h = headers(&[("forwarded", "proto=https")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_peers_and_entries() {
        let list = trusted("::1, fd00::/8");
        let h = headers(&[("x-forwarded-for", "2001:db8::7, fd00::2")]);
        assert_eq!(client_ip(peer("::1"), &h, &list), ip("2001:db8::7"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(client_ip(peer("::1"), &h, &list), ip("2001:db8::7"));
        // An IPv4 client through a proxy that writes IPv4-mapped addresses.
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(client_ip(peer("::1"), &h, &list), ip("203.0.113.9"));
        // IPv6 peer, no trust: the peer.
        assert_eq!(
            client_ip(peer("2001:db8::99"), &h, &list),
            ip("2001:db8::99")
        );
    }

    #[test]
    fn forwarded_with_quotes_and_ports() {
        let list = trusted("127.0.0.1, 10.0.0.0/8");
        let h = headers(&[(
            "forwarded",
            r#"for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, For="10.0.0.5:80";by=10.0.0.1"#,
        )]);
        assert_eq!(
            client_ip(peer("127.0.0.1"), &h, &list),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.43:8080;proto=http")]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("192.0.2.43"));
        // X-Forwarded-For wins when both are present.
        let h = headers(&[
            ("forwarded", "for=192.0.2.43"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(client_ip(peer("127.0.0.1"), &h, &list), ip("203.0.113.9"));
    }
}
