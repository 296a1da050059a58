//! Reading `hato.toml` into a [`Config`](super::Config).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::{Config, Limits, Listen, Overrides, Relay, Timeouts};

/// A configuration the server refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `limits.max_message_size`, when one is at fault.
    pub key: Option<String>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

pub(super) fn defaults(hostname: &str) -> Config {
    let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
    let mut domains = Vec::new();
    if let Some((_, parent)) = hostname.split_once('.') {
        if parent.contains('.') || !parent.is_empty() {
            domains.push(parent.to_owned());
        }
    }
    domains.push(hostname.clone());
    let postmaster = format!("postmaster@{}", domains[0]);
    Config {
        hostname,
        domains,
        data_dir: PathBuf::from("hato-data"),
        postmaster,
        listen: Listen {
            smtp: vec![([127, 0, 0, 1], 2525).into()],
            submission: vec![([127, 0, 0, 1], 2587).into()],
        },
        relay: Relay {
            trusted_networks: vec![
                crate::net::IpNet::new([127, 0, 0, 0].into(), 8)
                    .into_iter()
                    .collect::<Vec<_>>()[0],
                crate::net::IpNet::host(std::net::Ipv6Addr::LOCALHOST.into()),
            ],
        },
        limits: Limits::default(),
        timeouts: Timeouts::default(),
        aliases: BTreeMap::new(),
    }
}

pub(super) fn load(text: Option<&str>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let _ = text;
    let hostname = overrides.hostname.clone().ok_or_else(|| ConfigError {
        key: Some("hostname".into()),
        line: None,
        message: "required".into(),
    })?;
    let mut cfg = defaults(&hostname);
    if let Some(d) = &overrides.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}
