//! The server's setup for a transcript: the configuration file (the same
//! text for the core and both binaries) and the users file.

use std::path::Path;
use std::sync::Arc;

use hato_core::config::{Config, Overrides};
use hato_core::directory::Directory;

use crate::transcript::Transcript;

/// The server's host name in every transcript.
pub const HOSTNAME: &str = "mail.example.test";

/// Where remote mail goes when a test configures no `[delivery]` key: the
/// discard port on loopback, where nothing listens, so such mail stays
/// queued and no test ever asks the machine's own DNS resolver.
pub const UNREACHABLE_SMARTHOST: &str = "127.0.0.1:9";

/// The users file of every transcript: two receive-only mailboxes.
pub const USERS: &str = "alice@example.test:!\nbob@example.test:!\n";

/// Returns the `hato.toml` text for `t`: host name, data directory, both
/// listeners on loopback with port 0, then the transcript's overrides
/// grouped per table (an override replaces a default of the same key).
pub fn config_toml(t: &Transcript, data_dir: &Path) -> String {
    config_toml_with(&t.config, data_dir)
}

/// Returns the `hato.toml` text with `overrides`, `(table, "key = value")`
/// pairs as in [`Transcript::config`] (`table` empty for top-level keys),
/// or `("table.key", "value")` pairs (a dotted first part): host name, data
/// directory, both listeners on loopback with port 0, then the overrides
/// grouped per table (an override replaces a default of the same key).
/// Unless the overrides set `delivery.smarthost` or `delivery.dns_servers`,
/// `delivery.smarthost` is [`UNREACHABLE_SMARTHOST`].
pub fn config_toml_with(overrides: &[(String, String)], data_dir: &Path) -> String {
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(first, second)| match first.rsplit_once('.') {
            Some((table, key)) => (table.to_owned(), format!("{key} = {second}")),
            None => (first.clone(), second.clone()),
        })
        .collect();
    let mut tables: Vec<(String, Vec<String>)> = vec![
        (
            String::new(),
            vec![
                format!("hostname = {}", toml_string(HOSTNAME)),
                format!(
                    "data_dir = {}",
                    toml_string(&data_dir.display().to_string())
                ),
            ],
        ),
        (
            "listen".into(),
            vec![
                r#"smtp = ["127.0.0.1:0"]"#.into(),
                r#"submission = ["127.0.0.1:0"]"#.into(),
            ],
        ),
    ];
    for (table, line) in &overrides {
        let key = line.split('=').next().unwrap_or("").trim().to_owned();
        let idx = match tables.iter().position(|(name, _)| name == table) {
            Some(i) => i,
            None => {
                tables.push((table.clone(), Vec::new()));
                tables.len() - 1
            }
        };
        let lines = &mut tables[idx].1;
        lines.retain(|l| l.split('=').next().unwrap_or("").trim() != key);
        lines.push(line.clone());
    }
    // Hermetic by default: unless a test names its own smarthost or DNS
    // servers, remote mail goes to a closed loopback port (and stays
    // queued), never to the machine's resolver.
    let delivery = match tables.iter().position(|(name, _)| name == "delivery") {
        Some(i) => i,
        None => {
            tables.push(("delivery".into(), Vec::new()));
            tables.len() - 1
        }
    };
    let chosen = tables[delivery].1.iter().any(|line| {
        let key = line.split('=').next().unwrap_or("").trim();
        key == "smarthost" || key == "dns_servers"
    });
    if !chosen {
        let line = format!("smarthost = {}", toml_string(UNREACHABLE_SMARTHOST));
        tables[delivery].1.push(line);
    }
    let mut text = String::new();
    for (name, lines) in tables {
        if !name.is_empty() {
            text.push_str(&format!("\n[{name}]\n"));
        }
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

/// Quotes `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Loads the configuration the core runs `t` with: the same text the
/// binaries get, read by [`Config::load`] without command-line overrides.
///
/// # Errors
/// The configuration error, with the text that caused it.
pub fn core_config(t: &Transcript) -> Result<Arc<Config>, String> {
    let text = config_toml(t, Path::new("/nonexistent/hato-spec-core"));
    Config::load(Some(&text), &Overrides::default())
        .map(Arc::new)
        .map_err(|e| format!("config error: {e}\n--- hato.toml ---\n{text}"))
}

/// Returns the directory of [`USERS`].
///
/// # Errors
/// The users file error (a bug in this crate).
pub fn core_directory() -> Result<Arc<Directory>, String> {
    Directory::parse(USERS)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_may_be_table_and_line_or_dotted_key_and_value() {
        let text = config_toml_with(
            &[
                ("limits".into(), "max_recipients = 5".into()),
                ("limits.greet_pause".into(), "\"0s\"".into()),
                ("relay.trusted_networks".into(), "[]".into()),
            ],
            Path::new("/d"),
        );
        assert!(
            text.contains("\n[limits]\nmax_recipients = 5\ngreet_pause = \"0s\"\n"),
            "{text}"
        );
        assert!(
            text.contains("\n[relay]\ntrusted_networks = []\n"),
            "{text}"
        );
        let cfg = Config::load(Some(&text), &Overrides::default()).unwrap();
        assert!(cfg.relay.trusted_networks.is_empty());
    }
}
