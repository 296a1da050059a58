//! The server's TLS certificate on disk (RFC 3207, RFC 8314): the PEM
//! files `tls.certificate` and `tls.key` name, or, when neither is set, a
//! self-signed certificate for the host name that `hato serve` generates
//! into `data_dir/tls/` (and logs that it did), so that STARTTLS works out
//! of the box. The core gets the bytes; only this file reads them.
//!
//! [`ServerTls`] loads the certificate (or generates it) when the first
//! connection needs it, not at start: an idle server has not touched the
//! TLS and certificate code, which keeps its resident memory small (issue
//! 5's idle RSS target). At start it only checks that configured files can
//! be opened, so a wrong path still stops the start.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hato_core::config::Config;
use hato_core::tls::{server_config, ServerConfig, TimeProvider, TlsTime};

use crate::log::Line;

/// The file name of the generated certificate in `data_dir/tls/`.
pub const GENERATED_CERT: &str = "cert.pem";
/// The file name of the generated key in `data_dir/tls/` (mode 0600).
pub const GENERATED_KEY: &str = "key.pem";

/// The system clock, for rustls (certificate and ticket validity).
#[derive(Debug)]
pub struct SystemClock;

impl TimeProvider for SystemClock {
    fn current_time(&self) -> Option<TlsTime> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(TlsTime::since_unix_epoch)
    }
}

/// The server's TLS configuration, made on first use (see the module docs).
#[derive(Debug)]
pub struct ServerTls {
    cfg: Arc<Config>,
    /// `None` once loading failed (logged): no STARTTLS until a restart.
    loaded: OnceLock<Option<Arc<ServerConfig>>>,
}

impl ServerTls {
    /// Checks that the configured certificate and key files can be opened;
    /// loading them waits for [`ServerTls::get`].
    ///
    /// # Errors
    /// A configured file cannot be opened; the message names it.
    pub fn new(cfg: Arc<Config>) -> io::Result<Self> {
        for path in [&cfg.tls.certificate, &cfg.tls.key].into_iter().flatten() {
            fs::File::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        Ok(Self {
            cfg,
            loaded: OnceLock::new(),
        })
    }

    /// Whether [`ServerTls::get`] would answer without loading anything
    /// (it has been called before).
    pub fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }

    /// Returns the configuration, loading (or generating) the certificate
    /// at the first call. `None` when that failed: the failure is logged
    /// once (`event=error what=tls`) and the server goes on without TLS.
    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        self.loaded
            .get_or_init(|| match server_tls(&self.cfg) {
                Ok(config) => Some(config),
                Err(e) => {
                    Line::new("error")
                        .kv("what", "tls")
                        .kv("error", e)
                        .kv(
                            "effect",
                            "no STARTTLS and no implicit TLS until hato is restarted",
                        )
                        .emit();
                    None
                }
            })
            .clone()
    }
}

/// Loads the configured certificate, or the generated one (generating it
/// first when missing), into a rustls server configuration.
///
/// # Errors
/// A file cannot be read or written, or the certificate and key do not
/// make a usable pair; the message names the file.
pub fn server_tls(cfg: &Config) -> io::Result<Arc<ServerConfig>> {
    let (cert, key) = match (&cfg.tls.certificate, &cfg.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => generated(cfg)?,
    };
    let config = load_pair(&cert, &key)?;
    Line::new("tls-certificate")
        .kv("certificate", cert.display())
        .kv("key", key.display())
        .emit();
    Ok(config)
}

/// Checks the configured certificate and key the way the server will use
/// them (for `hato check-config`, since `serve` loads them only when the
/// first connection needs TLS). Returns what it checked, or `None` when
/// none is configured (the generated one is used).
///
/// # Errors
/// As [`server_tls`].
pub fn check_configured(cfg: &Config) -> io::Result<Option<String>> {
    let (Some(cert), Some(key)) = (&cfg.tls.certificate, &cfg.tls.key) else {
        return Ok(None);
    };
    load_pair(cert, key)?;
    Ok(Some(format!(
        "TLS certificate {} with key {}: usable",
        cert.display(),
        key.display()
    )))
}

