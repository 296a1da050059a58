//! The `[dkim]` table: signing outgoing mail of the local domains
//! (RFC 6376). With no table at all, hato signs the mail of every local
//! domain that has a key file `data_dir/dkim/<domain>.<selector>.key`
//! (which `hato dkim keygen` writes), with selector `hato`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::error::dotted;
use super::leaf::{Flag, Host, Text};
use super::ConfigError;
use crate::message::dkim::{is_dns_name, Algorithm};

/// The selector used when `dkim.selector` is not given.
pub const DEFAULT_SELECTOR: &str = "hato";

/// The `[dkim]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// Whether mail is signed at all. Default true (signing happens only
    /// for domains with a key).
    pub enabled: bool,
    /// The selector (`s=`): the key's DNS record is
    /// `<selector>._domainkey.<domain>`. Default `hato`.
    pub selector: String,
    /// The algorithm `hato dkim keygen` uses when not told. Default
    /// `rsa` (rsa-sha256, which every verifier knows); a key file's own
    /// type decides how it signs.
    pub algorithm: Algorithm,
    /// Key files given by name, per local domain (lower case). Other local
    /// domains use [`Dkim::default_key_file`] when it exists.
    pub keys: BTreeMap<String, PathBuf>,
}

impl Default for Dkim {
    fn default() -> Self {
        Self {
            enabled: true,
            selector: DEFAULT_SELECTOR.to_owned(),
            algorithm: Algorithm::RsaSha256,
            keys: BTreeMap::new(),
        }
    }
}

impl Dkim {
    /// Returns where `hato dkim keygen` puts the key of `domain` for
    /// `selector`: `data_dir/dkim/<domain>.<selector>.key`.
    pub fn default_key_file(data_dir: &Path, domain: &str, selector: &str) -> PathBuf {
        data_dir
            .join("dkim")
            .join(format!("{}.{}.key", domain.to_ascii_lowercase(), selector))
    }

    /// Returns the key file for `domain`: the one named in `dkim.keys`, or
    /// the default under `data_dir`.
    pub fn key_file(&self, data_dir: &Path, domain: &str) -> PathBuf {
        match self.keys.get(&domain.to_ascii_lowercase()) {
            Some(path) => path.clone(),
            None => Self::default_key_file(data_dir, domain, &self.selector),
        }
    }
}

/// Reads `rsa` or `ed25519` (or the `a=` names `rsa-sha256`,
/// `ed25519-sha256`).
pub fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "rsa" | "rsa-sha256" => Ok(Algorithm::RsaSha256),
        "ed25519" | "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
        _ => Err(format!(
            "\"{s}\" is not a DKIM algorithm; write \"rsa\" (understood by every receiver) or \
             \"ed25519\" (RFC 8463, shorter keys, not yet checked everywhere)"
        )),
    }
}

/// The table as serde reads it.
#[derive(Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table: [dkim] on a line of its own, then its keys below it"
)]
pub(super) struct RawDkim {
    pub(super) enabled: Option<Spanned<Flag>>,
    pub(super) selector: Option<Spanned<Text>>,
    pub(super) algorithm: Option<Spanned<Text>>,
    #[serde(default)]
    pub(super) keys: KeyFiles,
}

/// `[dkim.keys]`: `"example.org" = "/etc/hato/example.org.key"`, in file
/// order.
#[derive(Default)]
pub(super) struct KeyFiles(Vec<(Spanned<Host>, Spanned<Text>)>);

impl<'de> Deserialize<'de> for KeyFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyFiles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table: [dkim.keys] on a line of its own, then lines such as \
                     \"example.org\" = \"/etc/hato/example.org.key\" below it",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyFiles, A::Error> {
                let mut items = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    items.push(pair);
                }
                Ok(KeyFiles(items))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks the table against the local domains and builds [`Dkim`].
