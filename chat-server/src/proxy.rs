//! Which address a request comes from: the TCP peer, or, when the peer is one of the
//! configured `trusted_proxies`, the rightmost address in `X-Forwarded-For` that is not a
//! trusted proxy (what Nginx's `$proxy_add_x_forwarded_for` and an ALB append). Anyone else's
//! forwarding headers are ignored, so a client cannot pick the address its limits count on.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use axum::http::HeaderMap;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// An address range (`10.0.0.0/8`, `fd00::/8`) or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u32::from(ip).into(), 32, self.prefix) == u32::from(net).into()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// The first `prefix` bits of a `bits`-wide address.
fn mask(addr: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u128::MAX << (128 - u32::from(prefix));
    let shifted = addr << (128 - u32::from(bits));
    (shifted & keep) >> (128 - u32::from(bits))
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip = IpAddr::from_str(addr)
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?
            .to_canonical();
        let bits: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(format!("{s:?}: the prefix length must be 0-{bits}")),
            },
        };
        let net = match ip {
            IpAddr::V4(v4) => IpAddr::V4((mask(u32::from(v4).into(), 32, prefix) as u32).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask(u128::from(v6), 128, prefix).into()),
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The `trusted_proxies` setting: a list in the TOML file, a comma-separated string in
/// `FULLSLACK_TRUSTED_PROXIES`. Empty (the default): no proxy is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split([',', ' '])
            .filter(|s| !s.trim().is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The request's client address (see the module documentation).
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if hops.is_empty() {
            // A proxy that sends only X-Real-IP (Nginx sends both).
            return headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_hop)
                .unwrap_or(peer);
        }
        // Walk from the nearest hop outwards: each trusted proxy vouches for the hop to its
        // left. The first hop not vouched for by a trusted proxy is the client; a malformed
        // hop ends the walk at the proxy that appended it.
        let mut last = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.contains(ip) => last = ip,
                Some(ip) => return ip,
                None => return last,
            }
        }
        last
    }
}

/// One `X-Forwarded-For` element: an address, optionally with a port (`1.2.3.4:5`,
/// `[::1]:5`). `unknown`, obfuscated names and garbage give `None`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

/// The rate-limit key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber
/// usually holds a whole /64, so single addresses would be free to rotate).
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(mask(u128::from(v6), 128, 64));
            format!("{net}/64")
        }
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = TrustedProxies;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of IP addresses or CIDR ranges, or one comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                TrustedProxies::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    all.extend(TrustedProxies::parse(&item).map_err(de::Error::custom)?.0);
                }
                Ok(TrustedProxies(all))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1,fd00::/8 192.168.1.7/24").unwrap();
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("fd12::1")));
        assert!(!t.contains(ip("fe80::1")));
        assert!(t.contains(ip("192.168.1.200")), "host bits are masked off");
        assert!(
            t.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped IPv6 is IPv4"
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("example.com").is_err());
        let all = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        // Nothing trusted (the default): always the TCP peer.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(peer("203.0.113.9"), &h), ip("203.0.113.9"));
        // A peer outside the trusted ranges cannot speak for anyone else.
        let t = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(t.client_ip(peer("203.0.113.9"), &h), ip("203.0.113.9"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        // Nginx on the host appends the client's address.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("198.51.100.7"));
        // A client-supplied (spoofed) value stays on the left and is skipped.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("198.51.100.7"));
        // Through two trusted proxies (ALB then Nginx), also split over two header lines.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.0.3.4"),
        ]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("198.51.100.7"));
        // Ports and IPv6 forms.
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:443, 10.0.0.9:80")]);
        assert_eq!(t.client_ip(peer("10.1.1.1"), &h), ip("2001:db8::5"));
        // A malformed hop ends the walk at the proxy that appended it.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.9")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("10.0.0.9"));
        // Every hop trusted: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("10.0.0.1"));
        // No X-Forwarded-For: X-Real-IP, else the peer.
        let h = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), ip("198.51.100.8"));
        assert_eq!(
            t.client_ip(peer("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // An IPv4-mapped peer (a dual-stack listener) is the IPv4 address.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            t.client_ip(peer("::ffff:127.0.0.1"), &h),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(limit_key(ip("198.51.100.7")), "198.51.100.7");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_eq!(limit_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn settings_take_a_list_or_a_comma_separated_string() {
        #[derive(Deserialize)]
        struct S {
            p: TrustedProxies,
        }
        let s: S = toml::from_str("p = [\"127.0.0.1\", \"10.0.0.0/8\"]").unwrap();
        assert_eq!(s.p, TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap());
        let s: S = toml::from_str("p = \"127.0.0.1, 10.0.0.0/8\"").unwrap();
        assert_eq!(s.p, TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap());
        assert!(toml::from_str::<S>("p = [\"nope\"]").is_err());
    }

    // Property tests of the header walk: whatever a client writes into X-Forwarded-For, it
    // can neither panic the parser nor move the address a trusted proxy appended.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn peer_ip() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u16; 8]>().prop_map(IpAddr::from),
            ]
        }

        proptest! {
            #[test]
            fn parsing_any_proxy_list_never_panics(list in ".{0,80}") {
                let _ = TrustedProxies::parse(&list);
            }

            #[test]
            fn an_untrusted_peer_is_the_client_whatever_the_headers(
                peer in peer_ip(),
                xff in "[ -~]{0,120}",
                real in "[ -~]{0,40}",
            ) {
                let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
                prop_assume!(!trusted.contains(peer.to_canonical()));
                let h = headers(&[("x-forwarded-for", &xff), ("x-real-ip", &real)]);
                let got = trusted.client_ip(SocketAddr::new(peer, 443), &h);
                prop_assert_eq!(got, peer.to_canonical());
            }

            #[test]
            fn what_the_trusted_proxy_appended_wins_over_what_the_client_wrote(
                client in any::<[u8; 4]>(),
                junk in "[ -~]{0,120}",
            ) {
                let client = IpAddr::from(client);
                let trusted = TrustedProxies::parse("127.0.0.0/8").unwrap();
                prop_assume!(!trusted.contains(client));
                // Nginx's $proxy_add_x_forwarded_for: the client's header, then its address.
                let h = headers(&[("x-forwarded-for", &format!("{junk}, {client}"))]);
                let got = trusted.client_ip("127.0.0.1:80".parse().unwrap(), &h);
                prop_assert_eq!(got, client);
            }
        }
    }
}
