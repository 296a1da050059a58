//! `hato dkim keygen`: makes a key, writes it as PKCS#8 PEM to
//! `data_dir/dkim/<domain>.<selector>.key` (mode 0600, never over an
//! existing file), and gives the DNS TXT record to publish (RFC 6376
//! §3.6.1, RFC 8463 §4), cut into strings of at most 255 octets
//! (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 joins them).

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hato_core::config::Dkim;
use hato_core::message::dkim::{is_dns_name, Algorithm, SigningKey as _};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use rsa::pkcs8::EncodePrivateKey as _;

use super::domain_key;
use super::key::{pem_encode, DkimKey};

/// The RSA key sizes ring signs with; 2048 is what RFC 8301 §3.2 asks
/// signers for at least.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Why no key was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeygenError {
    /// Not a domain name.
    BadDomain(String),
    /// Not a selector.
    BadSelector(String),
    /// An RSA size outside [`RSA_BITS`].
    BadBits(usize),
    /// The key file exists: it is never replaced, since its public key
    /// may be published.
    Exists(PathBuf),
    /// The directory or file could not be written.
    Io(PathBuf, String),
    /// The crypto library failed.
    Generate(String),
}

impl fmt::Display for KeygenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDomain(d) => write!(f, "\"{d}\" is not a domain name"),
            Self::BadSelector(s) => write!(
                f,
                "\"{s}\" is not a selector; use letters, digits, hyphens and dots, e.g. hato or 2026-05"
            ),
            Self::BadBits(b) => write!(
                f,
                "{b} bits: RSA keys must have {} to {} bits (2048 is the usual choice)",
                RSA_BITS.start(),
                RSA_BITS.end()
            ),
            Self::Exists(p) => write!(
                f,
                "{} exists; hato never replaces a key (its public half may be in DNS). To \
                 change keys, make one with a new --selector, publish it, then switch \
                 dkim.selector",
                p.display()
            ),
            Self::Io(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            Self::Generate(e) => write!(f, "key generation failed: {e}"),
        }
    }
}

/// A key written by [`keygen`].
#[derive(Debug)]
pub struct Generated {
    /// Where the private key is.
    pub path: PathBuf,
    /// The key, loaded back from what was written.
    pub key: DkimKey,
}

/// Makes a key for `domain` and `selector` and writes it under `data_dir`.
///
/// # Errors
/// See [`KeygenError`].
pub fn keygen(
    data_dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    bits: usize,
) -> Result<Generated, KeygenError> {
    let domain = domain_key(domain);
    if !is_dns_name(&domain) {
        return Err(KeygenError::BadDomain(domain));
    }
    let selector = selector.to_ascii_lowercase();
    if !is_dns_name(&selector) {
        return Err(KeygenError::BadSelector(selector));
    }
    let path = Dkim::default_key_file(data_dir, &domain, &selector);
    if path.exists() {
        return Err(KeygenError::Exists(path));
    }
    let der = match algorithm {
        Algorithm::RsaSha256 => {
            if !RSA_BITS.contains(&bits) {
                return Err(KeygenError::BadBits(bits));
            }
            let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
                .map_err(|e| KeygenError::Generate(e.to_string()))?;
            let doc = private
                .to_pkcs8_der()
                .map_err(|e| KeygenError::Generate(e.to_string()))?;
            doc.as_bytes().to_vec()
        }
        Algorithm::Ed25519Sha256 => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeygenError::Generate(e.to_string()))?
            .as_ref()
            .to_vec(),
    };
    // Read back what will be written: the key must load as it will at
    // `serve` time.
    let key = DkimKey::from_pkcs8_der(&der).map_err(|e| KeygenError::Generate(e.to_string()))?;
    write_new(&path, pem_encode(&der).as_bytes())?;
    Ok(Generated { path, key })
}

/// Writes `bytes` to a new file of mode 0600 in a directory of mode
/// 0700, fsyncs both; a half-written file is removed.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeygenError> {
    let io = |p: &Path, e: std::io::Error| KeygenError::Io(p.to_owned(), e.to_string());
    let dir = path.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, e))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeygenError::Exists(path.to_owned()),
            _ => io(path, e),
        })?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(io(path, e));
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Returns the TXT record's text: `v=DKIM1; k=rsa; p=...`.
pub fn record_value(key: &DkimKey) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm().key_type(),
        key.public_b64()
    )
}

/// Returns the record as a zone-file line:
/// `<selector>._domainkey.<domain>. IN TXT "..." "..."`, the text cut
/// into quoted strings of at most 255 octets.
pub fn zone_line(selector: &str, domain: &str, value: &str) -> String {
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        strings.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hato-keygen-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_ed25519_key_is_written_private_and_never_replaced() {
        let dir = tmp("ed");
        let g = keygen(&dir, "Example.ORG.", "hato", Algorithm::Ed25519Sha256, 0).unwrap();
        assert_eq!(g.path, dir.join("dkim/example.org.hato.key"));
        let mode = fs::metadata(&g.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(dir.join("dkim")).unwrap().permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        let again = DkimKey::from_pem(&fs::read_to_string(&g.path).unwrap()).unwrap();
        assert_eq!(again.public_b64(), g.key.public_b64());
        assert_eq!(
            keygen(&dir, "example.org", "hato", Algorithm::Ed25519Sha256, 0).err(),
            Some(KeygenError::Exists(g.path.clone()))
        );
        let value = record_value(&g.key);
        assert!(value.starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(
            zone_line("hato", "example.org", &value),
            format!("hato._domainkey.example.org. IN TXT \"{value}\"")
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn long_records_are_cut_into_255_octet_strings() {
        let value = "v=DKIM1; k=rsa; p=".to_owned() + &"A".repeat(600);
        let line = zone_line("s", "example.org", &value);
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 3);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), value);
    }

    #[test]
    fn bad_requests_are_refused_before_any_work() {
        let dir = tmp("bad");
        assert_eq!(
            keygen(&dir, "a b", "hato", Algorithm::RsaSha256, 2048).err(),
            Some(KeygenError::BadDomain("a b".into()))
        );
        assert_eq!(
            keygen(&dir, "example.org", "../x", Algorithm::RsaSha256, 2048).err(),
            Some(KeygenError::BadSelector("../x".into()))
        );
        assert_eq!(
            keygen(&dir, "example.org", "hato", Algorithm::RsaSha256, 1024).err(),
            Some(KeygenError::BadBits(1024))
        );
        assert!(!dir.exists());
    }
}
