//! Where the mail of a remote recipient goes (RFC 5321 §5.1): to the
//! domain's MX hosts, or, when the administrator said so, straight to a
//! fixed host: a `[routes]` entry for the domain, else the
//! `delivery.smarthost` (which then carries everything non-local). Without
//! a smarthost, an address literal (`user@[192.0.2.1]`, RFC 5321 §4.1.3)
//! goes to that address.
//!
//! The route also names the *destination*: the key the scheduler groups
//! attempts by and limits connections to. For MX delivery it is the
//! domain; for a fixed host it is `host:port`, which holds a colon and so
//! can never equal a domain.

use std::net::IpAddr;

use crate::config::{Delivery, HopHost, NextHop};

/// How to reach a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Look up the domain's MX records (RFC 5321 §5.1, RFC 7505).
    Mx(String),
    /// Connect to this host (its A / AAAA records when it is a name).
    Host {
        /// The host.
        host: HopHost,
        /// The port.
        port: u16,
    },
}

/// A recipient's destination key and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The scheduler's key: the domain, or `host:port`.
    pub destination: String,
    /// How to reach it.
    pub target: Target,
}

/// Routes the mail for `address` (`local@domain`, as stored in the queue).
pub fn route(cfg: &Delivery, address: &str) -> Route {
    let domain = address
        .rsplit_once('@')
        .map_or(address, |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Some(hop) = cfg.routes.get(&domain).or(cfg.smarthost.as_ref()) {
        return fixed(hop, cfg.smtp_port);
    }
    if let Some(ip) = address_literal(&domain) {
        return fixed(
            &NextHop {
                host: HopHost::Ip(ip),
                port: None,
            },
            cfg.smtp_port,
        );
    }
    Route {
        destination: domain.clone(),
        target: Target::Mx(domain),
    }
}

/// The route to one fixed host.
fn fixed(hop: &NextHop, default_port: u16) -> Route {
    let port = hop.port.unwrap_or(default_port);
    let key = NextHop {
        host: hop.host.clone(),
        port: Some(port),
    };
    Route {
        destination: key.to_string(),
        target: Target::Host {
            host: hop.host.clone(),
            port,
        },
    }
}

/// The IP address of an address literal: `[192.0.2.1]` or
/// `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner[5..].parse().ok(),
        _ => inner.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(host: HopHost, port: Option<u16>) -> NextHop {
        NextHop { host, port }
    }

    #[test]
    fn a_plain_domain_goes_to_its_mx() {
        let r = route(&Delivery::default(), "Bob@Partner.Example.");
        assert_eq!(r.destination, "partner.example");
        assert_eq!(r.target, Target::Mx("partner.example".into()));
    }

    #[test]
    fn a_route_beats_the_smarthost_and_the_smarthost_beats_mx() {
        let mut cfg = Delivery {
            smtp_port: 2525,
            ..Delivery::default()
        };
        cfg.routes.insert(
            "partner.example".into(),
            hop(HopHost::Ip("10.0.0.5".parse().unwrap()), Some(25)),
        );
        cfg.smarthost = Some(hop(HopHost::Name("relay.example".into()), None));
        let r = route(&cfg, "bob@partner.example");
        assert_eq!(r.destination, "10.0.0.5:25");
        assert_eq!(
            r.target,
            Target::Host {
                host: HopHost::Ip("10.0.0.5".parse().unwrap()),
                port: 25
            }
        );
        let r = route(&cfg, "carol@elsewhere.example");
        assert_eq!(r.destination, "relay.example:2525");
        assert_eq!(
            r.target,
            Target::Host {
                host: HopHost::Name("relay.example".into()),
                port: 2525
            }
        );
    }

    #[test]
    fn address_literals_go_to_their_address() {
        let cfg = Delivery::default();
        let r = route(&cfg, "x@[192.0.2.7]");
        assert_eq!(r.destination, "192.0.2.7:25");
        let r = route(&cfg, "x@[IPv6:2001:db8::7]");
        assert_eq!(r.destination, "[2001:db8::7]:25");
        // Not an address: routed as a (failing) domain name, never panics.
        let r = route(&cfg, "x@[not-an-ip]");
        assert_eq!(r.target, Target::Mx("[not-an-ip]".into()));
    }
}
