//! DNS checks of a connecting client, for both front ends: DNS block lists
//! (RFC 5782) and the forward-confirmed reverse-DNS name.
//!
//! Both block on the network (a few seconds at worst, see
//! [`DnsClient::lookup`]), so `hato` calls them in the connection's own
//! thread and `hato-smol` through `smol::unblock`.
//!
//! # How the host calls them
//! The session asks the host through `Event::Ask(question)` and waits for
//! `Verdict::Answer(result)`:
//!
//! - `Question::Connect` (asked before the greeting, and only when
//!   `dnsbl.zones` is not empty): answer with
//!   `dns_checks::dnsbl(&dns, peer.remote.ip(), &cfg.dnsbl.zones)` (after
//!   the host's own penalty and trap-block checks). A listed client gets
//!   `554 5.7.1` naming the list, and the session ends. Clients of
//!   `relay.trusted_networks` may be answered `Ok(())` without a lookup.
//! - `Question::Helo { name }` (asked when `deny.from` holds names): check
//!   `policy::deny::check_name(&cfg.deny, &name)`, then, only if that
//!   passes, `dns_checks::verified_name(&dns, ip)` and, when it gives a
//!   name, `check_name` on that name too. Compute the verified name once
//!   per connection and keep it (for the log and the Received header).
//!
//! The [`DnsClient`] is made once per server, in `Server::start`, with
//! [`DnsClient::from_config`] (`delivery.dns_servers`, else
//! /etc/resolv.conf), kept in an `Arc`, and shared by all
//! connections (it caches, and it is `Send + Sync`). A verified name never
//! grants relay: it may only deny.

use std::net::{IpAddr, Ipv4Addr};

use hato_core::dns::{dnsbl_name, reverse_name, Rtype};
use hato_core::refusal::RefuseReason;

use crate::dns::DnsClient;
use crate::log::Line;

/// At most this many PTR names of one address are checked.
const MAX_PTR_NAMES: usize = 5;

/// Asks each DNS block list of `zones` about `ip` (reversed octets or
/// nibbles under the zone, RFC 5782 §2.1 and §2.4). An address is listed
/// when the lookup gives an A record in 127.0.0.0/8 (RFC 5782 §2.3),
/// except 127.255.255.0/24, which lists use for "your query was refused"
/// (for example when asked through a public resolver); that, and any DNS
/// failure or timeout, fails open: the client is not refused, and the
/// failure is logged as `event=dnsbl-error`.
///
/// # Errors
/// [`RefuseReason::Dnsbl`] naming the first zone that lists `ip`.
pub fn dnsbl(client: &DnsClient, ip: IpAddr, zones: &[String]) -> Result<(), RefuseReason> {
    for zone in zones {
        let zone = zone.trim_end_matches('.');
        let name = dnsbl_name(ip, zone);
        match client.lookup(&name, Rtype::A) {
            Ok(answer) => {
                let codes: Vec<Ipv4Addr> = answer
                    .ips()
                    .filter_map(|a| match a {
                        IpAddr::V4(v4) if v4.octets()[0] == 127 => Some(v4),
                        _ => None,
                    })
                    .collect();
                if codes.iter().any(|c| !is_error_code(*c)) {
                    return Err(RefuseReason::Dnsbl {
                        zone: zone.to_owned(),
                    });
                }
                if let Some(code) = codes.first() {
                    log_error(ip, zone, &format!("the list refused the query ({code})"));
                }
            }
            Err(e) if e.is_negative() => {}
            Err(e) => log_error(ip, zone, &e.to_string()),
        }
    }
    Ok(())
}

/// The answers 127.255.255.x, which lists such as Spamhaus give for a
/// refused or malformed query, never for a listing.
fn is_error_code(a: Ipv4Addr) -> bool {
    let [_, b, c, _] = a.octets();
    b == 255 && c == 255
}

fn log_error(ip: IpAddr, zone: &str, error: &str) {
    Line::new("dnsbl-error")
        .kv("peer", ip)
        .kv("zone", zone)
        .kv("error", error)
        .kv("action", "not refused (fail open)")
        .emit();
}

