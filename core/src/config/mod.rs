//! The configuration file `hato.toml` (DESIGN.md §3) read into a typed,
//! validated [`Config`]. Parsing is pure: the front end reads the file and
//! hands its text here. Unknown keys are errors, since a typo must never
//! silently weaken security; errors name the key, the line, and what to
//! write instead.
//!
//! ```
//! use hato_core::config::{Config, Overrides};
//!
//! let text = "hostname = \"mail.example.org\"\n[limits]\nmax_mesage_size = \"10M\"\n";
//! let err = Config::load(Some(text), &Overrides::default()).unwrap_err();
//! assert_eq!(err.line, Some(3));
//! assert_eq!(err.key.as_deref(), Some("limits.max_mesage_size"));
//!
//! let cfg = Config::load(None, &Overrides {
//!     hostname: Some("mail.example.test".into()),
//!     data_dir: None,
//! }).unwrap();
//! assert_eq!(cfg.domains, ["example.test", "mail.example.test"]);
//! print!("{}", cfg.explain()); // what `hato check-config` shows
//! ```
//!
//! Layout: `raw` (the serde structs) and `leaf` (one small type per kind
//! of value, whose parser says what to write instead) read the TOML;
//! `load` and `aliases` check what needs several values and build the
//! [`Config`]; `error` turns every failure into a [`ConfigError`];
//! `explain` writes the policy in words; [`units`] reads sizes, durations
//! and rates.

mod aliases;
mod delivery;
mod dkim;
mod error;
mod explain;
mod leaf;
mod load;
mod local;
mod names;
mod raw;
pub mod units;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::net::IpNet;

pub use dkim::{parse_algorithm, Dkim, DEFAULT_SELECTOR};
pub use error::ConfigError;
pub use local::{parse_local_delivery, parse_mailbox_owner, LmtpTarget, LocalMethod, MailboxOwner};
pub use units::{parse_duration, parse_rate, parse_size};

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Our host name: greetings, Received headers, Maildir file names.
    pub hostname: String,
    /// Local domains, normalized (lower case, no trailing dot), never empty.
    /// Default: the host name's parent domain (unless that is a bare
    /// top-level domain) and the host name.
    pub domains: Vec<String>,
    /// Where queue, mailboxes, users and state live. Default `./hato-data`.
    pub data_dir: PathBuf,
    /// Where mail to postmaster@ any local domain goes, as `local@domain`.
    /// Default: the `postmaster` mailbox of the first local domain.
    pub postmaster: String,
    /// Listening addresses.
    pub listen: Listen,
    /// Who may relay.
    pub relay: Relay,
    /// Size and count limits.
    pub limits: Limits,
    /// Session timeouts of RFC 5321 §4.5.3.2.
    pub timeouts: Timeouts,
    /// `local part` (in every local domain) or `local@domain` → target
    /// address, normalized to lower case.
    pub aliases: BTreeMap<String, String>,
    /// Deny lists and spam traps.
    pub deny: Deny,
    /// DNS block lists.
    pub dnsbl: Dnsbl,
    /// Greylisting.
    pub greylisting: Greylisting,
    /// How hato reaches other servers.
    pub delivery: Delivery,
    /// DKIM signing of outgoing mail.
    pub dkim: Dkim,
    /// The server's TLS certificate.
    pub tls: Tls,
}

/// The `[tls]` table: the certificate for STARTTLS and implicit TLS.
/// Without both paths, `hato serve` generates a self-signed certificate
/// into `data_dir/tls/` when the first connection needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file with the certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// A rate: `count` events per `per` (written `20/5s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many events are allowed...
    pub count: u32,
    /// ...in this much time.
    pub per: Duration,
}

/// One `deny.from` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyFrom {
    /// An IP address or CIDR network: refused at connect.
    Net(IpNet),
    /// A host or domain name (lower case): matches that name and every
    /// name below it, compared with the client's verified reverse-DNS name
    /// and its HELO name; refused at HELO.
    Name(String),
}

/// The `[deny]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// Clients refused (addresses at connect, names at HELO).
    pub from: Vec<DenyFrom>,
    /// Envelope senders (`user@domain`) or sender domains refused at MAIL,
    /// lower case.
    pub senders: Vec<String>,
    /// Addresses that only spammers write to, lower case: a client that
    /// sends to one is refused and its IP blocked for `trap_block`.
    pub spam_traps: Vec<String>,
    /// How long a spam-trap hit blocks the client's IP. Default 1d.
    pub trap_block: Duration,
}

/// The `[dnsbl]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dnsbl {
    /// DNS block list zones (e.g. `zen.spamhaus.org`). Default: none.
    pub zones: Vec<String>,
}

