//! The server's TLS certificate on disk (RFC 3207, RFC 8314): the PEM
//! files `tls.certificate` and `tls.key` name, or, when neither is set, a
//! self-signed certificate for the host name that `hato serve` generates
//! into `data_dir/tls/` on first start (and logs that it did), so that
//! STARTTLS works out of the box. The core gets the bytes; only this file
//! reads them.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    let read = |p: &Path| {
        fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
    let config = server_config(&cert_pem, &key_pem, Arc::new(SystemClock)).map_err(|e| {
        io::Error::other(format!(
            "TLS certificate {} / key {}: {e}",
            cert.display(),
            key.display()
        ))
    })?;
    Line::new("tls-certificate")
        .kv("certificate", cert.display())
        .kv("key", key.display())
        .emit();
    Ok(config)
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
        cfg.tls.key = Some(dir.path().join("missing.pem"));
        let e = server_tls(&cfg).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
