//! The signer against the example of RFC 8463 Appendix A (its Ed25519
//! key, message and signature) and against its own contract: chunking
//! does not matter, lines stay short, refusals are typed.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use sha2::{Digest as _, Sha256};

use super::sign::signed_data;
use super::*;
use crate::time::UnixTime;

/// RFC 8463 Appendix A.2: the Ed25519 private key (the seed) and the
/// public key of the record `brisbane._domainkey.football.example.com`.
const RFC8463_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC8463_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// RFC 8463 Appendix A.3: the message before signing.
const RFC8463_MESSAGE: &str = "From: Joe SixPack <joe@football.example.com>\r\n\
To: Suzie Q <suzie@shopping.example.net>\r\n\
Subject: Is dinner ready?\r\n\
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n\
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n\
\r\n\
Hi.\r\n\
\r\n\
We lost the game.  Are you hungry yet?\r\n\
\r\n\
Joe.\r\n";

/// RFC 8463 Appendix A.3: its ed25519-sha256 signature field, with `b=`
/// emptied, and the `b=` value.
const RFC8463_UNSIGNED: &str = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n \
d=football.example.com; i=@football.example.com;\r\n \
q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n \
subject : date : message-id : from : subject : date;\r\n \
bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n \
b=";
const RFC8463_B: &str =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
const RFC8463_BH: &str = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";

#[derive(Debug)]
struct Ed25519(Ed25519KeyPair);

impl SigningKey for Ed25519 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519Sha256
    }
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(self.0.sign(data).as_ref().to_vec())
    }
}

fn rfc_key() -> Ed25519KeyPair {
    let seed = BASE64.decode(RFC8463_SEED).unwrap();
    let key = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    assert_eq!(BASE64.encode(key.public_key().as_ref()), RFC8463_PUBLIC);
    key
}

fn rfc_signer(now: u64) -> DkimSigner {
    let key: Arc<dyn SigningKey> = Arc::new(Ed25519(rfc_key()));
    DkimSigner::new(key, "football.example.com", "brisbane", UnixTime(now)).unwrap()
}

fn sign_in_chunks(msg: &[u8], size: usize) -> Result<String, DkimError> {
    let mut s = rfc_signer(1_528_637_909);
    for chunk in msg.chunks(size.max(1)) {
        s.feed(chunk);
    }
    s.finish()
}

