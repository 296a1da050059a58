//! The file as serde reads it: every table denies unknown keys, every
//! value that needs a line number for a later check keeps its span, and
//! every leaf is a small type whose own parser says what to write instead.

use serde::Deserialize;
use toml::Spanned;

use super::leaf::{
    Aliases, Count, DenyEntry, DnsServer, Dur, Flag, Hop, Host, List, Listener, Mailbox, Net, Port,
    RateLeaf, Routes, SenderEntry, Size, Text,
};
use super::{LocalMethod, MailboxOwner};

/// The keys of each table, for the message about an unknown key. A unit
/// test checks them against the structs below.
pub(super) const TABLES: [(&str, &[&str]); 11] = [
    (
        "",
        &[
            "hostname",
            "domains",
            "data_dir",
            "postmaster",
            "listen",
            "relay",
            "limits",
            "timeouts",
            "aliases",
            "deny",
            "greylisting",
            "dnsbl",
            "delivery",
            "routes",
            "dkim",
            "tls",
        ],
    ),
    ("listen", &["smtp", "submission", "submissions"]),
    ("relay", &["trusted_networks", "relay_to"]),
    (
        "limits",
        &[
            "max_message_size",
            "max_recipients",
            "max_connections",
            "max_connections_per_host",
            "messages_per_host",
            "rate_cooldown",
            "max_errors",
            "max_transactions",
            "greet_pause",
            "bad_recipients_delay_after",
            "bad_recipients_limit",
            "bad_recipients_penalty",
            "duplicate_window",
            "auth_failures",
            "messages_per_user",
        ],
    ),
    ("timeouts", &["command", "data"]),
    ("deny", &["from", "senders", "spam_traps", "trap_block"]),
    (
        "greylisting",
        &["enabled", "delay", "retry_window", "pass_for"],
    ),
    ("dnsbl", &["zones"]),
    (
        "delivery",
        &[
            "dns_servers",
            "smtp_port",
            "smarthost",
            "retry",
            "max_lifetime",
            "delay_warning",
            "connections_per_destination",
            "max_connections",
            "max_hops",
            "timeout",
            "local",
            "mailbox_owner",
        ],
    ),
    ("dkim", &["enabled", "selector", "algorithm", "keys"]),
    ("tls", &["certificate", "key"]),
];

