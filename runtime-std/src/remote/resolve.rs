//! Which addresses to connect to for a destination, in order (RFC 5321
//! §5.1): the MX plan of `hato_core::dns::mx` with each host's A / AAAA
//! records, or the one fixed host of a route or the smarthost.
//!
//! A domain that does not exist, publishes the null MX (RFC 7505) or
//! leads only back to this server fails its recipients for good; DNS
//! trouble (timeouts, SERVFAIL) only delays them.

use std::net::SocketAddr;

use hato_core::config::HopHost;
use std::sync::OnceLock;

use hato_core::dns::mx::{self, MxPlan};
use hato_core::dns::{DnsError, Rng, Rtype};
use hato_core::queue::Target;

use crate::dns::DnsClient;

/// One address to try, with the host name it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The host's name (or its address, for an IP route).
    pub(crate) name: String,
    /// Where to connect.
    pub(crate) addr: SocketAddr,
}

/// Why no address could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoRoute {
    /// Fail the recipients for good (bounce), rather than try again later.
    pub(crate) permanent: bool,
    /// Why, with an RFC 3463 status code first (`5.1.2 ...`).
    pub(crate) reason: String,
}

impl NoRoute {
    fn permanent(reason: String) -> Self {
        Self {
            permanent: true,
            reason,
        }
    }

    fn temporary(reason: String) -> Self {
        Self {
            permanent: false,
            reason,
        }
    }
}

/// The resolver, created on first use: a server that only routes to fixed
/// IP addresses never reads /etc/resolv.conf.
#[derive(Debug)]
pub(crate) struct LazyDns {
    servers: Vec<SocketAddr>,
    client: OnceLock<DnsClient>,
}

impl LazyDns {
    /// `servers`: `delivery.dns_servers` (empty: /etc/resolv.conf).
    pub(crate) fn new(servers: Vec<SocketAddr>) -> Self {
        Self {
            servers,
            client: OnceLock::new(),
        }
    }

    fn get(&self) -> &DnsClient {
        self.client
            .get_or_init(|| DnsClient::for_servers(&self.servers))
    }
}

/// Finds the addresses for `target`, most preferred first; `port` is the
/// port of MX hosts, `ourselves` names this server.
pub(crate) fn candidates(
    target: &Target,
    port: u16,
    dns: &LazyDns,
    ourselves: &[String],
    rng: &mut Rng,
) -> Result<Vec<Candidate>, NoRoute> {
    match target {
        Target::Host {
            host: HopHost::Ip(ip),
            port,
        } => Ok(vec![Candidate {
            name: ip.to_string(),
            addr: SocketAddr::new(*ip, *port),
        }]),
        Target::Host {
            host: HopHost::Name(name),
            port,
        } => match dns.get().lookup_ips(name) {
            Ok(ips) => Ok(ips
                .into_iter()
                .map(|ip| Candidate {
                    name: name.clone(),
                    addr: SocketAddr::new(ip, *port),
                })
                .collect()),
            // A route the administrator wrote: a DNS problem with it is
            // theirs to fix, not a reason to bounce everyone's mail.
            Err(e) => Err(NoRoute::temporary(format!(
                "4.4.4 cannot find the address of {name}: {e}"
            ))),
        },
        Target::Mx(domain) => mx_candidates(domain, port, dns.get(), ourselves, rng),
    }
}

/// The addresses of `domain`'s mail servers, in MX order.
fn mx_candidates(
    domain: &str,
    port: u16,
    dns: &DnsClient,
    ourselves: &[String],
    rng: &mut Rng,
) -> Result<Vec<Candidate>, NoRoute> {
    let answer = dns.lookup(domain, Rtype::Mx);
    let plan = match mx::plan(domain, &answer, ourselves, rng) {
        Ok(plan) => plan,
        Err(DnsError::NxDomain) => {
            return Err(NoRoute::permanent(format!(
                "5.1.2 the domain {domain} does not exist"
            )))
        }
        Err(e @ DnsError::InvalidName(_)) => return Err(NoRoute::permanent(format!("5.1.2 {e}"))),
        Err(e) => {
            return Err(NoRoute::temporary(format!(
                "4.4.3 cannot look up the mail servers of {domain}: {e}"
            )))
        }
    };
    let (hosts, implicit) = match plan {
        MxPlan::Hosts { hosts, implicit } => (hosts, implicit),
        MxPlan::NullMx => {
            return Err(NoRoute::permanent(format!(
                "5.1.10 the domain {domain} accepts no mail (null MX, RFC 7505)"
            )))
        }
        MxPlan::OnlyOurselves => {
            return Err(NoRoute::permanent(format!(
                "5.4.6 the mail servers of {domain} lead back to this server (mail loop; \
                 a configuration error)"
            )))
        }
    };
    let mut out = Vec::new();
    let mut temporary = None;
    for host in &hosts {
        match dns.lookup_ips(&host.name) {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| Candidate {
                name: host.name.clone(),
                addr: SocketAddr::new(ip, port),
            })),
            Err(e) if e.is_negative() => {}
            Err(e) => temporary = Some(format!("{}: {e}", host.name)),
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    match temporary {
        Some(why) => Err(NoRoute::temporary(format!(
            "4.4.3 cannot look up the address of the mail servers of {domain} ({why})"
        ))),
        None if implicit => Err(NoRoute::permanent(format!(
            "5.1.2 the domain {domain} has no mail server and no address"
        ))),
        None => Err(NoRoute::permanent(format!(
            "5.4.4 no mail server of {domain} has an address"
        ))),
    }
}
