//! `hato check-config`: the effective policy in plain words, then a
//! `Warning:` line for each risky value.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::units::{format_duration, format_size};
use super::Config;
use crate::net::IpNet;

/// RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
const RFC_MIN_RECIPIENTS: usize = 100;
/// RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes.
const RFC_MIN_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) fn explain(cfg: &Config) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("hato will run as {}.", cfg.hostname));
    line(format!(
        "It accepts mail for these domains: {}.",
        cfg.domains.join(", ")
    ));
    line(format!(
        "Mail to postmaster@ any of them goes to {}.",
        cfg.postmaster
    ));
    line(format!(
        "Only mailboxes listed in the users file ({}) receive mail; unknown recipients are \
         refused at RCPT time (550 5.1.1).",
        cfg.data_dir.join("users").display()
    ));
    line(relay(cfg));
    line(format!(
        "Messages larger than {} ({} bytes) are refused; at most {} recipients per message.",
        format_size(cfg.limits.max_message_size),
        cfg.limits.max_message_size,
        cfg.limits.max_recipients
    ));
    line(format!(
        "Connections: at most {} in all, {} per client address.",
        cfg.limits.max_connections, cfg.limits.max_connections_per_host
    ));
    line(format!(
        "Timeouts: {} waiting for a command, {} waiting for message data.",
        format_duration(cfg.timeouts.command),
        format_duration(cfg.timeouts.data)
    ));
    line(format!(
        "Listening: SMTP on {}; submission (authentication required before MAIL) on {}.",
        addrs(&cfg.listen.smtp),
        addrs(&cfg.listen.submission)
    ));
    line(aliases(cfg));
    line("VRFY reveals nothing (252) and EXPN is disabled (502).".into());
    for w in warnings(cfg) {
        line(format!("Warning: {w}"));
    }
    out
}

fn relay(cfg: &Config) -> String {
    let nets = &cfg.relay.trusted_networks;
    let who = if nets.is_empty() {
        "Relay: no client may send to other domains by its address alone.".to_owned()
    } else {
        let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
        format!(
            "Relay: clients from {} may send to any domain.",
            list.join(", ")
        )
    };
    format!(
        "{who} Everyone else may only send to the domains above. Authenticated users may relay \
         (once AUTH is available)."
    )
}

fn addrs(list: &[SocketAddr]) -> String {
    if list.is_empty() {
        return "no address (disabled)".into();
    }
    let v: Vec<String> = list
        .iter()
        .map(|a| {
            if a.port() == 0 {
                format!("{a} (any free port)")
            } else {
                a.to_string()
            }
        })
        .collect();
    v.join(", ")
}

fn aliases(cfg: &Config) -> String {
    if cfg.aliases.is_empty() {
        return "Aliases: none.".into();
    }
    let mut s = String::from("Aliases: ");
    for (i, (key, target)) in cfg.aliases.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        if key.contains('@') {
            let _ = write!(s, "{key} → {target}");
        } else {
            let _ = write!(s, "{key}@ every local domain → {target}");
        }
    }
    s.push('.');
    s
}

/// The risky values, each with its consequence and the fix.
fn warnings(cfg: &Config) -> Vec<String> {
    let mut w = Vec::new();
    for net in &cfg.relay.trusted_networks {
        let (bits, wide) = match net.addr() {
            IpAddr::V4(_) => (32, 16),
            IpAddr::V6(_) => (128, 48),
        };
        if net.prefix() == 0 {
            w.push(format!(
                "OPEN RELAY: relay.trusted_networks contains {net}, which is every address on \
                 the internet. Anyone may send mail through this server to any domain; \
                 spammers find such servers within hours and the server ends up on block \
                 lists. List only your own networks, e.g. \"192.168.1.0/24\"."
            ));
        } else if net.prefix() < wide && !is_loopback(net) {
            let size = if bits == 32 {
                format!(" ({} addresses)", 1u64 << (32 - u32::from(net.prefix())))
            } else {
                String::new()
            };
            w.push(format!(
                "POSSIBLE OPEN RELAY: relay.trusted_networks contains {net}{size}, wider than \
                 a /{wide}. Every client in it may send mail to any domain; if any part of it \
                 is reachable from the internet, this server is an open relay. List only the \
                 networks of your own machines."
            ));
        }
    }
    let l = &cfg.limits;
    if l.max_recipients < RFC_MIN_RECIPIENTS {
        w.push(format!(
            "limits.max_recipients is {}, below the 100 that RFC 5321 §4.5.3.1.8 requires a \
             server to accept; senders of larger messages get 452 replies and must send again.",
            l.max_recipients
        ));
    }
    if l.max_connections_per_host > l.max_connections {
        w.push(format!(
            "limits.max_connections_per_host ({}) is larger than limits.max_connections ({}); \
             one client can take every connection.",
            l.max_connections_per_host, l.max_connections
        ));
    }
    for (key, t) in [
        ("timeouts.command", cfg.timeouts.command),
        ("timeouts.data", cfg.timeouts.data),
    ] {
        if t < RFC_MIN_TIMEOUT {
            w.push(format!(
                "{key} is {}, shorter than the 5 minutes RFC 5321 §4.5.3.2.7 asks for; slow \
                 but honest senders may be cut off and have to try again.",
                format_duration(t)
            ));
        }
    }
    if cfg.listen.smtp.is_empty() && cfg.listen.submission.is_empty() {
        w.push(
            "listen.smtp and listen.submission are both empty; hato will accept no connections."
                .into(),
        );
    }
    w
}

