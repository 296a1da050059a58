//! The query names that hato builds from an IP address: reverse DNS
//! (RFC 1035 §3.5 in-addr.arpa, RFC 3596 §2.5 ip6.arpa) and DNS block
//! lists (RFC 5782 §2.1 and §2.4, the same reversal under the list's zone).
//!
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
//! socket reports for an IPv4 client) is treated as the IPv4 address.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Returns the reversed form of `ip`: `1.2.0.192` for 192.0.2.1, and the
/// 32 nibbles of an IPv6 address, lowest first, separated by dots.
fn reversed(ip: IpAddr) -> String {
    match unmapped(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            s.pop();
            s
        }
    }
}

/// Returns `ip` as IPv4 when it is an IPv4-mapped IPv6 address.
pub(crate) fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Returns the PTR query name of `ip`: `1.2.0.192.in-addr.arpa` for
/// 192.0.2.1 (RFC 1035 §3.5), `b.a.9.8. … .8.b.d.0.1.0.0.2.ip6.arpa` for
/// 2001:db8::… (RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    let suffix = match unmapped(ip) {
        IpAddr::V4(_) => "in-addr.arpa",
        IpAddr::V6(_) => "ip6.arpa",
    };
    format!("{}.{suffix}", reversed(ip))
}

/// Returns the name to look up to ask DNS block list `zone` about `ip`:
/// `2.0.0.127.zen.example` for 127.0.0.2 (RFC 5782 §2.1), and the reversed
/// nibbles for IPv6 (RFC 5782 §2.4).
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    format!("{}.{}", reversed(ip), zone.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_octets_are_reversed() {
        assert_eq!(reverse_name(ip("192.0.2.1")), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            dnsbl_name(ip("127.0.0.2"), "zen.example."),
            "2.0.0.127.zen.example"
        );
    }

    #[test]
    fn ipv6_nibbles_are_reversed() {
        // RFC 5782 §2.4's example.
        assert_eq!(
            dnsbl_name(ip("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        assert_eq!(
            reverse_name(ip("::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"
        );
    }

    #[test]
    fn mapped_ipv4_is_treated_as_ipv4() {
        assert_eq!(
            reverse_name(ip("::ffff:192.0.2.1")),
            "1.2.0.192.in-addr.arpa"
        );
        assert_eq!(dnsbl_name(ip("::ffff:127.0.0.2"), "bl"), "2.0.0.127.bl");
    }
}