/// Keys of DESIGN.md §3 that later versions will implement. Refused, as
/// silently ignoring e.g. a deny list would be a security hazard.
pub(super) const NOT_YET: [&str; 0] = [];

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a TOML document")]
pub(super) struct RawConfig {
    pub(super) hostname: Option<Spanned<Host>>,
    pub(super) domains: Option<Spanned<List<Host>>>,
    pub(super) data_dir: Option<Spanned<Text>>,
    pub(super) postmaster: Option<Spanned<Mailbox>>,
    #[serde(default)]
    pub(super) listen: RawListen,
    #[serde(default)]
    pub(super) relay: RawRelay,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) aliases: Aliases,
    #[serde(default)]
    pub(super) deny: RawDeny,
    #[serde(default)]
    pub(super) greylisting: RawGreylisting,
    #[serde(default)]
    pub(super) dnsbl: RawDnsbl,
    #[serde(default)]
    pub(super) delivery: RawDelivery,
    #[serde(default)]
    pub(super) routes: Routes,
    #[serde(default)]
    pub(super) dkim: super::dkim::RawDkim,
    #[serde(default)]
    pub(super) tls: RawTls,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [listen] on a line of its own, then its keys below it"
)]
pub(super) struct RawListen {
    pub(super) smtp: Option<Spanned<List<Listener>>>,
    pub(super) submission: Option<Spanned<List<Listener>>>,
    pub(super) submissions: Option<Spanned<List<Listener>>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [relay] on a line of its own, then its keys below it"
)]
pub(super) struct RawRelay {
    pub(super) trusted_networks: Option<Spanned<List<Net>>>,
    pub(super) relay_to: Option<Spanned<List<Host>>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [limits] on a line of its own, then its keys below it"
)]
pub(super) struct RawLimits {
    pub(super) max_message_size: Option<Spanned<Size>>,
    pub(super) max_recipients: Option<Spanned<Count>>,
    pub(super) max_connections: Option<Spanned<Count>>,
    pub(super) max_connections_per_host: Option<Spanned<Count>>,
    pub(super) messages_per_host: Option<Spanned<RateLeaf>>,
    pub(super) rate_cooldown: Option<Spanned<Dur>>,
    pub(super) max_errors: Option<Spanned<Count>>,
    pub(super) max_transactions: Option<Spanned<Count>>,
    pub(super) greet_pause: Option<Spanned<Dur>>,
    pub(super) bad_recipients_delay_after: Option<Spanned<Count>>,
    pub(super) bad_recipients_limit: Option<Spanned<Count>>,
    pub(super) bad_recipients_penalty: Option<Spanned<Dur>>,
    pub(super) duplicate_window: Option<Spanned<Dur>>,
    pub(super) auth_failures: Option<Spanned<RateLeaf>>,
    pub(super) messages_per_user: Option<Spanned<RateLeaf>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [timeouts] on a line of its own, then its keys below it"
)]
pub(super) struct RawTimeouts {
    pub(super) command: Option<Spanned<Dur>>,
    pub(super) data: Option<Spanned<Dur>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [deny] on a line of its own, then its keys below it"
)]
pub(super) struct RawDeny {
    pub(super) from: Option<Spanned<List<DenyEntry>>>,
    pub(super) senders: Option<Spanned<List<SenderEntry>>>,
    pub(super) spam_traps: Option<Spanned<List<Mailbox>>>,
    pub(super) trap_block: Option<Spanned<Dur>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [greylisting] on a line of its own, then its keys below it"
)]
pub(super) struct RawGreylisting {
    pub(super) enabled: Option<Spanned<Flag>>,
    pub(super) delay: Option<Spanned<Dur>>,
    pub(super) retry_window: Option<Spanned<Dur>>,
    pub(super) pass_for: Option<Spanned<Dur>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [dnsbl] on a line of its own, then its keys below it"
)]
pub(super) struct RawDnsbl {
    pub(super) zones: Option<Spanned<List<Host>>>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [delivery] on a line of its own, then its keys below it"
)]
pub(super) struct RawDelivery {
    pub(super) dns_servers: Option<Spanned<List<DnsServer>>>,
    pub(super) smtp_port: Option<Spanned<Port>>,
    pub(super) smarthost: Option<Spanned<Hop>>,
    pub(super) retry: Option<Spanned<List<Dur>>>,
    pub(super) max_lifetime: Option<Spanned<Dur>>,
    pub(super) delay_warning: Option<Spanned<Dur>>,
    pub(super) connections_per_destination: Option<Spanned<Count>>,
    pub(super) max_connections: Option<Spanned<Count>>,
    pub(super) max_hops: Option<Spanned<Count>>,
    pub(super) timeout: Option<Spanned<Dur>>,
    pub(super) local: Option<LocalMethod>,
    pub(super) mailbox_owner: Option<MailboxOwner>,
}

#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [tls] on a line of its own, then its keys below it"
)]
pub(super) struct RawTls {
    pub(super) certificate: Option<Spanned<Text>>,
    pub(super) key: Option<Spanned<Text>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's own list of a table's keys, from its unknown-key message.
    fn serde_keys(text: &str) -> Vec<String> {
        let Err(e) = toml::from_str::<RawConfig>(text) else {
            panic!("{text} was accepted");
        };
        let msg = e.message().to_owned();
        let (_, expected) = msg
            .split_once("expected")
            .unwrap_or_else(|| panic!("{msg}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn key_lists_match_the_structs() {
        for (table, keys) in TABLES {
            let text = if table.is_empty() {
                "no_such_key = 1\n".to_owned()
            } else {
                format!("[{table}]\nno_such_key = 1\n")
            };
            assert_eq!(serde_keys(&text), keys.to_vec(), "[{table}]");
        }
    }

    #[test]
    fn not_yet_keys_are_not_accepted_by_the_structs() {
        for key in NOT_YET {
            let text = match key.split_once('.') {
                Some((table, k)) => format!("[{table}]\n{k} = 1\n"),
                None => format!("{key} = 1\n"),
            };
            assert!(toml::from_str::<RawConfig>(&text).is_err(), "{key}");
        }
    }

    #[test]
    fn leaf_errors_carry_the_parsers_words() {
        let e = toml::from_str::<RawConfig>("[timeouts]\ncommand = 300\n")
            .err()
            .map(|e| e.message().to_owned());
        assert_eq!(
            e.as_deref(),
            Some("the number 300 has no unit; write \"300s\" for seconds, or use m, h or d, e.g. \"5m\"")
        );
    }
}