/// Tells whether `net` lies inside this machine's own 127.0.0.0/8.
fn is_loopback(net: &IpNet) -> bool {
    matches!(net.addr(), IpAddr::V4(a) if a.is_loopback()) && net.prefix() >= 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let mut c = Config::defaults("mail.example.org");
        c.aliases.insert("abuse".into(), "alice@example.org".into());
        c
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_explained_in_plain_words() {
        let text = cfg().explain();
        for phrase in [
            "hato will run as mail.example.org.\n",
            "It accepts mail for these domains: example.org, mail.example.org.\n",
            "Mail to postmaster@ any of them goes to postmaster@example.org.\n",
            "users file (hato-data/users)",
            "refused at RCPT time (550 5.1.1)",
            "Relay: clients from 127.0.0.0/8, ::1/128 may send to any domain.",
            "Everyone else may only send to the domains above.",
            "Messages larger than 10M (10485760 bytes) are refused; at most 100 recipients",
            "Connections: at most 200 in all, 10 per client address.",
            "Timeouts: 5m waiting for a command, 5m waiting for message data.",
            "Listening: SMTP on 127.0.0.1:2525; submission (authentication required before MAIL) on 127.0.0.1:2587.",
            "Aliases: abuse@ every local domain → alice@example.org.",
            "VRFY reveals nothing (252) and EXPN is disabled (502).",
        ] {
            assert!(text.contains(phrase), "missing {phrase:?} in\n{text}");
        }
        assert!(!text.contains("Warning"), "{text}");
    }

    #[test]
    fn everyone_as_trusted_network_is_a_loud_open_relay_warning() {
        let mut c = cfg();
        c.relay.trusted_networks.push(net("0.0.0.0/0"));
        let text = c.explain();
        assert!(text.contains("Warning: OPEN RELAY: relay.trusted_networks contains 0.0.0.0/0"));
        c.relay.trusted_networks = vec![net("::/0")];
        assert!(c.explain().contains("Warning: OPEN RELAY"));
    }

    #[test]
    fn wide_trusted_network_warns_but_lan_does_not() {
        let mut c = cfg();
        c.relay.trusted_networks = vec![net("10.0.0.0/8")];
        let text = c.explain();
        assert!(text.contains("Warning: POSSIBLE OPEN RELAY"), "{text}");
        assert!(text.contains("16777216 addresses"), "{text}");
        c.relay.trusted_networks = vec![net("192.168.0.0/16"), net("2001:db8:1::/48")];
        assert!(!c.explain().contains("Warning"));
    }

    #[test]
    fn listening_on_every_address_is_fine() {
        let mut c = cfg();
        c.listen.smtp = vec!["0.0.0.0:25".parse().unwrap()];
        let text = c.explain();
        assert!(text.contains("SMTP on 0.0.0.0:25;"));
        assert!(!text.contains("Warning"));
    }

    #[test]
    fn too_few_recipients_and_short_timeouts_warn_with_the_rfc() {
        let mut c = cfg();
        c.limits.max_recipients = 50;
        c.timeouts.command = Duration::from_secs(1);
        let text = c.explain();
        assert!(
            text.contains("Warning: limits.max_recipients is 50"),
            "{text}"
        );
        assert!(text.contains("§4.5.3.1.8"));
        assert!(text.contains("Warning: timeouts.command is 1s"), "{text}");
        assert!(text.contains("§4.5.3.2.7"));
        assert!(!text.contains("timeouts.data is"));
    }

    #[test]
    fn no_relay_networks_and_disabled_listeners_are_said() {
        let mut c = cfg();
        c.relay.trusted_networks.clear();
        c.listen.smtp.clear();
        c.aliases.clear();
        let text = c.explain();
        assert!(text.contains("Relay: no client may send to other domains by its address alone."));
        assert!(text.contains("SMTP on no address (disabled)"));
        assert!(text.contains("Aliases: none."));
        c.listen.submission.clear();
        assert!(c
            .explain()
            .contains("Warning: listen.smtp and listen.submission are both empty"));
    }
}
