//! DKIM keys for signing outgoing mail (RFC 6376): loaded at start for
//! each local domain ([`load_signing_keys`]), asked for a signer per
//! message ([`DkimKeys::signer_for`]) or to sign a whole message read
//! from the spool ([`DkimKeys::sign_message`]); and made by `hato dkim
//! keygen` ([`keygen`]). The signing itself is `hato_core::message::dkim`.

pub mod command;
mod key;
pub mod keygen;
mod stream;

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hato_core::config::Config;
use hato_core::message::dkim::{Algorithm, DkimError, DkimSigner, SigningKey};
use hato_core::time::UnixTime;

pub use key::{pem_decode, pem_encode, DkimKey, KeyFormatError};
pub use keygen::{keygen, record_value, zone_line, Generated, KeygenError};
pub use stream::Signed;

use crate::log::Line;

/// A domain as the keys are filed: lower case, no trailing dot.
pub(crate) fn domain_key(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

/// Why the keys could not be loaded; `serve` and `check-config` stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLoadError {
    /// A key file named in `[dkim.keys]` does not exist.
    Missing {
        /// The domain.
        domain: String,
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The system's words.
        error: String,
    },
    /// Others than the owner may read or write the file.
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no usable key.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: KeyFormatError,
    },
}

impl fmt::Display for KeyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { domain, path } => write!(
                f,
                "the DKIM key of {domain}, {}, does not exist; make one with `hato dkim keygen \
                 {domain}` or fix dkim.keys",
                path.display()
            ),
            Self::Read { path, error } => {
                write!(f, "cannot read the DKIM key {}: {error}", path.display())
            }
            Self::Unsafe { path, mode } => write!(
                f,
                "the DKIM key {} can be read by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
            Self::Format { path, error } => {
                write!(f, "the DKIM key {} {error}", path.display())
            }
        }
    }
}

impl std::error::Error for KeyLoadError {}

/// One domain's key.
#[derive(Debug, Clone)]
pub struct DomainKey {
    /// The key.
    pub key: Arc<DkimKey>,
    /// Where it was read from.
    pub path: PathBuf,
}

/// The signing keys of the local domains, shared by the delivery threads.
#[derive(Debug, Clone, Default)]
pub struct DkimKeys {
    selector: String,
    keys: BTreeMap<String, DomainKey>,
}

impl DkimKeys {
    /// Returns a signer for mail whose sender domain is `domain` (any
    /// case, trailing dot allowed), stamped `now`; None when that domain
    /// has no key (its mail goes unsigned).
    pub fn signer_for(&self, domain: &str, now: UnixTime) -> Option<DkimSigner> {
        let domain = domain_key(domain);
        let entry = self.keys.get(&domain)?;
        let key: Arc<dyn SigningKey> = entry.key.clone();
        DkimSigner::new(key, &domain, &self.selector, now).ok()
    }

    /// Returns the domains that sign, with their keys.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &DomainKey)> {
        self.keys.iter().map(|(d, k)| (d.as_str(), k))
    }

    /// Returns the selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Tells whether no domain signs.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Logs one `event=dkim_key` line per signing domain (at `serve` start).
    pub fn log_loaded(&self) {
        for (domain, k) in self.domains() {
            Line::new("dkim_key")
                .kv("domain", domain)
                .kv("selector", &self.selector)
                .kv("algorithm", k.key.algorithm())
                .kv("file", k.path.display())
                .emit();
        }
    }
}

/// Logs that a message goes out unsigned: `event=dkim_unsigned`.
pub fn log_unsigned(queue_id: &str, domain: &str, error: &DkimError) {
    Line::new("dkim_unsigned")
        .kv("id", queue_id)
        .kv("domain", domain)
        .kv("reason", error)
        .emit();
}

/// Loads the key of every local domain: the file named in `[dkim.keys]`
/// (which must exist), else `data_dir/dkim/<domain>.<selector>.key` when
/// it exists. Nothing when `dkim.enabled` is false.
///
/// # Errors
/// A key file that is missing (when named), unreadable, readable by
/// others, or holds no usable key: see [`KeyLoadError`].
pub fn load_signing_keys(cfg: &Config) -> Result<DkimKeys, KeyLoadError> {
    let mut out = DkimKeys {
        selector: cfg.dkim.selector.clone(),
        keys: BTreeMap::new(),
    };
    if !cfg.dkim.enabled {
        return Ok(out);
    }
    for domain in &cfg.domains {
        let path = cfg.dkim.key_file(&cfg.data_dir, domain);
        let named = cfg.dkim.keys.contains_key(domain);
        let key = match load_key_file(&path) {
            Ok(key) => key,
            Err(KeyLoadError::Missing { .. }) if !named => continue,
            Err(KeyLoadError::Missing { path, .. }) => {
                return Err(KeyLoadError::Missing {
                    domain: domain.clone(),
                    path,
                })
            }
            Err(e) => return Err(e),
        };
        out.keys.insert(
            domain.clone(),
            DomainKey {
                key: Arc::new(key),
                path,
            },
        );
    }
    Ok(out)
}

