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
mod error;
mod explain;
mod leaf;
mod load;
mod names;
mod raw;
pub mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::net::IpNet;

pub use error::ConfigError;
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
}

/// The `[listen]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Port 25-style SMTP listeners. Default `127.0.0.1:2525`.
    pub smtp: Vec<SocketAddr>,
    /// Submission listeners (RFC 6409; AUTH required before MAIL).
    /// Default `127.0.0.1:2587`.
    pub submission: Vec<SocketAddr>,
}

/// The `[relay]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Clients that may send to any domain. Default: loopback only.
    pub trusted_networks: Vec<IpNet>,
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

    /// Describes the effective policy in plain words for `hato check-config`.
    pub fn explain(&self) -> String {
        explain::explain(self)
    }
}