/// Returns the forward-confirmed reverse-DNS name of `ip`: a name of its
/// PTR records (RFC 1035 §3.5, RFC 3596 §2.5) whose A records (AAAA for
/// IPv6) contain `ip` again. Anyone can write any PTR record for their
/// own addresses; only the forward check ties the name to its owner.
///
/// Returns `None` when there is no PTR record, no name leads back, or DNS
/// fails. The name is in lower case, without the trailing dot.
pub fn verified_name(client: &DnsClient, ip: IpAddr) -> Option<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let ptr = client.lookup(&reverse_name(ip), Rtype::Ptr).ok()?;
    let rtype = if ip.is_ipv4() { Rtype::A } else { Rtype::Aaaa };
    let found = ptr
        .ptr_names()
        .filter(|n| *n != ".")
        .take(MAX_PTR_NAMES)
        .find(|name| {
            client
                .lookup(name, rtype)
                .is_ok_and(|a| a.ips().any(|found| found == ip))
        })
        .map(str::to_owned);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::fake::{a_reply, ptr_reply, qname, rcode_reply, FakeDns};
    use hickory_proto::op::ResponseCode;

    /// bl.example lists 127.0.0.2; broken.example fails; refusing.example
    /// answers the "query refused" code 127.255.255.254.
    fn lists() -> FakeDns {
        FakeDns::start(|q, _| {
            let name = qname(q);
            let r = match name.as_str() {
                "2.0.0.127.bl.example" => a_reply(q, Ipv4Addr::new(127, 0, 0, 2)),
                n if n.ends_with(".broken.example") => rcode_reply(q, ResponseCode::ServFail),
                n if n.ends_with(".refusing.example") => {
                    a_reply(q, Ipv4Addr::new(127, 255, 255, 254))
                }
                "1.2.0.192.in-addr.arpa" => ptr_reply(q, "good.example"),
                "good.example" => a_reply(q, Ipv4Addr::new(192, 0, 2, 1)),
                "2.2.0.192.in-addr.arpa" => ptr_reply(q, "liar.example"),
                "liar.example" => a_reply(q, Ipv4Addr::new(192, 0, 2, 99)),
                _ => rcode_reply(q, ResponseCode::NXDomain),
            };
            vec![r]
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listed_address_is_refused_naming_the_list() {
        let server = lists();
        let client = DnsClient::new(vec![server.addr]);
        let zones = vec!["bl.example".to_owned()];
        assert_eq!(
            dnsbl(&client, ip("127.0.0.2"), &zones),
            Err(RefuseReason::Dnsbl {
                zone: "bl.example".into()
            })
        );
        assert_eq!(dnsbl(&client, ip("127.0.0.1"), &zones), Ok(()));
        assert_eq!(dnsbl(&client, ip("127.0.0.2"), &[]), Ok(()));
    }

    #[test]
    fn failing_lists_fail_open_and_the_next_list_still_counts() {
        let server = lists();
        let client = DnsClient::new(vec![server.addr]);
        let zones = vec![
            "broken.example".to_owned(),
            "refusing.example".to_owned(),
            "bl.example.".to_owned(),
        ];
        assert_eq!(
            dnsbl(&client, ip("127.0.0.2"), &zones),
            Err(RefuseReason::Dnsbl {
                zone: "bl.example".into()
            })
        );
        assert_eq!(dnsbl(&client, ip("127.0.0.1"), &zones[..2]), Ok(()));
        let nobody = DnsClient::new(Vec::new());
        assert_eq!(dnsbl(&nobody, ip("127.0.0.2"), &zones), Ok(()));
    }

    #[test]
    fn verified_name_needs_the_forward_lookup_to_match() {
        let server = lists();
        let client = DnsClient::new(vec![server.addr]);
        assert_eq!(
            verified_name(&client, ip("192.0.2.1")).as_deref(),
            Some("good.example")
        );
        assert_eq!(
            verified_name(&client, ip("::ffff:192.0.2.1")).as_deref(),
            Some("good.example")
        );
        assert_eq!(verified_name(&client, ip("192.0.2.2")), None, "PTR lies");
        assert_eq!(verified_name(&client, ip("192.0.2.3")), None, "no PTR");
    }
}
