//! `hato check-config`: the effective policy in plain words, then a
//! `Warning:` line for each risky value.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::units::{format_duration, format_size};
use super::{Config, DenyFrom, LocalMethod};
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
        "Listening: SMTP on {}; submission (authentication required before MAIL) on {}; \
         submission over implicit TLS on {}.",
        addrs(&cfg.listen.smtp),
        addrs(&cfg.listen.submission),
        addrs(&cfg.listen.submissions)
    ));
    line(tls(cfg));
    line(auth(cfg));
    line(aliases(cfg));
    line("VRFY reveals nothing (252) and EXPN is disabled (502).".into());
    for l in defences(cfg) {
        line(l);
    }
    for l in dns(cfg) {
        line(l);
    }
    for l in delivery(cfg) {
        line(l);
    }
    line(local_delivery(cfg));
    line(super::dkim::explain(&cfg.dkim, &cfg.data_dir, &cfg.domains));
    for w in warnings(cfg) {
        line(format!("Warning: {w}"));
    }
    out
}

/// Where the TLS certificate comes from.
fn tls(cfg: &Config) -> String {
    let source = match (&cfg.tls.certificate, &cfg.tls.key) {
        (Some(c), Some(k)) => format!(
            "the certificate in {} with the key in {}",
            c.display(),
            k.display()
        ),
        _ => format!(
            "a self-signed certificate that hato generates in {} when first needed \
             (tls.certificate and tls.key are not set)",
            cfg.data_dir.join("tls").display()
        ),
    };
    format!(
        "TLS: STARTTLS is offered on SMTP and submission, and used from the first byte on \
         implicit-TLS submission, with {source}."
    )
}

/// SMTP AUTH and the submission rules.
fn auth(cfg: &Config) -> String {
    let l = &cfg.limits;
    format!(
        "Authentication: AUTH PLAIN and LOGIN against the users file, offered only inside TLS \
         (and in plain text only on submission to loopback clients; never on the SMTP port \
         without TLS). If the users file cannot be read, AUTH fails (454) and nobody relays. \
         After {} failed attempts in {} from one address or for one user name, AUTH is \
         refused (421) until the window passes. An authenticated user may relay, but may send \
         only as their own address or an alias pointing to them (envelope and From:, else \
         553 5.7.1), at most {} messages in {} (then 451 4.7.1); submitted messages without \
         Message-ID or Date get them.",
        l.auth_failures.count,
        format_duration(l.auth_failures.per),
        l.messages_per_user.count,
        format_duration(l.messages_per_user.per)
    )
}

/// DNS block lists and the DNS servers hato asks.
fn dns(cfg: &Config) -> [String; 2] {
    let lists = if cfg.dnsbl.zones.is_empty() {
        "DNS block lists: none (dnsbl.zones is empty).".to_owned()
    } else {
        format!(
            "DNS block lists: a client listed by {} (an answer in 127.0.0.0/8) is refused \
             when it connects (554 5.7.1, naming the list). When a list cannot be asked (DNS \
             down, timeout), the client is not refused, and the failure is logged.",
            cfg.dnsbl.zones.join(", ")
        )
    };
    let servers = if cfg.delivery.dns_servers.is_empty() {
        "DNS servers: the nameserver lines of /etc/resolv.conf (delivery.dns_servers is empty)."
            .to_owned()
    } else {
        let list: Vec<String> = cfg
            .delivery
            .dns_servers
            .iter()
            .map(ToString::to_string)
            .collect();
        format!("DNS servers: {}, asked in that order.", list.join(", "))
    };
    [lists, servers]
}

/// Where non-local mail goes and how long it is tried.
fn delivery(cfg: &Config) -> Vec<String> {
    let d = &cfg.delivery;
    let mut out = Vec::new();
    out.push(match &d.smarthost {
        Some(hop) => {
            format!(
            "Remote delivery: every message for another domain goes through the smarthost {hop}{}.",
            if d.routes.is_empty() { "" } else { " (except the routes below)" }
        )
        }
        None => format!(
            "Remote delivery: to the mail servers each domain names in DNS (MX records, or its \
             own address without them), on port {}.",
            d.smtp_port
        ),
    });
    for (domain, hop) in &d.routes {
        out.push(format!(
            "Route: mail for {domain} goes to {hop}, not to its MX."
        ));
    }
    let retry: Vec<String> = d.retry.iter().map(|w| format_duration(*w)).collect();
    out.push(format!(
        "Failed attempts are retried after {} (the last wait repeats); a message still \
         undelivered after {} is returned to its sender{}. At most {} connections at once, {} \
         to one destination. A message with more than {} Received: headers is looping and is \
         returned.",
        retry.join(", "),
        format_duration(d.max_lifetime),
        match d.delay_warning {
            Some(w) => format!(", who is told of the delay after {}", format_duration(w)),
            None => String::new(),
        },
        d.max_connections,
        d.connections_per_destination,
        d.max_hops
    ));
    out
}

