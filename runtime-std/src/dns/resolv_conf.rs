//! The system's DNS servers: the `nameserver` lines of /etc/resolv.conf
//! (resolv.conf(5)), the default of `delivery.dns_servers`. Only the front
//! end reads the file; the core never does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The file read by [`system_servers`].
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Returns the servers of the `nameserver` lines of resolv.conf text, in
/// order, on port 53. Addresses that do not parse (such as IPv6 with a
/// `%zone`) are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
            let addr = SocketAddr::new(ip, 53);
            if !servers.contains(&addr) {
                servers.push(addr);
            }
        }
    }
    servers
}

/// Returns the servers of /etc/resolv.conf; when the file cannot be read
/// or names none, the local host (127.0.0.1 and ::1, port 53), as the C
/// library's resolver does.
pub fn system_servers() -> Vec<SocketAddr> {
    let servers = std::fs::read_to_string(RESOLV_CONF)
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default();
    if servers.is_empty() {
        vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 53),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 53),
        ]
    } else {
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_are_read_in_order() {
        let text = "# generated\nsearch example.org\nnameserver 192.0.2.53\n\
                    nameserver   2001:db8::53 # v6\noptions rotate\nnameserver fe80::1%eth0\n\
                    nameserver 192.0.2.53\n;nameserver 198.51.100.1\nnameserver\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }
}