/// The `[delivery]` table and `[routes]`: how hato reaches other servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Recursive DNS servers to ask, in order. Empty (the default): the
    /// `nameserver` lines of /etc/resolv.conf, which the front end reads.
    pub dns_servers: Vec<SocketAddr>,
    /// The port remote delivery connects to (MX hosts and routes without
    /// a port). Default 25; tests and labs change it.
    pub smtp_port: u16,
    /// Every non-local message goes through this host (the gateway of a
    /// small office), unless `routes` names its domain. Default: none (MX).
    pub smarthost: Option<NextHop>,
    /// Domain (lower case) → the host its mail goes to, instead of its MX.
    pub routes: BTreeMap<String, NextHop>,
    /// Waits after the 1st, 2nd, ... failed attempt; the last repeats.
    /// Default 5m, 10m, 20m, 40m, 1h.
    pub retry: Vec<Duration>,
    /// How long a message is tried before it is bounced. Default 5d.
    pub max_lifetime: Duration,
    /// When the sender is told a message is delayed; `None` never.
    /// Default 4h.
    pub delay_warning: Option<Duration>,
    /// Connections at once to one destination. Default 5.
    pub connections_per_destination: usize,
    /// Remote-delivery connections at once in total. Default 20.
    pub max_connections: usize,
    /// A message with more `Received:` headers than this is looping and
    /// is bounced (RFC 5321 §6.3). Default 50.
    pub max_hops: usize,
    /// Caps every wait of remote delivery (connect, each reply); `None`:
    /// the RFC 5321 §4.5.3.2 times (5 minutes for most replies, 10 for
    /// the end of data).
    pub timeout: Option<Duration>,
    /// How local recipients get their mail (`delivery.local`). Default:
    /// hato writes the Maildirs itself.
    pub local: LocalMethod,
    /// Who owns the Maildirs hato writes (`delivery.mailbox_owner`).
    /// Default `None`: the user running hato.
    pub mailbox_owner: Option<MailboxOwner>,
}

impl Default for Delivery {
    fn default() -> Self {
        const MIN: u64 = 60;
        Self {
            dns_servers: Vec::new(),
            smtp_port: 25,
            smarthost: None,
            routes: BTreeMap::new(),
            retry: [5, 10, 20, 40, 60]
                .iter()
                .map(|m| Duration::from_secs(m * MIN))
                .collect(),
            max_lifetime: Duration::from_secs(5 * 24 * 60 * MIN),
            delay_warning: Some(Duration::from_secs(4 * 60 * MIN)),
            connections_per_destination: 5,
            max_connections: 20,
            max_hops: 50,
            timeout: None,
            local: LocalMethod::default(),
            mailbox_owner: None,
        }
    }
}

/// A host that mail goes to directly (`delivery.smarthost`, a route):
/// its addresses are looked up (A / AAAA), never its MX records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The host.
    pub host: HopHost,
    /// The port; `None`: `delivery.smtp_port`.
    pub port: Option<u16>,
}

/// The host part of a [`NextHop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopHost {
    /// A host name, lower case.
    Name(String),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.host, self.port) {
            (HopHost::Name(n), None) => write!(f, "{n}"),
            (HopHost::Name(n), Some(p)) => write!(f, "{n}:{p}"),
            (HopHost::Ip(IpAddr::V4(ip)), None) => write!(f, "{ip}"),
            (HopHost::Ip(IpAddr::V6(ip)), None) => write!(f, "[{ip}]"),
            (HopHost::Ip(ip), Some(p)) => write!(f, "{}", SocketAddr::new(*ip, p)),
        }
    }
}

/// The `[greylisting]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greylisting {
    /// Off by default.
    pub enabled: bool,
    /// How long a new (client /24 or /64, sender, recipient) triplet is
    /// refused with 4xx. Default 5m.
    pub delay: Duration,
    /// How long a first attempt waits for its retry. Default 2d.
    pub retry_window: Duration,
    /// How long a triplet that passed stays allowed. Default 36d.
    pub pass_for: Duration,
}

impl Default for Deny {
    fn default() -> Self {
        Self {
            from: Vec::new(),
            senders: Vec::new(),
            spam_traps: Vec::new(),
            trap_block: Duration::from_secs(86_400),
        }
    }
}

impl Default for Greylisting {
    fn default() -> Self {
        Self {
            enabled: false,
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 86_400),
            pass_for: Duration::from_secs(36 * 86_400),
        }
    }
}