/// Where local mail goes (`delivery.local`) and who owns the Maildirs
/// (`delivery.mailbox_owner`).
fn local_delivery(cfg: &Config) -> String {
    let mailboxes = cfg.data_dir.join("mailboxes");
    let owner = match &cfg.delivery.mailbox_owner {
        None => "owned by the user running hato (delivery.mailbox_owner is not set)".to_owned(),
        Some(o) => format!(
            "owned by {o} (delivery.mailbox_owner; hato must run as root to give them away, \
             and `serve` refuses to start if that user does not exist)"
        ),
    };
    match &cfg.delivery.local {
        LocalMethod::Maildir => format!(
            "Local delivery: hato writes each message into the recipient's Maildir under {}, \
             directories 0700 and files 0600, {owner}.",
            mailboxes.display()
        ),
        LocalMethod::Lmtp(target) => format!(
            "Local delivery: each message goes to the LMTP server at {target} (e.g. Dovecot), \
             which writes the mailboxes; one reply per recipient: 4xx is retried, 5xx fails \
             that recipient. A crash between the server's 250 and hato's record of it can \
             deliver a message twice (LMTP's at-least-once rule)."
        ),
    }
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
    let backup = if cfg.relay.relay_to.is_empty() {
        String::new()
    } else {
        format!(
            " Backup MX: mail for {} is accepted from anyone and kept in the queue for \
             that domain's own servers.",
            cfg.relay.relay_to.join(", ")
        )
    };
    format!(
        "{who} Everyone else may only send to the domains above. Authenticated users may relay \
         (SMTP AUTH).{backup}"
    )
}

/// The built-in defences, one line each.
fn defences(cfg: &Config) -> Vec<String> {
    let l = &cfg.limits;
    let mut out = Vec::new();
    let rate = l.messages_per_host;
    let cooldown = if l.rate_cooldown.is_zero() {
        "until its rate drops again".to_owned()
    } else {
        format!("for {}", format_duration(l.rate_cooldown))
    };
    out.push(format!(
        "Mail-bomb guard: at most {} messages in {} from one client address (an IPv6 client \
         counts as its /64); past that, MAIL gets 451 4.7.1 (try later) {cooldown}. Trusted \
         networks and authenticated clients are not counted.",
        rate.count,
        format_duration(rate.per)
    ));
    out.push(format!(
        "Sessions: at most {} refused commands before the connection is closed (421), at most \
         {} messages per connection.",
        l.max_errors, l.max_transactions
    ));
    out.push(if l.greet_pause.is_zero() {
        "Greeting pause: none.".to_owned()
    } else {
        format!(
            "Greeting pause: {} on the SMTP port for clients outside the trusted networks; a \
             client that talks before the greeting is refused (554). None on submission.",
            format_duration(l.greet_pause)
        )
    });
    let penalty = if l.bad_recipients_penalty.is_zero() {
        String::new()
    } else {
        format!(
            " and the client address is refused for {}",
            format_duration(l.bad_recipients_penalty)
        )
    };
    out.push(format!(
        "Dictionary attacks: after {} unknown recipients in a session each further RCPT is \
         delayed (1s, doubling up to 16s); after {} the session ends (421){penalty}.",
        l.bad_recipients_delay_after, l.bad_recipients_limit
    ));
    out.push(if l.duplicate_window.is_zero() {
        "Duplicate suppression: off.".to_owned()
    } else {
        format!(
            "Duplicate suppression: a message whose Message-ID reached the same recipient \
             within {} is accepted but not delivered again (logged as a duplicate).",
            format_duration(l.duplicate_window)
        )
    });
    out.push(deny_from(cfg));
    out.push(if cfg.deny.senders.is_empty() {
        "Denied senders: none.".to_owned()
    } else {
        format!(
            "Denied senders (refused at MAIL, 553 5.7.1): {}.",
            cfg.deny.senders.join(", ")
        )
    });
    out.push(if cfg.deny.spam_traps.is_empty() {
        "Spam traps: none.".to_owned()
    } else {
        let block = if cfg.deny.trap_block.is_zero() {
            "is refused (but not blocked, as deny.trap_block is 0s)".to_owned()
        } else {
            format!(
                "is refused and its address blocked for {}",
                format_duration(cfg.deny.trap_block)
            )
        };
        format!(
            "Spam traps: {}; a client that writes to one {block}.",
            cfg.deny.spam_traps.join(", ")
        )
    });
    let g = &cfg.greylisting;
    out.push(if g.enabled {
        format!(
            "Greylisting: on. The first message from a client network (/24, or /64 for IPv6) \
             with a given sender and recipient is refused with 451 4.7.1; a retry after {} and \
             within {} is accepted, and that combination then passes at once for {} after its \
             latest message. Trusted networks and authenticated clients are never greylisted.",
            format_duration(g.delay),
            format_duration(g.retry_window),
            format_duration(g.pass_for)
        )
    } else {
        "Greylisting: off.".to_owned()
    });
    out.push(format!(
        "Rates, penalties, blocks, greylisting and duplicates are remembered across restarts \
         in {}.",
        cfg.data_dir.join("state").join("policy").display()
    ));
    out
}