pub(super) fn build(raw: RawDkim, text: &str, domains: &[String]) -> Result<Dkim, ConfigError> {
    let mut out = Dkim::default();
    if let Some(v) = raw.enabled {
        out.enabled = v.get_ref().0;
    }
    if let Some(v) = raw.selector {
        let s = v.get_ref().0.trim().to_ascii_lowercase();
        if !is_dns_name(&s) {
            let msg = format!(
                "\"{}\" is not a selector; write one or more DNS labels of letters, digits \
                 and hyphens, such as \"hato\" or \"2026-05\"",
                v.get_ref().0
            );
            return Err(ConfigError::at(text, v.span(), "dkim.selector", msg));
        }
        out.selector = s;
    }
    if let Some(v) = raw.algorithm {
        out.algorithm = parse_algorithm(&v.get_ref().0)
            .map_err(|m| ConfigError::at(text, v.span(), "dkim.algorithm", m))?;
    }
    let mut pairs = raw.keys.0;
    pairs.sort_by_key(|(domain, _)| domain.span().start);
    for (domain, path) in pairs {
        let span = domain.span();
        let domain = domain.into_inner().0;
        let key = dotted(&["dkim", "keys", domain.as_str()]);
        if !domains.contains(&domain) {
            let msg = format!(
                "{domain} is not one of the local domains ({}); hato signs only the mail of \
                 its own domains, so add {domain} to domains or remove this line",
                domains.join(", ")
            );
            return Err(ConfigError::at(text, span, &key, msg));
        }
        if path.get_ref().0.trim().is_empty() {
            let msg = "is empty; write the path of a PKCS#8 PEM key file, e.g. \
                       \"/etc/hato/dkim/example.org.key\""
                .into();
            return Err(ConfigError::at(text, path.span(), &key, msg));
        }
        if out.keys.contains_key(&domain) {
            let msg = "is given twice (case does not matter); remove one".into();
            return Err(ConfigError::at(text, span, &key, msg));
        }
        out.keys.insert(domain, PathBuf::from(path.into_inner().0));
    }
    Ok(out)
}

/// The `check-config` paragraph on DKIM.
pub(super) fn explain(dkim: &Dkim, data_dir: &Path, domains: &[String]) -> String {
    if !dkim.enabled {
        return "DKIM: outgoing mail is not signed (dkim.enabled = false).".into();
    }
    let files: Vec<String> = domains
        .iter()
        .map(|d| format!("{d}: {}", dkim.key_file(data_dir, d).display()))
        .collect();
    format!(
        "DKIM: outgoing mail from a local domain is signed (relaxed/relaxed, selector \
         \"{}\") when that domain has a key file ({}); domains without one send unsigned \
         mail. `hato dkim keygen DOMAIN` makes {} key and prints the DNS record to publish.",
        dkim.selector,
        files.join("; "),
        match dkim.algorithm {
            Algorithm::RsaSha256 => "an RSA",
            Algorithm::Ed25519Sha256 => "an Ed25519",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::load(
            Some(&format!(
                "hostname = \"mail.example.org\"\ndata_dir = \"/d\"\n{text}"
            )),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_sign_with_keys_under_the_data_dir() {
        let cfg = load("").unwrap();
        assert_eq!(cfg.dkim, Dkim::default());
        assert_eq!(
            cfg.dkim.key_file(&cfg.data_dir, "Example.ORG"),
            PathBuf::from("/d/dkim/example.org.hato.key")
        );
        assert!(cfg
            .explain()
            .contains("DKIM: outgoing mail from a local domain is signed"));
    }

    #[test]
    fn the_table_is_read() {
        let cfg = load(
            "[dkim]\nselector = \"S2026\"\nalgorithm = \"ed25519\"\n[dkim.keys]\n\
             \"example.org\" = \"/etc/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(cfg.dkim.selector, "s2026");
        assert_eq!(cfg.dkim.algorithm, Algorithm::Ed25519Sha256);
        assert_eq!(
            cfg.dkim.key_file(&cfg.data_dir, "example.org"),
            PathBuf::from("/etc/k.pem")
        );
        assert_eq!(
            cfg.dkim.key_file(&cfg.data_dir, "mail.example.org"),
            PathBuf::from("/d/dkim/mail.example.org.s2026.key")
        );
        let off = load("[dkim]\nenabled = false\n").unwrap();
        assert!(!off.dkim.enabled);
        assert!(off.explain().contains("not signed"));
    }

    #[test]
    fn mistakes_name_the_key_and_the_line() {
        let e = load("[dkim]\nselector = \"a b\"\n").unwrap_err();
        assert_eq!((e.key.as_deref(), e.line), (Some("dkim.selector"), Some(4)));
        let e = load("[dkim]\nalgorithm = \"dsa\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dkim.algorithm"));
        assert!(e.message.contains("\"rsa\""), "{}", e.message);
        let e = load("[dkim.keys]\n\"other.example\" = \"/k\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dkim.keys.\"other.example\""));
        assert!(e.message.contains("not one of the local domains"));
        let e = load("[dkim]\nsign = true\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("dkim.sign"));
    }
}
