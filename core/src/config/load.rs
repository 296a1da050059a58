//! Reading `hato.toml` into a [`Config`](super::Config): TOML → raw serde
//! structs → checks that need several values or a line number → `Config`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::error::{line_of, syntax};
use super::leaf::{Host, List, Listener};
use super::raw::{RawConfig, RawDeny, RawGreylisting, RawLimits};
use super::units::format_duration;
use super::{
    error, names, Config, ConfigError, Deny, Greylisting, Limits, Listen, Overrides, Relay,
    Timeouts,
};
use crate::net::IpNet;

pub(super) fn defaults(hostname: &str) -> Config {
    let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
    let domains = default_domains(&hostname);
    let postmaster = default_postmaster(&domains, &hostname);
    let loopback_v4 = IpNet::new(Ipv4Addr::new(127, 0, 0, 0).into(), 8)
        .unwrap_or_else(|| IpNet::host(Ipv4Addr::LOCALHOST.into()));
    Config {
        hostname,
        domains,
        data_dir: PathBuf::from("hato-data"),
        postmaster,
        listen: Listen {
            smtp: vec![(Ipv4Addr::LOCALHOST, 2525).into()],
            submission: vec![(Ipv4Addr::LOCALHOST, 2587).into()],
            submissions: Vec::new(),
        },
        relay: Relay {
            trusted_networks: vec![loopback_v4, IpNet::host(Ipv6Addr::LOCALHOST.into())],
            relay_to: Vec::new(),
        },
        limits: Limits::default(),
        timeouts: Timeouts::default(),
        aliases: BTreeMap::new(),
        deny: Deny::default(),
        dnsbl: super::Dnsbl::default(),
        greylisting: Greylisting::default(),
        delivery: super::Delivery::default(),
        dkim: super::Dkim::default(),
        tls: super::Tls::default(),
    }
}

/// The host name's parent domain (when it is more than a top-level
/// domain) and the host name: `mail.example.test` → `example.test`,
/// `mail.example.test`; `example.org` → `example.org` only.
fn default_domains(hostname: &str) -> Vec<String> {
    let mut domains = Vec::new();
    if let Some((_, parent)) = hostname.split_once('.') {
        if parent.contains('.') {
            domains.push(parent.to_owned());
        }
    }
    domains.push(hostname.to_owned());
    domains
}

fn default_postmaster(domains: &[String], hostname: &str) -> String {
    format!(
        "postmaster@{}",
        domains.first().map_or(hostname, String::as_str)
    )
}

pub(super) fn load(text: Option<&str>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let raw = match text {
        Some(text) => parse(text)?,
        None => RawConfig::default(),
    };
    build(raw, text.unwrap_or(""), overrides)
}

fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| syntax(text, &e))?;
    RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
        .map_err(|e| error::from_serde(text, &doc, &e))
}