fn deny_from(cfg: &Config) -> String {
    let mut nets = Vec::new();
    let mut names = Vec::new();
    for d in &cfg.deny.from {
        match d {
            DenyFrom::Net(n) => nets.push(n.to_string()),
            DenyFrom::Name(n) => names.push(n.as_str()),
        }
    }
    if nets.is_empty() && names.is_empty() {
        return "Denied clients: none.".into();
    }
    let mut parts = Vec::new();
    if !nets.is_empty() {
        parts.push(format!(
            "clients from {} are refused when they connect (554 5.7.1)",
            nets.join(", ")
        ));
    }
    if !names.is_empty() {
        parts.push(format!(
            "clients whose HELO name is {} or a host below {} are refused at HELO (554 5.7.1); \
             reverse-DNS names will be checked too once hato looks names up",
            names.join(", "),
            if names.len() == 1 {
                "it"
            } else {
                "one of them"
            }
        ));
    }
    format!("Denied clients: {}.", parts.join("; "))
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
pub(super) fn warnings(cfg: &Config) -> Vec<String> {
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
    if l.greet_pause > Duration::from_secs(30) {
        w.push(format!(
            "limits.greet_pause is {}; some senders give up on a greeting after 30 seconds or \
             so and will try again later. A few seconds is enough to catch spam software.",
            format_duration(l.greet_pause)
        ));
    }
    if l.bad_recipients_delay_after >= l.bad_recipients_limit {
        w.push(format!(
            "limits.bad_recipients_delay_after ({}) is not below limits.bad_recipients_limit \
             ({}), so unknown recipients are never delayed before the session is ended.",
            l.bad_recipients_delay_after, l.bad_recipients_limit
        ));
    }
    let g = &cfg.greylisting;
    if g.enabled && g.delay > Duration::from_secs(3600) {
        w.push(format!(
            "greylisting.delay is {}; mail from new senders is held up at least that long. \
             A few minutes is usual (\"5m\").",
            format_duration(g.delay)
        ));
    }
    if g.enabled && g.retry_window < Duration::from_secs(6 * 3600) {
        w.push(format!(
            "greylisting.retry_window is {}; honest servers that retry slowly may never get \
             through. Hours or days are usual (\"2d\").",
            format_duration(g.retry_window)
        ));
    }
    if cfg.listen.smtp.is_empty()
        && cfg.listen.submission.is_empty()
        && cfg.listen.submissions.is_empty()
    {
        w.push(
            "listen.smtp, listen.submission and listen.submissions are all empty; hato will accept no connections."
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
            "Listening: SMTP on 127.0.0.1:2525; submission (authentication required before MAIL) on 127.0.0.1:2587; submission over implicit TLS on no address (disabled).",
            "with a self-signed certificate that hato generates in hato-data/tls when first needed",
            "After 5 failed attempts in 10m from one address or for one user name",
            "at most 100 messages in 1h (then 451 4.7.1)",
            "Aliases: abuse@ every local domain → alice@example.org.",
            "VRFY reveals nothing (252) and EXPN is disabled (502).",
        ] {
            assert!(text.contains(phrase), "missing {phrase:?} in\n{text}");
        }
        assert!(!text.contains("Warning"), "{text}");
    }

    #[test]
    fn the_defences_are_explained_with_their_defaults() {
        let text = cfg().explain();
        for phrase in [
            "Mail-bomb guard: at most 20 messages in 5s from one client address (an IPv6 client counts as its /64); past that, MAIL gets 451 4.7.1 (try later) for 1m. Trusted networks and authenticated clients are not counted.",
            "Sessions: at most 10 refused commands before the connection is closed (421), at most 100 messages per connection.",
            "Greeting pause: 1s on the SMTP port for clients outside the trusted networks",
            "Dictionary attacks: after 3 unknown recipients in a session each further RCPT is delayed (1s, doubling up to 16s); after 10 the session ends (421) and the client address is refused for 10m.",
            "Duplicate suppression: a message whose Message-ID reached the same recipient within 1d is accepted but not delivered again",
            "Denied clients: none.",
            "Denied senders: none.",
            "Spam traps: none.",
            "Greylisting: off.",
            "remembered across restarts in hato-data/state/policy.",
        ] {
            assert!(text.contains(phrase), "missing {phrase:?} in\n{text}");
        }
    }

    #[test]
    fn configured_defences_are_named() {
        let mut c = cfg();
        c.relay.relay_to = vec!["partner.example".into()];
        c.deny.from = vec![
            DenyFrom::Net(net("203.0.113.0/24")),
            DenyFrom::Name("spam.example.net".into()),
        ];
        c.deny.senders = vec!["junk.example".into()];
        c.deny.spam_traps = vec!["trap@example.org".into()];
        c.greylisting.enabled = true;
        c.limits.greet_pause = Duration::ZERO;
        c.limits.duplicate_window = Duration::ZERO;
        let text = c.explain();
        for phrase in [
            "Backup MX: mail for partner.example is accepted from anyone",
            "Denied clients: clients from 203.0.113.0/24 are refused when they connect (554 5.7.1); clients whose HELO name is spam.example.net or a host below it are refused at HELO (554 5.7.1); reverse-DNS names will be checked too once hato looks names up.",
            "Denied senders (refused at MAIL, 553 5.7.1): junk.example.",
            "Spam traps: trap@example.org; a client that writes to one is refused and its address blocked for 1d.",
            "Greylisting: on. The first message from a client network (/24, or /64 for IPv6) with a given sender and recipient is refused with 451 4.7.1; a retry after 5m and within 2d is accepted, and that combination then passes at once for 36d",
            "Greeting pause: none.",
            "Duplicate suppression: off.",
        ] {
            assert!(text.contains(phrase), "missing {phrase:?} in\n{text}");
        }
        assert!(!text.contains("Warning"), "{text}");
    }

    #[test]
    fn odd_defence_settings_warn() {
        let mut c = cfg();
        c.limits.greet_pause = Duration::from_secs(60);
        c.limits.bad_recipients_delay_after = 10;
        c.greylisting.enabled = true;
        c.greylisting.delay = Duration::from_secs(7200);
        c.greylisting.retry_window = Duration::from_secs(10_800);
        let text = c.explain();
        for phrase in [
            "Warning: limits.greet_pause is 1m",
            "Warning: limits.bad_recipients_delay_after (10) is not below",
            "Warning: greylisting.delay is 2h",
            "Warning: greylisting.retry_window is 3h",
        ] {
            assert!(text.contains(phrase), "missing {phrase:?} in\n{text}");
        }
    }

    #[test]
    fn local_delivery_and_mailbox_owner_are_explained() {
        let mut c = cfg();
        let text = c.explain();
        assert!(
            text.contains("Local delivery: hato writes each message into the recipient's Maildir")
        );
        assert!(text.contains("owned by the user running hato (delivery.mailbox_owner is not set)"));
        c.delivery.mailbox_owner = Some(crate::config::MailboxOwner::User("vmail".into()));
        assert!(c
            .explain()
            .contains("owned by vmail (delivery.mailbox_owner;"));
        c.delivery.local = crate::config::parse_local_delivery("lmtp:127.0.0.1:24").unwrap();
        let text = c.explain();
        assert!(
            text.contains(
                "Local delivery: each message goes to the LMTP server at lmtp:127.0.0.1:24"
            ),
            "{text}"
        );
    }

    #[test]
    fn dns_block_lists_and_servers_are_explained() {
        let mut c = cfg();
        let text = c.explain();
        assert!(text.contains("DNS block lists: none (dnsbl.zones is empty).\n"));
        assert!(text.contains("DNS servers: the nameserver lines of /etc/resolv.conf"));
        c.dnsbl.zones = vec!["zen.example.net".into(), "bl.example".into()];
        c.delivery.dns_servers = vec!["192.0.2.53:53".parse().unwrap()];
        let text = c.explain();
        assert!(
            text.contains(
                "DNS block lists: a client listed by zen.example.net, bl.example (an answer in \
                 127.0.0.0/8) is refused when it connects (554 5.7.1, naming the list)."
            ),
            "{text}"
        );
        assert!(text.contains("the client is not refused, and the failure is logged."));
        assert!(text.contains("DNS servers: 192.0.2.53:53, asked in that order.\n"));
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
        assert!(c.explain().contains(
            "Warning: listen.smtp, listen.submission and listen.submissions are all empty"
        ));
    }
}
