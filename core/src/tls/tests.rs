//! A server and a client stream shake hands in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;

/// A fixed clock: the tests read no time.
#[derive(Debug)]
pub(crate) struct FixedTime;

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<TlsTime> {
        Some(TlsTime::since_unix_epoch(std::time::Duration::from_secs(
            1_800_000_000,
        )))
    }
}

/// A self-signed certificate for `mail.example.test`, as PEM.
pub(crate) fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["mail.example.test".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub(crate) fn server_cfg() -> Arc<ServerConfig> {
    let (cert, key) = self_signed();
    server_config(cert.as_bytes(), key.as_bytes(), Arc::new(FixedTime)).unwrap()
}

/// Moves ciphertext both ways until neither side has anything to send.
fn pump(a: &mut TlsStream, b: &mut TlsStream, a_plain: &mut Vec<u8>, b_plain: &mut Vec<u8>) {
    for _ in 0..20 {
        let mut wire = Vec::new();
        let from_a = a.poll_ciphertext(&mut wire);
        b.read_ciphertext(&wire, b_plain).unwrap();
        wire.clear();
        let from_b = b.poll_ciphertext(&mut wire);
        a.read_ciphertext(&wire, a_plain).unwrap();
        if from_a == 0 && from_b == 0 {
            return;
        }
    }
    panic!("no quiet point");
}

#[test]
fn handshake_then_data_both_ways() {
    let mut server = TlsStream::server(server_cfg()).unwrap();
    let mut client = TlsStream::client(
        client_config(Arc::new(FixedTime)).unwrap(),
        "mail.example.test",
    )
    .unwrap();
    let (mut c_plain, mut s_plain) = (Vec::new(), Vec::new());
    // The server's greeting waits inside rustls until the handshake ends.
    server.write_plaintext(b"220 hello\r\n").unwrap();
    assert!(server.take_established().is_none());
    pump(&mut client, &mut server, &mut c_plain, &mut s_plain);
    let info = server.take_established().unwrap();
    assert_eq!(info.version, "TLSv1_3");
    assert!(server.take_established().is_none(), "reported once");
    assert!(client.take_established().is_some());
    assert_eq!(c_plain, b"220 hello\r\n");
    client.write_plaintext(b"EHLO c\r\n").unwrap();
    pump(&mut client, &mut server, &mut c_plain, &mut s_plain);
    assert_eq!(s_plain, b"EHLO c\r\n");
}

#[test]
fn plaintext_where_a_handshake_belongs_fails_with_an_alert() {
    let mut server = TlsStream::server(server_cfg()).unwrap();
    let mut plain = Vec::new();
    let err = server
        .read_ciphertext(b"EHLO not-tls.example\r\n", &mut plain)
        .unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err}");
    assert!(plain.is_empty());
    // Sticky, and the alert is ready to send.
    assert_eq!(server.read_ciphertext(b"x", &mut plain), Err(err));
    let mut alert = Vec::new();
    assert!(server.poll_ciphertext(&mut alert) > 0);
    assert_eq!(alert[0], 0x15, "an alert record");
}

#[test]
fn the_opportunistic_client_accepts_a_self_signed_certificate_for_another_name() {
    let mut server = TlsStream::server(server_cfg()).unwrap();
    let mut client = TlsStream::client(
        client_config(Arc::new(FixedTime)).unwrap(),
        "mx.other.example",
    )
    .unwrap();
    let (mut c_plain, mut s_plain) = (Vec::new(), Vec::new());
    pump(&mut client, &mut server, &mut c_plain, &mut s_plain);
    assert!(client.is_established());
    assert!(server.is_established());
}

#[test]
fn broken_pem_is_named() {
    let (cert, key) = self_signed();
    let t = || -> Arc<dyn TimeProvider> { Arc::new(FixedTime) };
    assert!(matches!(
        server_config(b"nothing", key.as_bytes(), t()),
        Err(TlsConfigError::Certificate(_))
    ));
    assert!(matches!(
        server_config(cert.as_bytes(), b"nothing", t()),
        Err(TlsConfigError::Key(_))
    ));
    let (_, other_key) = self_signed();
    assert!(matches!(
        server_config(cert.as_bytes(), other_key.as_bytes(), t()),
        Err(TlsConfigError::Rejected(_))
    ));
}

#[test]
fn a_bad_server_name_is_refused() {
    let cfg = client_config(Arc::new(FixedTime)).unwrap();
    assert!(matches!(
        TlsStream::client(cfg, "not a name"),
        Err(TlsError::BadServerName(_))
    ));
}