fn build(mut raw: RawConfig, text: &str, ov: &Overrides) -> Result<Config, ConfigError> {
    let at = |span: Range<usize>, key: &str, msg: String| ConfigError::at(text, span, key, msg);

    let hostname = match (&ov.hostname, raw.hostname) {
        (Some(h), _) => names::host_name(h).map_err(|m| ConfigError::flag("--hostname", m))?,
        (None, Some(h)) => h.into_inner().0,
        (None, None) => {
            return Err(ConfigError {
                key: Some("hostname".into()),
                line: None,
                message: "is required; write hostname = \"mail.example.org\" at the top of the \
                          file (before any [table]), or start hato with --hostname"
                    .into(),
            })
        }
    };
    let mut cfg = defaults(&hostname);

    if let Some(list) = raw.domains {
        let span = list.span();
        let mut domains: Vec<String> = Vec::new();
        for d in list.into_inner().0 {
            let d = d.into_inner().0;
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
        if domains.is_empty() {
            let msg = format!(
                "is empty, so hato would accept mail for nobody; list at least one domain, \
                 e.g. [\"{}\"], or remove the line to get the default {:?}",
                cfg.hostname, cfg.domains
            );
            return Err(at(span, "domains", msg));
        }
        cfg.domains = domains;
    }
    cfg.postmaster = match raw.postmaster {
        Some(p) => p.into_inner().0,
        None => default_postmaster(&cfg.domains, &cfg.hostname),
    };

    match (&ov.data_dir, raw.data_dir) {
        (Some(d), _) if d.as_os_str().is_empty() => {
            return Err(ConfigError::flag(
                "--data-dir",
                "is empty; give a directory".into(),
            ))
        }
        (Some(d), _) => cfg.data_dir = d.clone(),
        (None, Some(d)) if d.get_ref().0.is_empty() => {
            let msg = "is empty; write a directory, e.g. \"/var/lib/hato\"".into();
            return Err(at(d.span(), "data_dir", msg));
        }
        (None, Some(d)) => cfg.data_dir = PathBuf::from(d.into_inner().0),
        (None, None) => {}
    }

    listeners(raw.listen, text, &mut cfg.listen)?;
    tls(raw.tls, text, &mut cfg.tls)?;
    if let Some(nets) = raw.relay.trusted_networks {
        cfg.relay.trusted_networks = nets
            .into_inner()
            .0
            .into_iter()
            .map(|n| n.into_inner().0)
            .collect();
    }
    if let Some(list) = raw.relay.relay_to {
        cfg.relay.relay_to = relay_to(list, text, &cfg.domains)?;
    }
    limits(&raw.limits, text, &mut cfg.limits)?;
    for (key, value, slot) in [
        (
            "timeouts.command",
            &raw.timeouts.command,
            &mut cfg.timeouts.command,
        ),
        ("timeouts.data", &raw.timeouts.data, &mut cfg.timeouts.data),
    ] {
        if let Some(v) = value {
            if v.get_ref().0 < Duration::from_secs(1) {
                let msg =
                    "must be at least 1s, or every client is cut off at once; write e.g. \"5m\"";
                return Err(at(v.span(), key, msg.into()));
            }
            *slot = v.get_ref().0;
        }
    }
    cfg.aliases = super::aliases::build(raw.aliases, text, &cfg.domains)?;
    deny(raw.deny, text, &mut cfg)?;
    greylisting(&raw.greylisting, text, &mut cfg.greylisting)?;
    dns(raw.dnsbl, raw.delivery.dns_servers.take(), &mut cfg);
    super::delivery::build(
        raw.delivery,
        raw.routes,
        text,
        &cfg.domains,
        &mut cfg.delivery,
    )?;
    cfg.dkim = super::dkim::build(raw.dkim, text, &cfg.domains)?;
    Ok(cfg)
}

/// Takes `dnsbl.zones` and `delivery.dns_servers`, each entry once.
fn dns(
    dnsbl: super::raw::RawDnsbl,
    dns_servers: Option<Spanned<List<super::leaf::DnsServer>>>,
    cfg: &mut Config,
) {
    if let Some(zones) = dnsbl.zones {
        cfg.dnsbl.zones.clear();
        for zone in zones.into_inner().0 {
            let zone = zone.into_inner().0;
            if !cfg.dnsbl.zones.contains(&zone) {
                cfg.dnsbl.zones.push(zone);
            }
        }
    }
    if let Some(servers) = dns_servers {
        cfg.delivery.dns_servers.clear();
        for server in servers.into_inner().0 {
            let server = server.into_inner().0;
            if !cfg.delivery.dns_servers.contains(&server) {
                cfg.delivery.dns_servers.push(server);
            }
        }
    }
}

/// Takes `relay.relay_to`: domains we are a backup MX for, without
/// duplicates; a local domain is refused (its mail is delivered here).
fn relay_to(
    list: Spanned<List<Host>>,
    text: &str,
    local: &[String],
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for item in list.into_inner().0 {
        let span = item.span();
        let d = item.into_inner().0;
        if local.contains(&d) {
            let msg = format!(
                "\"{d}\" is also one of the local domains (`domains`), whose mail is delivered \
                 here; a domain is either local or relayed to, so remove it from one of the two"
            );
            return Err(ConfigError::at(text, span, "relay.relay_to", msg));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Longest greeting pause: clients give up on a greeting after 5 minutes
/// (RFC 5321 §4.5.3.2.1).
const MAX_GREET_PAUSE: Duration = Duration::from_secs(300);

fn limits(raw: &RawLimits, text: &str, out: &mut Limits) -> Result<(), ConfigError> {
    if let Some(v) = &raw.max_message_size {
        if v.get_ref().0 < 1024 {
            let msg = format!(
                "{} bytes is too small to hold even the headers of a message; write at least \"1K\", e.g. \"10M\"",
                v.get_ref().0
            );
            return Err(ConfigError::at(
                text,
                v.span(),
                "limits.max_message_size",
                msg,
            ));
        }
        out.max_message_size = v.get_ref().0;
    }
    for (key, value, slot) in [
        (
            "limits.max_recipients",
            &raw.max_recipients,
            &mut out.max_recipients,
        ),
        (
            "limits.max_connections",
            &raw.max_connections,
            &mut out.max_connections,
        ),
        (
            "limits.max_connections_per_host",
            &raw.max_connections_per_host,
            &mut out.max_connections_per_host,
        ),
        ("limits.max_errors", &raw.max_errors, &mut out.max_errors),
        (
            "limits.max_transactions",
            &raw.max_transactions,
            &mut out.max_transactions,
        ),
        (
            "limits.bad_recipients_limit",
            &raw.bad_recipients_limit,
            &mut out.bad_recipients_limit,
        ),
    ] {
        if let Some(v) = value {
            if v.get_ref().0 == 0 {
                let msg = "0 would refuse everything; write at least 1".into();
                return Err(ConfigError::at(text, v.span(), key, msg));
            }
            *slot = v.get_ref().0;
        }
    }
    if let Some(v) = &raw.bad_recipients_delay_after {
        out.bad_recipients_delay_after = v.get_ref().0;
    }
    if let Some(v) = &raw.messages_per_host {
        out.messages_per_host = v.get_ref().0;
    }
    if let Some(v) = &raw.auth_failures {
        out.auth_failures = v.get_ref().0;
    }
    if let Some(v) = &raw.messages_per_user {
        out.messages_per_user = v.get_ref().0;
    }
    // Zero is allowed for these: no cool-down (only the rate itself), no
    // penalty, no duplicate suppression, no greeting pause.
    for (value, slot) in [
        (&raw.rate_cooldown, &mut out.rate_cooldown),
        (&raw.bad_recipients_penalty, &mut out.bad_recipients_penalty),
        (&raw.duplicate_window, &mut out.duplicate_window),
    ] {
        if let Some(v) = value {
            *slot = v.get_ref().0;
        }
    }
    if let Some(v) = &raw.greet_pause {
        if v.get_ref().0 >= MAX_GREET_PAUSE {
            let msg = format!(
                "{} is too long: clients give up waiting for a greeting after 5 minutes \
                 (RFC 5321 §4.5.3.2.1); write a few seconds, e.g. \"1s\", or \"0s\" for no pause",
                format_duration(v.get_ref().0)
            );
            return Err(ConfigError::at(text, v.span(), "limits.greet_pause", msg));
        }
        out.greet_pause = v.get_ref().0;
    }
    Ok(())
}

/// Takes the `[deny]` table. Spam traps must be addresses of a local
/// domain (nobody could send to them here otherwise), and never the
/// postmaster or an alias, which must keep receiving mail.
fn deny(raw: RawDeny, text: &str, cfg: &mut Config) -> Result<(), ConfigError> {
    let out: &mut Deny = &mut cfg.deny;
    if let Some(list) = raw.from {
        for item in list.into_inner().0 {
            let entry = item.into_inner().0;
            if !out.from.contains(&entry) {
                out.from.push(entry);
            }
        }
    }
    if let Some(list) = raw.senders {
        for item in list.into_inner().0 {
            let entry = item.into_inner().0;
            if !out.senders.contains(&entry) {
                out.senders.push(entry);
            }
        }
    }
    if let Some(list) = raw.spam_traps {
        for item in list.into_inner().0 {
            let span = item.span();
            let trap = item.into_inner().0;
            let (local, domain) = trap.rsplit_once('@').unwrap_or((trap.as_str(), ""));
            let why = if !cfg.domains.iter().any(|d| d == domain) {
                Some(format!(
                    "\"{trap}\" is not in one of the local domains ({}), so no one can send to \
                     it here; use an address such as \"trap@{}\"",
                    cfg.domains.join(", "),
                    cfg.domains.first().map_or("example.org", String::as_str)
                ))
            } else if local == "postmaster" || trap == cfg.postmaster {
                Some(format!(
                    "\"{trap}\" is the postmaster, which must always receive mail (RFC 5321 \
                     §4.5.1); choose an address nobody uses"
                ))
            } else if cfg.aliases.contains_key(&trap) || cfg.aliases.contains_key(local) {
                Some(format!(
                    "\"{trap}\" is also an alias in [aliases]; a trap must be an address \
                     nobody uses, so remove one of the two"
                ))
            } else {
                None
            };
            if let Some(msg) = why {
                return Err(ConfigError::at(text, span, "deny.spam_traps", msg));
            }
            if !out.spam_traps.contains(&trap) {
                out.spam_traps.push(trap);
            }
        }
    }
    if let Some(v) = &raw.trap_block {
        out.trap_block = v.get_ref().0;
    }
    Ok(())
}

/// Takes the `[greylisting]` table; the delay must be at least a second
/// and shorter than the retry window, or no retry could ever pass.
fn greylisting(raw: &RawGreylisting, text: &str, out: &mut Greylisting) -> Result<(), ConfigError> {
    if let Some(v) = &raw.enabled {
        out.enabled = v.get_ref().0;
    }
    for (key, value, slot) in [
        ("greylisting.delay", &raw.delay, &mut out.delay),
        ("greylisting.pass_for", &raw.pass_for, &mut out.pass_for),
        (
            "greylisting.retry_window",
            &raw.retry_window,
            &mut out.retry_window,
        ),
    ] {
        if let Some(v) = value {
            if v.get_ref().0 < Duration::from_secs(1) {
                let msg = "must be at least 1s; write e.g. \"5m\"".into();
                return Err(ConfigError::at(text, v.span(), key, msg));
            }
            *slot = v.get_ref().0;
        }
    }
    if out.retry_window <= out.delay {
        let (span, key) = match (&raw.retry_window, &raw.delay) {
            (Some(v), _) => (v.span(), "greylisting.retry_window"),
            (None, Some(v)) => (v.span(), "greylisting.delay"),
            (None, None) => (0..0, "greylisting.retry_window"),
        };
        let msg = format!(
            "the retry window ({}) must be longer than the delay ({}), or no retry could ever \
             pass; e.g. delay = \"5m\" and retry_window = \"2d\"",
            format_duration(out.retry_window),
            format_duration(out.delay)
        );
        return Err(ConfigError::at(text, span, key, msg));
    }
    Ok(())
}

/// Takes the listener lists; refuses an address given twice, and one that
/// an unspecified address (`0.0.0.0`, `::`) on the same port already covers.
/// Port 0 (any free port) never clashes.
fn listeners(raw: super::raw::RawListen, text: &str, out: &mut Listen) -> Result<(), ConfigError> {
    let mut seen: Vec<(SocketAddr, usize)> = Vec::new();
    let mut check = |key: &str, list: Option<Spanned<List<Listener>>>| {
        let Some(list) = list else {
            return Ok(None);
        };
        let mut addrs = Vec::new();
        for item in list.into_inner().0 {
            let addr = item.get_ref().0;
            let line = line_of(text, item.span().start);
            if let Some((other, other_line)) = seen.iter().find(|(o, _)| clashes(*o, addr)) {
                let msg = if *other == addr {
                    format!("\"{addr}\" is listed twice (also on line {other_line}); remove one")
                } else {
                    format!(
                        "\"{addr}\" overlaps \"{other}\" (line {other_line}): an address of \
                         0.0.0.0 or [::] listens on every address of the machine; remove one"
                    )
                };
                return Err(ConfigError::at(text, item.span(), key, msg));
            }
            seen.push((addr, line));
            addrs.push(addr);
        }
        Ok(Some(addrs))
    };
    if let Some(a) = check("listen.smtp", raw.smtp)? {
        out.smtp = a;
    }
    if let Some(a) = check("listen.submission", raw.submission)? {
        out.submission = a;
    }
    if let Some(a) = check("listen.submissions", raw.submissions)? {
        out.submissions = a;
    }
    Ok(())
}

/// Takes `tls.certificate` and `tls.key`: both or neither.
fn tls(raw: super::raw::RawTls, text: &str, out: &mut super::Tls) -> Result<(), ConfigError> {
    match (raw.certificate, raw.key) {
        (None, None) => Ok(()),
        (Some(c), Some(k)) => {
            for (key, v) in [("tls.certificate", &c), ("tls.key", &k)] {
                if v.get_ref().0.is_empty() {
                    let msg = "is empty; write the path of a PEM file".into();
                    return Err(ConfigError::at(text, v.span(), key, msg));
                }
            }
            out.certificate = Some(PathBuf::from(c.into_inner().0));
            out.key = Some(PathBuf::from(k.into_inner().0));
            Ok(())
        }
        (Some(v), None) | (None, Some(v)) => {
            let msg = "needs its partner: write both tls.certificate and tls.key, or neither                        (then hato generates a self-signed certificate in data_dir/tls/)"
                .into();
            Err(ConfigError::at(text, v.span(), "tls", msg))
        }
    }
}

fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 || a.is_ipv4() != b.is_ipv4() {
        return false;
    }
    let unspecified = |ip: IpAddr| ip.is_unspecified();
    a.ip() == b.ip() || unspecified(a.ip()) || unspecified(b.ip())
}

#[cfg(test)]
mod tests;
