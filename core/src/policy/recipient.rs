//! The recipient decision at RCPT time (RFC 5321 §3.3, §4.5.1): local
//! mailboxes from the users file, aliases, postmaster of every local
//! domain, and relay only for trusted networks or authenticated clients.
//! The HELO name, the sender and reverse DNS never grant relay.

use crate::config::Config;
use crate::directory::Directory;
use crate::refusal::RefuseReason;
use std::net::IpAddr;

use crate::smtp::address::{AddressLiteral, ForwardPath, Host, Mailbox};

use super::Client;

/// Where an accepted recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A local Maildir: `local@domain`, lower case.
    Local(String),
    /// Another server, found later by remote delivery.
    Remote(String),
}

/// Decides whether `to` is accepted from `client`, and where it goes.
///
/// # Errors
/// `UnknownUser` for a local address without a mailbox, `RelayDenied` for
/// a non-local address from a client that may not relay.
pub fn check_recipient(
    cfg: &Config,
    dir: &Directory,
    client: &Client,
    to: &ForwardPath,
) -> Result<Destination, RefuseReason> {
    let mailbox = match to {
        ForwardPath::Postmaster => return Ok(postmaster(cfg, dir)),
        ForwardPath::Mailbox { mailbox, .. } => mailbox,
    };
    let Some(domain) = local_domain(cfg, client, mailbox) else {
        return remote(cfg, client, mailbox);
    };
    let local = mailbox.local.value.as_str();
    if local.eq_ignore_ascii_case("postmaster") {
        return Ok(postmaster(cfg, dir));
    }
    if let Some(target) = alias(cfg, local, &domain) {
        return Ok(resolve_target(cfg, dir, target));
    }
    // A quoted local part means its content (RFC 5322 §3.4.1), so
    // "alice"@ours is alice. The relay tricks that hide another address in
    // the local part (%, !, @, quoted or not) never name a mailbox, since
    // the users file admits only letters, digits and . _ + -.
    if dir.contains(local, &domain) {
        let mut address = String::with_capacity(local.len() + 1 + domain.len());
        address.push_str(local);
        address.push('@');
        address.push_str(&domain);
        address.make_ascii_lowercase();
        return Ok(Destination::Local(address));
    }
    Err(RefuseReason::UnknownUser(mailbox.to_string()))
}

/// Returns the local domain a mailbox names: one of ours, or an address
/// literal naming the address the client reached us on (RFC 5321 §4.1.3),
/// which means our first domain.
fn local_domain(cfg: &Config, client: &Client, mailbox: &Mailbox) -> Option<String> {
    let ours = match &mailbox.host {
        Host::Domain(d) if cfg.is_local_domain(d.as_str()) => return Some(d.normalized()),
        Host::Literal(AddressLiteral::V4(ip)) => IpAddr::V4(*ip) == unmapped(client.local_ip),
        Host::Literal(AddressLiteral::V6(ip)) => IpAddr::V6(*ip) == client.local_ip,
        _ => false,
    };
    if ours {
        cfg.domains.first().cloned()
    } else {
        None
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn remote(cfg: &Config, client: &Client, mailbox: &Mailbox) -> Result<Destination, RefuseReason> {
    // Backup MX: mail for the domains we relay to is accepted from anyone.
    if let Some(d) = mailbox.domain() {
        if cfg.relay.relay_to.iter().any(|r| d.matches(r)) {
            return Ok(Destination::Remote(mailbox.to_string()));
        }
    }
    let trusted = cfg
        .relay
        .trusted_networks
        .iter()
        .any(|n| n.contains(client.ip));
    if trusted || client.authenticated {
        Ok(Destination::Remote(mailbox.to_string()))
    } else {
        Err(RefuseReason::RelayDenied(mailbox.to_string()))
    }
}

fn alias<'c>(cfg: &'c Config, local: &str, domain: &str) -> Option<&'c str> {
    let local = local.to_ascii_lowercase();
    cfg.aliases
        .get(&format!("{local}@{domain}"))
        .or_else(|| cfg.aliases.get(&local))
        .map(String::as_str)
}

fn postmaster(cfg: &Config, dir: &Directory) -> Destination {
    resolve_target(cfg, dir, &cfg.postmaster)
}