/// Returns the value of tag `name` in a DKIM-Signature field, unfolded.
fn tag(field: &str, name: &str) -> String {
    let unfolded: String = field
        .replace("\r\n", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let start = unfolded.split_once(':').unwrap().1;
    start
        .split(';')
        .find_map(|t| t.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {field}"))
        .to_owned()
}

#[test]
fn the_body_hash_of_the_rfc_8463_example_matches() {
    let field = sign_in_chunks(RFC8463_MESSAGE.as_bytes(), 7).unwrap();
    assert_eq!(tag(&field, "bh"), RFC8463_BH);
}

#[test]
fn the_header_hash_reproduces_the_rfc_8463_signature() {
    // The fields its h= names, last instance first; the second from,
    // subject and date have no instance and hash nothing.
    let chosen: Vec<&[u8]> = RFC8463_MESSAGE
        .split("\r\n")
        .take(5)
        .map(str::as_bytes)
        .collect();
    let data = signed_data(&chosen, RFC8463_UNSIGNED);
    let signature = rfc_key().sign(&Sha256::digest(&data));
    assert_eq!(BASE64.encode(signature.as_ref()), RFC8463_B);
}

#[test]
fn our_signature_verifies_over_the_data_it_names() {
    let field = sign_in_chunks(RFC8463_MESSAGE.as_bytes(), 1000).unwrap();
    assert!(field.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
    assert_eq!(tag(&field, "d"), "football.example.com");
    assert_eq!(tag(&field, "s"), "brisbane");
    assert_eq!(tag(&field, "t"), "1528637909");
    assert_eq!(
        tag(&field, "h"),
        "from:from:reply-to:subject:subject:date:date:to:to:cc:message-id"
    );
    // The unsigned form is the field up to "b=".
    let cut = field.find("\r\n\tb=").unwrap() + 5;
    let unsigned = &field[..cut];
    let chosen: Vec<&[u8]> = ["from", "subject", "date", "to", "message-id"]
        .iter()
        .map(|n| {
            RFC8463_MESSAGE
                .split("\r\n")
                .find(|l| l.to_ascii_lowercase().starts_with(&format!("{n}:")))
                .unwrap()
                .as_bytes()
        })
        .collect();
    let data = signed_data(&chosen, unsigned);
    let b = BASE64.decode(tag(&field, "b")).unwrap();
    let public = BASE64.decode(RFC8463_PUBLIC).unwrap();
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&Sha256::digest(&data), &b)
        .unwrap();
}

#[test]
fn chunking_does_not_change_the_signature() {
    let msg = "From: a@example.org\r\nSubject: folded\r\n\tover   lines \r\n\r\n  x  y \r\n\r\n";
    let whole = sign_in_chunks(msg.as_bytes(), msg.len()).unwrap();
    for size in [1, 2, 3, 5, 13] {
        assert_eq!(sign_in_chunks(msg.as_bytes(), size).unwrap(), whole);
    }
}

#[test]
fn the_field_is_folded_into_short_lines_ending_in_crlf() {
    let mut msg = String::new();
    for i in 0..30 {
        msg.push_str(&format!(
            "To: person{i}@example.net\r\nCc: other{i}@example.net\r\n"
        ));
    }
    msg.push_str("From: a@example.org\r\n\r\nbody\r\n");
    let field = sign_in_chunks(msg.as_bytes(), 100).unwrap();
    assert!(field.ends_with("\r\n"));
    let lines: Vec<&str> = field.trim_end_matches("\r\n").split("\r\n").collect();
    assert!(lines.len() > 5);
    for l in &lines {
        assert!(l.len() <= 80, "{l:?}");
    }
    for l in &lines[1..] {
        assert!(l.starts_with('\t'), "{l:?}");
    }
    assert_eq!(tag(&field, "h").matches("to").count(), 32); // one is reply-to
}

#[test]
fn a_message_without_from_is_not_signed() {
    assert_eq!(
        sign_in_chunks(b"Subject: x\r\n\r\nbody\r\n", 4),
        Err(DkimError::NoFrom)
    );
    assert_eq!(sign_in_chunks(b"", 4), Err(DkimError::NoFrom));
    // A From line in the body is no From field.
    assert_eq!(
        sign_in_chunks(b"Subject: x\r\n\r\nFrom: a@b\r\n", 4),
        Err(DkimError::NoFrom)
    );
}

#[test]
fn a_huge_header_section_is_refused() {
    let mut msg = b"From: a@b\r\nX-Long: ".to_vec();
    msg.resize(msg.len() + MAX_HEADER_BYTES, b'x');
    msg.extend_from_slice(b"\r\n\r\nbody\r\n");
    assert_eq!(sign_in_chunks(&msg, 65536), Err(DkimError::HeaderTooLarge));
}

#[test]
fn bad_domains_and_selectors_are_refused() {
    let key: Arc<dyn SigningKey> = Arc::new(Ed25519(rfc_key()));
    let now = UnixTime(0);
    for d in ["", "a..b", "-a.b", "a b", "a;b=c", "ex\u{e9}.org"] {
        assert_eq!(
            DkimSigner::new(key.clone(), d, "s", now).err(),
            Some(DkimError::BadDomain(d.to_owned()))
        );
    }
    assert_eq!(
        DkimSigner::new(key.clone(), "example.org", "s;x", now).err(),
        Some(DkimError::BadSelector("s;x".into()))
    );
    assert!(DkimSigner::new(key, "Example.ORG.", "hato-2026.a", now).is_ok());
}

#[test]
fn a_failing_key_is_reported() {
    #[derive(Debug)]
    struct Broken;
    impl SigningKey for Broken {
        fn algorithm(&self) -> Algorithm {
            Algorithm::RsaSha256
        }
        fn sign(&self, _: &[u8]) -> Result<Vec<u8>, KeyError> {
            Err(KeyError("no".into()))
        }
    }
    let mut s = DkimSigner::new(Arc::new(Broken), "example.org", "s", UnixTime(0)).unwrap();
    s.feed(b"From: a@example.org\r\n\r\n");
    assert_eq!(s.finish(), Err(DkimError::Key(KeyError("no".into()))));
}

proptest::proptest! {
    /// Any input, cut anywhere: no panic, and the same outcome as whole.
    #[test]
    fn any_message_in_any_chunking_signs_the_same_or_fails_the_same(
        head in proptest::collection::vec(
            proptest::sample::select(b"From:a@b.cTo \t\r\n:xX-".to_vec()),
            0..120,
        ),
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        size in 1usize..23,
    ) {
        let msg = [&b"From: a@example.org\r\n"[..], &head, b"\r\n\r\n", &body].concat();
        let whole = sign_in_chunks(&head, head.len().max(1));
        proptest::prop_assert_eq!(sign_in_chunks(&head, size), whole);
        let whole = sign_in_chunks(&msg, msg.len());
        proptest::prop_assert!(whole.is_ok());
        proptest::prop_assert_eq!(sign_in_chunks(&msg, size), whole);
    }
}
