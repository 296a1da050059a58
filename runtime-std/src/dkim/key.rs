//! DKIM private keys as files: PKCS#8 (RFC 5958) in PEM (RFC 7468
//! §10, "PRIVATE KEY"), RSA or Ed25519 (RFC 8410 §7), and the signing
//! operation behind [`SigningKey`], done with ring. ring's RSA signing
//! blinds with random numbers from the operating system: that is why the
//! key lives here, in the front end, and not in the sans-IO core.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hato_core::message::dkim::{Algorithm, KeyError, SigningKey};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a key file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFormatError {
    /// No `-----BEGIN PRIVATE KEY-----` block, or bad base64 inside.
    NotPem,
    /// A PEM block of another kind, e.g. `RSA PRIVATE KEY` (PKCS#1).
    OtherPem(String),
    /// PKCS#8, but neither an RSA key of 2048 to 4096 bits nor an Ed25519
    /// key; the library's words.
    Unsupported(String),
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPem => write!(
                f,
                "not a PEM file with a \"{PEM_BEGIN}\" block (PKCS#8, as `hato dkim keygen` writes)"
            ),
            Self::OtherPem(label) => write!(
                f,
                "holds a \"{label}\" block; convert it to PKCS#8 with \
                 `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`"
            ),
            Self::Unsupported(why) => write!(
                f,
                "is neither an RSA key of 2048 to 4096 bits nor an Ed25519 key ({why})"
            ),
        }
    }
}

/// A private key loaded for signing, with the public half for DNS.
pub struct DkimKey {
    inner: Inner,
    /// The `p=` value of the DNS record (RFC 6376 §3.6.1): base64 of the
    /// SubjectPublicKeyInfo for RSA, of the 32 raw octets for Ed25519
    /// (RFC 8463 §4).
    public_b64: String,
}

enum Inner {
    Rsa(RsaKeyPair, SystemRandom),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm())
            .field("public", &self.public_b64)
            .finish()
    }
}

impl DkimKey {
    /// Reads a PKCS#8 PEM key.
    ///
    /// # Errors
    /// See [`KeyFormatError`].
    pub fn from_pem(text: &str) -> Result<Self, KeyFormatError> {
        Self::from_pkcs8_der(&pem_decode(text)?)
    }

    /// Reads a PKCS#8 DER key: Ed25519 first (v1 or v2, as OpenSSL or ring
    /// write them), then RSA.
    ///
    /// # Errors
    /// [`KeyFormatError::Unsupported`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyFormatError> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let public_b64 = BASE64.encode(pair.public_key().as_ref());
            return Ok(Self {
                inner: Inner::Ed25519(pair),
                public_b64,
            });
        }
        let pair =
            RsaKeyPair::from_pkcs8(der).map_err(|e| KeyFormatError::Unsupported(e.to_string()))?;
        let spki = rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|e| KeyFormatError::Unsupported(e.to_string()))?
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyFormatError::Unsupported(e.to_string()))?;
        Ok(Self {
            inner: Inner::Rsa(pair, SystemRandom::new()),
            public_b64: BASE64.encode(spki.as_bytes()),
        })
    }

    /// Returns the `p=` value of the DNS record.
    pub fn public_b64(&self) -> &str {
        &self.public_b64
    }

    /// Returns the size of an RSA key in bits (None for Ed25519).
    pub fn rsa_bits(&self) -> Option<usize> {
        match &self.inner {
            Inner::Rsa(pair, _) => Some(pair.public().modulus_len() * 8),
            Inner::Ed25519(_) => None,
        }
    }
}

impl SigningKey for DkimKey {
    fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(..) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Rsa(pair, rng) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, rng, data, &mut out)
                    .map_err(|e| KeyError(format!("RSA signing failed: {e}")))?;
                Ok(out)
            }
            Inner::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }
}

/// Returns the DER inside the first `PRIVATE KEY` PEM block of `text`.
///
/// # Errors
/// [`KeyFormatError::NotPem`] or [`KeyFormatError::OtherPem`].
pub fn pem_decode(text: &str) -> Result<Vec<u8>, KeyFormatError> {
    let Some(start) = text.find(PEM_BEGIN) else {
        let other = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
            .and_then(|l| l.strip_suffix("-----"));
        return Err(match other {
            Some(label) => KeyFormatError::OtherPem(label.to_owned()),
            None => KeyFormatError::NotPem,
        });
    };
    let body = &text[start + PEM_BEGIN.len()..];
    let end = body.find(PEM_END).ok_or(KeyFormatError::NotPem)?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    BASE64.decode(b64).map_err(|_| KeyFormatError::NotPem)
}

/// Returns `der` as a `PRIVATE KEY` PEM block, 64 characters a line.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256};

    #[test]
    fn generated_ed25519_keys_round_trip_through_pem_and_sign() {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pem = pem_encode(der.as_ref());
        assert!(pem.lines().all(|l| l.len() <= 64));
        let key = DkimKey::from_pem(&pem).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519Sha256);
        let sig = key.sign(b"data").unwrap();
        let public = BASE64.decode(key.public_b64()).unwrap();
        assert_eq!(public.len(), 32);
        UnparsedPublicKey::new(&ED25519, public)
            .verify(b"data", &sig)
            .unwrap();
    }

    #[test]
    fn rsa_keys_from_the_rsa_crate_load_into_ring_and_sign() {
        use rsa::pkcs8::EncodePrivateKey as _;
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let der = private.to_pkcs8_der().unwrap();
        let key = DkimKey::from_pem(&pem_encode(der.as_bytes())).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RsaSha256);
        assert_eq!(key.rsa_bits(), Some(2048));
        let sig = key.sign(b"data").unwrap();
        // p= is a SubjectPublicKeyInfo; ring verifies with the RSAPublicKey
        // inside it, which ends the structure (after a 0 "unused bits" octet).
        let spki = BASE64.decode(key.public_b64()).unwrap();
        let Inner::Rsa(pair, _) = &key.inner else {
            panic!()
        };
        let rsa_public = pair.public().as_ref();
        assert!(spki.ends_with(rsa_public));
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_public)
            .verify(b"data", &sig)
            .unwrap();
    }

    #[test]
    fn other_files_are_refused_with_a_hint() {
        assert_eq!(
            DkimKey::from_pem("hello").err(),
            Some(KeyFormatError::NotPem)
        );
        assert_eq!(
            DkimKey::from_pem(
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            )
            .err(),
            Some(KeyFormatError::OtherPem("RSA PRIVATE KEY".into()))
        );
        let junk = pem_encode(b"not a key");
        assert!(matches!(
            DkimKey::from_pem(&junk),
            Err(KeyFormatError::Unsupported(_))
        ));
        assert!(KeyFormatError::OtherPem("RSA PRIVATE KEY".into())
            .to_string()
            .contains("openssl pkcs8 -topk8"));
    }
}
