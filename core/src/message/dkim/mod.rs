//! DKIM signing of outgoing mail (RFC 6376): relaxed/relaxed
//! canonicalization (§3.4.2, §3.4.4), the body hash and the
//! DKIM-Signature header field (§3.5, §3.7), with `rsa-sha256` (§3.3.1,
//! RFC 8301) or `ed25519-sha256` (RFC 8463).
//!
//! The signer streams: it is fed the message as it is read from the
//! spool, in chunks split anywhere, and keeps only the header section
//! (at most [`MAX_HEADER_BYTES`]) and a running SHA-256 of the body.
//!
//! ```
//! # use std::sync::Arc;
//! # use hato_core::message::dkim::{Algorithm, DkimSigner, KeyError, SigningKey};
//! # use hato_core::time::UnixTime;
//! # #[derive(Debug)] struct Fake;
//! # impl SigningKey for Fake {
//! #     fn algorithm(&self) -> Algorithm { Algorithm::Ed25519Sha256 }
//! #     fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyError> { Ok(vec![0; 64]) }
//! # }
//! # let key: Arc<dyn SigningKey> = Arc::new(Fake);
//! let mut signer = DkimSigner::new(key, "example.org", "hato", UnixTime(1_800_000_000))?;
//! signer.feed(b"From: alice@example.org\r\nSubject: hi\r\n\r\nHel");
//! signer.feed(b"lo.\r\n");
//! let field: String = signer.finish()?; // "DKIM-Signature: v=1; ...\r\n"
//! assert!(field.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
//! // Send `field`, then the message unchanged.
//! # Ok::<(), hato_core::message::dkim::DkimError>(())
//! ```
//!
//! The private-key operation is behind [`SigningKey`], which the front
//! end implements: RSA signing wants random numbers for blinding, and the
//! core draws none (DESIGN.md §1).

mod canon;
mod from;
mod headers;
mod sign;

use std::fmt;

pub use from::from_domain;
pub use headers::{DEFAULT_HEADERS, MAX_HEADER_BYTES, OVERSIGNED};
pub use sign::DkimSigner;

/// A DKIM signing algorithm (the `a=` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `rsa-sha256`: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 §3.3.1).
    RsaSha256,
    /// `ed25519-sha256`: Ed25519 over the SHA-256 hash (RFC 8463 §3).
    Ed25519Sha256,
}

impl Algorithm {
    /// Returns the `a=` value, e.g. `rsa-sha256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaSha256 => "rsa-sha256",
            Self::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// Returns the key type of the DNS record's `k=` tag (RFC 6376 §3.6.1,
    /// RFC 8463 §4): `rsa` or `ed25519`.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::RsaSha256 => "rsa",
            Self::Ed25519Sha256 => "ed25519",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private key that signs: the one operation the core leaves to the
/// front end.
pub trait SigningKey: Send + Sync + fmt::Debug {
    /// Returns the algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;

    /// Returns the raw signature of `data`:
    /// - for [`Algorithm::RsaSha256`], RSASSA-PKCS1-v1_5 with SHA-256 over
    ///   `data` (RFC 8017 §8.2; the key hashes `data` itself);
    /// - for [`Algorithm::Ed25519Sha256`], PureEdDSA Ed25519 over `data`
    ///   (RFC 8032 §5.1.6); the signer passes the SHA-256 hash there, as
    ///   RFC 8463 §3 asks.
    ///
    /// # Errors
    /// The key could not sign (a failure of the crypto library).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// A key that failed to sign, with the library's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a message was not signed. The message can still be sent unsigned;
/// the front end logs the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DkimError {
    /// The signing domain (`d=`) is not a domain name.
    BadDomain(String),
    /// The selector (`s=`) is not a sequence of DNS labels.
    BadSelector(String),
    /// The message has no From field, which a signature must cover
    /// (RFC 6376 §5.4).
    NoFrom,
    /// The header section is larger than [`MAX_HEADER_BYTES`].
    HeaderTooLarge,
    /// The key could not sign.
    Key(KeyError),
}

impl fmt::Display for DkimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDomain(d) => write!(f, "\"{d}\" is not a valid DKIM signing domain"),
            Self::BadSelector(s) => write!(f, "\"{s}\" is not a valid DKIM selector"),
            Self::NoFrom => f.write_str("the message has no From header field to sign"),
            Self::HeaderTooLarge => write!(
                f,
                "the header section is larger than {MAX_HEADER_BYTES} bytes"
            ),
            Self::Key(e) => write!(f, "the DKIM key could not sign: {e}"),
        }
    }
}

impl std::error::Error for DkimError {}

/// Tells whether `name` is a sequence of DNS labels of letters, digits
/// and hyphens (RFC 6376 §3.1 selectors, §3.5 `d=`; IDNs in A-label form).
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests;
