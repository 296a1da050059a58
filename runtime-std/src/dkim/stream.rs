//! Signing a message read from a file or any reader, in chunks: the one
//! call remote delivery needs. The signing domain is the From address's
//! domain when it has a key (so the signature aligns with what the
//! reader sees, as DMARC wants, RFC 7489 §3.1), else the envelope
//! sender's domain when that has one.

use std::io::{self, Read};

use hato_core::message::dkim::{from_domain, DkimError, MAX_HEADER_BYTES};
use hato_core::time::UnixTime;

use super::DkimKeys;

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// What [`DkimKeys::sign_message`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Send `field` (a DKIM-Signature header field ending in CRLF), then
    /// the message.
    Field {
        /// The signing domain (`d=`).
        domain: String,
        /// The header field.
        field: String,
    },
    /// No domain of the message has a key: send it as it is.
    NoKey,
    /// The domain has a key, but the message cannot be signed: send it as
    /// it is, and log it ([`super::log_unsigned`]).
    Failed {
        /// The domain whose key was to sign.
        domain: String,
        /// Why.
        error: DkimError,
    },
}

impl DkimKeys {
    /// Reads the message from `message` (header section, empty line, body;
    /// CRLF line ends, not dot-stuffed) to its end and signs it for the
    /// domain of its From address, or else for `sender_domain` (the
    /// envelope sender's), whichever first has a key. Reads only the
    /// header section when neither has one.
    ///
    /// # Errors
    /// Only reading errors; signing failures are [`Signed::Failed`].
    pub fn sign_message(
        &self,
        sender_domain: Option<&str>,
        now: UnixTime,
        message: &mut impl Read,
    ) -> io::Result<Signed> {
        let mut buf = vec![0; CHUNK];
        let mut head = Vec::new();
        let header_end = loop {
            let n = read_some(message, &mut buf)?;
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = header_end(&head) {
                break end;
            }
            if n == 0 || head.len() > MAX_HEADER_BYTES {
                break head.len();
            }
        };
        let from = from_domain(&head[..header_end]);
        let Some((domain, mut signer)) = [from.as_deref(), sender_domain]
            .into_iter()
            .flatten()
            .find_map(|d| self.signer_for(d, now).map(|s| (d.to_ascii_lowercase(), s)))
        else {
            return Ok(Signed::NoKey);
        };
        signer.feed(&head);
        loop {
            let n = read_some(message, &mut buf)?;
            if n == 0 {
                break;
            }
            signer.feed(&buf[..n]);
        }
        Ok(match signer.finish() {
            Ok(field) => Signed::Field { domain, field },
            Err(error) => Signed::Failed { domain, error },
        })
    }
}

/// Where the header section ends: after the empty line.
fn header_end(head: &[u8]) -> Option<usize> {
    if head.starts_with(b"\r\n") {
        return Some(2);
    }
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use hato_core::config::{Config, Overrides};
    use hato_core::message::dkim::Algorithm;

    use super::*;
    use crate::dkim::{keygen, load_signing_keys};

    fn keys(name: &str) -> (PathBuf, DkimKeys) {
        let dir =
            std::env::temp_dir().join(format!("hato-dkim-stream-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        keygen(&dir, "example.org", "hato", Algorithm::Ed25519Sha256, 0).unwrap();
        let text = format!(
            "hostname = \"mail.example.org\"\ndata_dir = \"{}\"\n",
            dir.display()
        );
        let cfg = Config::load(Some(&text), &Overrides::default()).unwrap();
        (dir.clone(), load_signing_keys(&cfg).unwrap())
    }

    fn domain_of(s: &Signed) -> Option<&str> {
        match s {
            Signed::Field { domain, field } => {
                assert!(field.contains(&format!("d={domain};")), "{field}");
                Some(domain)
            }
            _ => None,
        }
    }

    #[test]
    fn the_from_domain_signs_else_the_envelope_domain() {
        let (dir, keys) = keys("choice");
        let now = UnixTime(1_800_000_000);
        let mut body = b"From: A <a@Example.org>\r\nSubject: x\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'y', 300_000));
        let s = keys.sign_message(None, now, &mut &body[..]).unwrap();
        assert_eq!(domain_of(&s), Some("example.org"));
        // A From domain without a key: the envelope sender's domain signs.
        let msg = b"From: a@elsewhere.example\r\n\r\nhi\r\n";
        let s = keys
            .sign_message(Some("example.org"), now, &mut &msg[..])
            .unwrap();
        assert_eq!(domain_of(&s), Some("example.org"));
        let s = keys
            .sign_message(Some("mail.example.org"), now, &mut &msg[..])
            .unwrap();
        assert_eq!(s, Signed::NoKey);
        // A key but no From field: sent unsigned, with the reason.
        let msg = b"Subject: x\r\n\r\nhi\r\n";
        let s = keys
            .sign_message(Some("example.org"), now, &mut &msg[..])
            .unwrap();
        assert_eq!(
            s,
            Signed::Failed {
                domain: "example.org".into(),
                error: DkimError::NoFrom
            }
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn reading_in_chunks_gives_the_same_signature() {
        let (dir, keys) = keys("chunks");
        let now = UnixTime(1_800_000_000);
        let mut msg = b"From: a@example.org\r\nX: ".to_vec();
        msg.extend(std::iter::repeat_n(b'h', 100_000));
        msg.extend_from_slice(b"\r\n\r\n");
        msg.extend(std::iter::repeat_n(b'b', 200_000));
        let whole = keys.sign_message(None, now, &mut &msg[..]).unwrap();
        // A reader that hands out 1000 bytes at a time.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1000).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let slow = keys.sign_message(None, now, &mut Slow(&msg)).unwrap();
        assert_eq!(whole, slow);
        assert!(domain_of(&whole).is_some());
        let _ = fs::remove_dir_all(&dir);
    }
}