/// Reads a certificate and key pair into a rustls server configuration.
fn load_pair(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let read = |p: &Path| {
        fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    server_config(&cert_pem, &key_pem, Arc::new(SystemClock)).map_err(|e| {
        io::Error::other(format!(
            "TLS certificate {} / key {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// Returns the generated pair's paths, generating it when missing.
fn generated(cfg: &Config) -> io::Result<(PathBuf, PathBuf)> {
    let dir = cfg.data_dir.join("tls");
    let (cert, key) = (dir.join(GENERATED_CERT), dir.join(GENERATED_KEY));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    fs::create_dir_all(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let (cert_pem, key_pem) = self_signed(&cfg.hostname)?;
    write_new(&key, key_pem.as_bytes(), 0o600)?;
    write_new(&cert, cert_pem.as_bytes(), 0o644)?;
    Line::new("tls-generated")
        .kv("hostname", &cfg.hostname)
        .kv("certificate", cert.display())
        .kv("key", key.display())
        .kv(
            "note",
            "self-signed; set tls.certificate and tls.key for a certificate clients trust",
        )
        .emit();
    Ok((cert, key))
}

/// Generates a self-signed certificate for `hostname` (ECDSA P-256).
fn self_signed(hostname: &str) -> io::Result<(String, String)> {
    let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
    let params =
        rcgen::CertificateParams::new(vec![hostname.to_owned()]).map_err(io::Error::other)?;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `bytes` to `path` through a temporary file, fsynced and renamed.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(named)?;
    f.write_all(bytes).map_err(named)?;
    f.sync_all().map_err(named)?;
    fs::rename(&tmp, path).map_err(named)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::store::testdir::TestDir;

    #[test]
    fn a_certificate_is_generated_once_and_reused() {
        let dir = TestDir::new("tls-gen");
        let mut cfg = Config::defaults("mail.example.test");
        cfg.data_dir = dir.path().to_path_buf();
        server_tls(&cfg).unwrap();
        let cert = dir.path().join("tls").join(GENERATED_CERT);
        let key = dir.path().join("tls").join(GENERATED_KEY);
        let first = fs::read(&cert).unwrap();
        assert!(first.starts_with(b"-----BEGIN CERTIFICATE-----"));
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        server_tls(&cfg).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first, "reused, not regenerated");
        assert_eq!(check_configured(&cfg).unwrap(), None, "none configured");
        cfg.tls.certificate = Some(cert);
        cfg.tls.key = Some(key);
        let ok = check_configured(&cfg).unwrap().unwrap();
        assert!(ok.ends_with("usable"), "{ok}");
    }

    #[test]
    fn configured_files_that_do_not_match_are_refused_by_name() {
        let dir = TestDir::new("tls-bad");
        let (cert, _) = self_signed("a.example").unwrap();
        let (_, other_key) = self_signed("b.example").unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        fs::write(&c, cert).unwrap();
        fs::write(&k, other_key).unwrap();
        let mut cfg = Config::defaults("mail.example.test");
        cfg.tls.certificate = Some(c);
        cfg.tls.key = Some(k.clone());
        let e = server_tls(&cfg).unwrap_err().to_string();
        assert!(e.contains("k.pem"), "{e}");
        let e = check_configured(&cfg).unwrap_err().to_string();
        assert!(e.contains("k.pem"), "check-config says it too: {e}");
        cfg.tls.key = Some(dir.path().join("missing.pem"));
        let e = server_tls(&cfg).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }

    #[test]
    fn the_certificate_is_made_at_first_use_not_at_start() {
        let dir = TestDir::new("tls-lazy");
        let mut cfg = Config::defaults("mail.example.test");
        cfg.data_dir = dir.path().to_path_buf();
        let tls = ServerTls::new(Arc::new(cfg)).unwrap();
        let cert = dir.path().join("tls").join(GENERATED_CERT);
        assert!(
            !cert.exists(),
            "nothing generated before a connection needs it"
        );
        let first = tls.get().unwrap();
        assert!(cert.is_file());
        assert!(Arc::ptr_eq(&first, &tls.get().unwrap()), "made once");
    }

    #[test]
    fn a_missing_configured_file_stops_the_start_and_a_bad_one_only_tls() {
        let dir = TestDir::new("tls-lazy-bad");
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let mut cfg = Config::defaults("mail.example.test");
        cfg.tls.certificate = Some(c.clone());
        cfg.tls.key = Some(k.clone());
        let e = ServerTls::new(Arc::new(cfg.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.pem"), "{e}");
        fs::write(&c, "not a certificate").unwrap();
        fs::write(&k, "not a key").unwrap();
        let tls = ServerTls::new(Arc::new(cfg.clone())).unwrap();
        assert!(tls.get().is_none(), "unusable files: no TLS, logged");
        // The administrator fixes the files: a retry would load them now.
        let mut good = cfg.clone();
        good.data_dir = dir.path().join("good");
        good.tls.certificate = None;
        good.tls.key = None;
        fs::create_dir_all(&good.data_dir).unwrap();
        assert!(server_tls(&good).is_ok());
        let made = good.data_dir.join("tls");
        fs::copy(made.join(GENERATED_CERT), &c).unwrap();
        fs::copy(made.join(GENERATED_KEY), &k).unwrap();
        assert!(tls.get().is_none(), "and not retried per connection");
        assert!(
            ServerTls::new(Arc::new(cfg)).unwrap().get().is_some(),
            "(the fixed files do load)"
        );
    }
}