/// Reads one key file, refusing one that others may read.
///
/// # Errors
/// See [`KeyLoadError`]; `Missing` carries an empty domain.
pub fn load_key_file(path: &Path) -> Result<DkimKey, KeyLoadError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyLoadError::Missing {
                domain: String::new(),
                path: path.to_owned(),
            })
        }
        Err(e) => {
            return Err(KeyLoadError::Read {
                path: path.to_owned(),
                error: e.to_string(),
            })
        }
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyLoadError::Unsafe {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| KeyLoadError::Read {
        path: path.to_owned(),
        error: e.to_string(),
    })?;
    DkimKey::from_pem(&text).map_err(|error| KeyLoadError::Format {
        path: path.to_owned(),
        error,
    })
}

/// The line `check-config` prints for one loaded key.
pub fn describe(domain: &str, selector: &str, k: &DomainKey) -> String {
    let kind = match (k.key.algorithm(), k.key.rsa_bits()) {
        (Algorithm::RsaSha256, Some(bits)) => format!("rsa-sha256, {bits} bits"),
        (a, _) => a.name().to_owned(),
    };
    format!(
        "DKIM: mail from {domain} is signed with {} ({kind}); its public key must be in DNS \
         at {selector}._domainkey.{domain}.",
        k.path.display()
    )
}

#[cfg(test)]
mod tests {
    use std::fs;

    use hato_core::config::Overrides;

    use super::*;

    fn setup(name: &str, extra: &str) -> (PathBuf, Config) {
        let dir = std::env::temp_dir().join(format!("hato-dkim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let text = format!(
            "hostname = \"mail.example.org\"\ndata_dir = \"{}\"\n{extra}",
            dir.display()
        );
        let cfg = Config::load(Some(&text), &Overrides::default()).unwrap();
        (dir, cfg)
    }

    #[test]
    fn keys_under_the_data_dir_are_found_without_configuration() {
        let (dir, cfg) = setup("zero", "");
        assert!(load_signing_keys(&cfg).unwrap().is_empty());
        keygen(&dir, "example.org", "hato", Algorithm::Ed25519Sha256, 0).unwrap();
        let keys = load_signing_keys(&cfg).unwrap();
        let domains: Vec<&str> = keys.domains().map(|(d, _)| d).collect();
        assert_eq!(domains, ["example.org"]);
        let mut signer = keys.signer_for("EXAMPLE.org.", UnixTime(1)).unwrap();
        assert!(keys.signer_for("mail.example.org", UnixTime(1)).is_none());
        assert!(keys.signer_for("other.example", UnixTime(1)).is_none());
        signer.feed(b"From: a@example.org\r\n\r\nhi\r\n");
        let field = signer.finish().unwrap();
        assert!(field.contains("d=example.org;"), "{field}");
        assert!(field.contains("s=hato;"), "{field}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn disabled_signing_loads_nothing() {
        let (dir, cfg) = setup("off", "[dkim]\nenabled = false\n");
        keygen(&dir, "example.org", "hato", Algorithm::Ed25519Sha256, 0).unwrap();
        assert!(load_signing_keys(&cfg).unwrap().is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_key_files_stop_the_start_with_the_reason() {
        let (dir, cfg) = setup(
            "bad",
            "[dkim.keys]\n\"example.org\" = \"/nonexistent/k.pem\"\n",
        );
        assert!(matches!(
            load_signing_keys(&cfg),
            Err(KeyLoadError::Missing { domain, .. }) if domain == "example.org"
        ));
        let (dir2, cfg) = setup("bad2", "");
        let g = keygen(&dir2, "example.org", "hato", Algorithm::Ed25519Sha256, 0).unwrap();
        fs::set_permissions(&g.path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_signing_keys(&cfg).unwrap_err();
        assert!(matches!(e, KeyLoadError::Unsafe { .. }));
        assert!(e.to_string().contains("chmod 600"));
        fs::write(&g.path, "junk").unwrap();
        fs::set_permissions(&g.path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_signing_keys(&cfg),
            Err(KeyLoadError::Format { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&dir2);
    }
}
