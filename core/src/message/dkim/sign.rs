//! [`DkimSigner`]: the streaming signer. It hashes the body as it passes
//! (RFC 6376 §3.7, the body hash), keeps the header section, and at the
//! end writes the DKIM-Signature field (§3.5): the chosen header fields
//! and the new field with an empty `b=` are hashed and signed, and the
//! signature is put into `b=`.

use std::fmt::Write as _;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::canon::{relaxed_header, RelaxedBody};
use super::headers::{select, HeaderSection, DEFAULT_HEADERS};
use super::{is_dns_name, Algorithm, DkimError, SigningKey};
use crate::time::UnixTime;

/// Lines of the DKIM-Signature field are folded near this length.
const LINE: usize = 78;

/// Signs one message, fed in chunks; see the [module docs](super).
#[derive(Debug)]
pub struct DkimSigner {
    key: Arc<dyn SigningKey>,
    domain: String,
    selector: String,
    now: UnixTime,
    headers: HeaderSection,
    body: RelaxedBody,
    body_hash: Sha256,
}

impl DkimSigner {
    /// Starts a signature by `key` for `domain` (`d=`), whose public key
    /// is published under `selector` (`s=`), stamped `now` (`t=`).
    ///
    /// # Errors
    /// [`DkimError::BadDomain`] or [`DkimError::BadSelector`] when one is
    /// not a DNS name.
    pub fn new(
        key: Arc<dyn SigningKey>,
        domain: &str,
        selector: &str,
        now: UnixTime,
    ) -> Result<Self, DkimError> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if !is_dns_name(domain) {
            return Err(DkimError::BadDomain(domain.to_owned()));
        }
        if !is_dns_name(selector) {
            return Err(DkimError::BadSelector(selector.to_owned()));
        }
        Ok(Self {
            key,
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_ascii_lowercase(),
            now,
            headers: HeaderSection::default(),
            body: RelaxedBody::default(),
            body_hash: Sha256::new(),
        })
    }

    /// Takes the next bytes of the message as it will be sent: header
    /// section, empty line, body, with CRLF line ends (not dot-stuffed).
    pub fn feed(&mut self, chunk: &[u8]) {
        let used = self.headers.feed(chunk);
        let rest = &chunk[used..];
        if !rest.is_empty() {
            let hash = &mut self.body_hash;
            self.body.feed(rest, &mut |b: &[u8]| hash.update(b));
        }
    }

    /// Returns the DKIM-Signature header field, folded, ending in CRLF,
    /// to be put before the message's first line.
    ///
    /// # Errors
    /// The message has no From field, its header section is too large, or
    /// the key failed; see [`DkimError`].
    pub fn finish(self) -> Result<String, DkimError> {
        if self.headers.too_large() {
            return Err(DkimError::HeaderTooLarge);
        }
        let Self {
            key,
            domain,
            selector,
            now,
            headers,
            body,
            mut body_hash,
        } = self;
        body.finish(&mut |b: &[u8]| body_hash.update(b));
        let bh = BASE64.encode(body_hash.finalize());

        let fields = headers.fields();
        let (h, chosen) = select(&fields, &DEFAULT_HEADERS);
        if !chosen.iter().any(|f| is_from(f)) {
            return Err(DkimError::NoFrom);
        }
        let algorithm = key.algorithm();
        let unsigned = signature_field(algorithm, &domain, &selector, now, &h, &bh);
        let data = signed_data(&chosen, &unsigned);
        let signature = match algorithm {
            Algorithm::RsaSha256 => key.sign(&data),
            Algorithm::Ed25519Sha256 => key.sign(&Sha256::digest(&data)),
        }
        .map_err(DkimError::Key)?;
        Ok(with_signature(unsigned, &BASE64.encode(signature)))
    }
}

fn is_from(field: &[u8]) -> bool {
    super::headers::field_name(field).eq_ignore_ascii_case(b"from")
}

/// The data the signature covers (RFC 6376 §3.7): each chosen field in
/// relaxed form, then the DKIM-Signature field with an empty `b=`,
/// without its final CRLF.
pub(super) fn signed_data(chosen: &[&[u8]], unsigned_field: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(1024);
    for field in chosen {
        relaxed_header(field, true, &mut data);
    }
    relaxed_header(unsigned_field.as_bytes(), false, &mut data);
    data
}

/// The DKIM-Signature field up to and including `b=` (value empty),
/// folded: `h=` at its colons, `bh=` and `b=` on lines of their own.
fn signature_field(
    algorithm: Algorithm,
    domain: &str,
    selector: &str,
    now: UnixTime,
    h: &[&str],
    bh: &str,
) -> String {
    let mut out = String::with_capacity(512);
    let mut line_len = 0;
    let mut put = |out: &mut String, piece: &str, space: bool| {
        let sep = usize::from(space);
        if line_len > 0 && line_len + sep + piece.len() > LINE {
            out.push_str("\r\n\t");
            line_len = 1;
        } else if space {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(piece);
        line_len += piece.len();
    };
    put(&mut out, "DKIM-Signature:", false);
    put(&mut out, "v=1;", true);
    put(&mut out, &format!("a={};", algorithm.name()), true);
    put(&mut out, "c=relaxed/relaxed;", true);
    put(&mut out, &format!("d={domain};"), true);
    put(&mut out, &format!("s={selector};"), true);
    put(&mut out, &format!("t={};", now.0), true);
    for (i, name) in h.iter().enumerate() {
        let piece = match (i == 0, i + 1 == h.len()) {
            (true, true) => format!("h={name};"),
            (true, false) => format!("h={name}:"),
            (false, true) => format!("{name};"),
            (false, false) => format!("{name}:"),
        };
        put(&mut out, &piece, i == 0);
    }
    let _ = write!(out, "\r\n\tbh={bh};\r\n\tb=");
    out
}

/// Appends the base64 signature to `b=`, folded, and the final CRLF.
fn with_signature(mut field: String, b64: &str) -> String {
    // "\tb=" starts the last line.
    let mut line_len = 3;
    for c in b64.chars() {
        if line_len >= LINE {
            field.push_str("\r\n\t");
            line_len = 1;
        }
        field.push(c);
        line_len += 1;
    }
    field.push_str("\r\n");
    field
}