/// Resolves an address the administrator wrote (alias target, postmaster):
/// local when its domain is local, remote otherwise. Administrators' targets
/// may leave the site without relay rights, as the configuration says so.
fn resolve_target(cfg: &Config, _dir: &Directory, target: &str) -> Destination {
    let domain = target.rsplit_once('@').map_or("", |(_, d)| d);
    if cfg.is_local_domain(domain) {
        Destination::Local(target.to_ascii_lowercase())
    } else {
        Destination::Remote(target.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ListenerKind;
    use crate::smtp::address::{Domain, LocalPart};

    fn cfg() -> Config {
        let mut c = Config::defaults("mail.example.test");
        c.aliases
            .insert("abuse".into(), "alice@example.test".into());
        c.aliases
            .insert("sales@example.test".into(), "bob@partner.example".into());
        c
    }

    fn dir() -> Directory {
        Directory::parse("alice@example.test:!\n").unwrap_or_default()
    }

    fn to(local: &str, domain: &str) -> ForwardPath {
        ForwardPath::Mailbox {
            mailbox: Mailbox {
                local: LocalPart::dot_string(local),
                host: Host::Domain(Domain::new(domain)),
            },
            had_route: false,
        }
    }

    fn outsider() -> Client {
        Client {
            ip: "192.0.2.7".parse().unwrap(),
            local_ip: "192.0.2.1".parse().unwrap(),
            listener: ListenerKind::Smtp,
            authenticated: false,
        }
    }

    #[test]
    fn known_mailbox_is_local_in_any_case() {
        let d = check_recipient(&cfg(), &dir(), &outsider(), &to("Alice", "EXAMPLE.test."));
        assert_eq!(d, Ok(Destination::Local("alice@example.test".into())));
    }

    #[test]
    fn unknown_local_user_is_refused() {
        let d = check_recipient(&cfg(), &dir(), &outsider(), &to("mallory", "example.test"));
        assert!(matches!(d, Err(RefuseReason::UnknownUser(_))));
    }

    #[test]
    fn postmaster_of_every_local_domain_is_accepted() {
        for p in [
            to("PostMaster", "mail.example.test"),
            ForwardPath::Postmaster,
        ] {
            let d = check_recipient(&cfg(), &dir(), &outsider(), &p);
            assert_eq!(d, Ok(Destination::Local("postmaster@example.test".into())));
        }
    }

    #[test]
    fn outsider_cannot_relay_but_loopback_can() {
        let d = check_recipient(&cfg(), &dir(), &outsider(), &to("bob", "other.example"));
        assert!(matches!(d, Err(RefuseReason::RelayDenied(_))));
        let local = Client {
            ip: "127.0.0.1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            ..outsider()
        };
        let d = check_recipient(&cfg(), &dir(), &local, &to("bob", "other.example"));
        assert_eq!(d, Ok(Destination::Remote("bob@other.example".into())));
    }

    #[test]
    fn aliases_resolve_per_domain_and_globally() {
        let d = check_recipient(
            &cfg(),
            &dir(),
            &outsider(),
            &to("Abuse", "mail.example.test"),
        );
        assert_eq!(d, Ok(Destination::Local("alice@example.test".into())));
        let d = check_recipient(&cfg(), &dir(), &outsider(), &to("sales", "example.test"));
        assert_eq!(d, Ok(Destination::Remote("bob@partner.example".into())));
    }

    #[test]
    fn quoted_local_part_means_its_content() {
        let quoted = |value: &str| ForwardPath::Mailbox {
            mailbox: Mailbox {
                local: LocalPart {
                    value: value.into(),
                    quoted: true,
                },
                host: Host::Domain(Domain::new("example.test")),
            },
            had_route: false,
        };
        let d = check_recipient(&cfg(), &dir(), &outsider(), &quoted("alice"));
        assert_eq!(d, Ok(Destination::Local("alice@example.test".into())));
        for trick in ["alice@example.test", "bob%other.example", "a!b"] {
            let d = check_recipient(&cfg(), &dir(), &outsider(), &quoted(trick));
            assert!(matches!(d, Err(RefuseReason::UnknownUser(_))), "{trick}");
        }
    }

    #[test]
    fn address_literal_is_local_only_when_it_names_us() {
        let lit = |ip: &str| ForwardPath::Mailbox {
            mailbox: Mailbox {
                local: LocalPart::dot_string("alice"),
                host: Host::Literal(AddressLiteral::V4(ip.parse().unwrap())),
            },
            had_route: false,
        };
        let d = check_recipient(&cfg(), &dir(), &outsider(), &lit("192.0.2.1"));
        assert_eq!(d, Ok(Destination::Local("alice@example.test".into())));
        let d = check_recipient(&cfg(), &dir(), &outsider(), &lit("198.51.100.1"));
        assert!(matches!(d, Err(RefuseReason::RelayDenied(_))));
    }

    #[test]
    fn relay_to_domains_are_accepted_from_anyone_and_only_those() {
        let mut c = cfg();
        c.relay.relay_to = vec!["partner.example".into()];
        let d = check_recipient(&c, &dir(), &outsider(), &to("x", "Partner.Example."));
        assert_eq!(d, Ok(Destination::Remote("x@Partner.Example.".into())));
        let d = check_recipient(&c, &dir(), &outsider(), &to("x", "sub.partner.example"));
        assert!(matches!(d, Err(RefuseReason::RelayDenied(_))));
    }

    #[test]
    fn percent_and_bang_tricks_are_unknown_users() {
        for local in ["bob%other.example", "other.example!bob"] {
            let d = check_recipient(&cfg(), &dir(), &outsider(), &to(local, "example.test"));
            assert!(matches!(d, Err(RefuseReason::UnknownUser(_))), "{local}");
        }
    }
}