/// The `[listen]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Port 25-style SMTP listeners. Default `127.0.0.1:2525`.
    pub smtp: Vec<SocketAddr>,
    /// Submission listeners (RFC 6409; AUTH required before MAIL).
    /// Default `127.0.0.1:2587`.
    pub submission: Vec<SocketAddr>,
    /// Submission over implicit TLS (RFC 8314, port 465). Default: none.
    pub submissions: Vec<SocketAddr>,
}

/// The `[relay]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Clients that may send to any domain. Default: loopback only.
    pub trusted_networks: Vec<IpNet>,
    /// Domains we are a backup MX for (normalized): mail for them is
    /// accepted from anyone and queued for them. Default: none.
    pub relay_to: Vec<String>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes. Default 10M.
    pub max_message_size: u64,
    /// Recipients per message. Default 100 (RFC 5321 §4.5.3.1.8 minimum).
    pub max_recipients: usize,
    /// Concurrent connections in all. Default 200.
    pub max_connections: usize,
    /// Concurrent connections from one IP address. Default 10.
    pub max_connections_per_host: usize,
    /// Messages (MAIL commands) one IP address may start; past it, MAIL
    /// gets 451 4.7.1 until `rate_cooldown` has passed. Default 20/5s.
    pub messages_per_host: Rate,
    /// How long a host that went over `messages_per_host` waits. Default 1m.
    pub rate_cooldown: Duration,
    /// Refused commands in one session before 421. Default 10.
    pub max_errors: usize,
    /// Mail transactions (MAIL commands) per connection. Default 100.
    pub max_transactions: usize,
    /// How long the server waits before its greeting on the smtp listener;
    /// a client that talks first is refused (554). Not applied to trusted
    /// networks or submission. Default 1s.
    pub greet_pause: Duration,
    /// Unknown recipients in a session after which each further RCPT is
    /// delayed (1s, 2s, 4s, ... at most 16s). Default 3.
    pub bad_recipients_delay_after: usize,
    /// Unknown recipients in a session after which it ends with 421 and the
    /// host is penalised for `bad_recipients_penalty`. Default 10.
    pub bad_recipients_limit: usize,
    /// How long a penalised host is refused at connect. Default 10m.
    pub bad_recipients_penalty: Duration,
    /// Window in which the same Message-ID to the same recipient is
    /// delivered once (mail bombs by repetition). Default 1d.
    pub duplicate_window: Duration,
    /// Failed AUTH attempts allowed per client address and per user name;
    /// past it AUTH gets 421 until the window has passed. Default 5/10m.
    pub auth_failures: Rate,
    /// Messages an authenticated user may send; past it MAIL gets
    /// 451 4.7.1. Default 100/1h.
    pub messages_per_user: Rate,
}

/// The `[timeouts]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for a command. Default 5m (RFC 5321 §4.5.3.2.7).
    pub command: Duration,
    /// Waiting for the next block of message data. Default 5m.
    pub data: Duration,
}

/// Values given on the command line, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--hostname`
    pub hostname: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 200,
            max_connections_per_host: 10,
            messages_per_host: Rate {
                count: 20,
                per: Duration::from_secs(5),
            },
            rate_cooldown: Duration::from_secs(60),
            max_errors: 10,
            max_transactions: 100,
            greet_pause: Duration::from_secs(1),
            bad_recipients_delay_after: 3,
            bad_recipients_limit: 10,
            bad_recipients_penalty: Duration::from_secs(600),
            duplicate_window: Duration::from_secs(86_400),
            auth_failures: Rate {
                count: 5,
                per: Duration::from_secs(600),
            },
            messages_per_user: Rate {
                count: 100,
                per: Duration::from_secs(3600),
            },
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            data: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Returns the embedded defaults for `hostname`: the safe server of
    /// DESIGN.md §2 (loopback listeners, `./hato-data`, relay for loopback only).
    pub fn defaults(hostname: &str) -> Self {
        load::defaults(hostname)
    }

    /// Reads a configuration from the text of `hato.toml` (or none), with
    /// command-line overrides applied on top.
    ///
    /// # Errors
    /// Returns a [`ConfigError`] naming the key, the line and the fix.
    pub fn load(text: Option<&str>, overrides: &Overrides) -> Result<Self, ConfigError> {
        load::load(text, overrides)
    }

    /// Tells whether `domain` (any case, one trailing dot allowed) is local.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.strip_suffix('.').unwrap_or(domain);
        self.domains.iter().any(|l| l.eq_ignore_ascii_case(d))
    }

    /// Returns the warnings about risky values (open-relay networks, short
    /// timeouts, ...), which `serve` logs at start and `check-config` prints.
    pub fn warnings(&self) -> Vec<String> {
        explain::warnings(self)
    }

    /// Describes the effective policy in plain words for `hato check-config`.
    pub fn explain(&self) -> String {
        explain::explain(self)
    }
}
