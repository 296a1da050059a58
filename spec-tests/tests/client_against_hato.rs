//! The sans-IO SMTP client (`hato_core::smtp::client`) over a real
//! TcpStream against running `hato` and `hato-smol` binaries: proof that
//! it speaks real SMTP (greeting, EHLO, PIPELINING, SIZE, 8BITMIME,
//! dot-stuffing, several transactions on one connection, QUIT, and
//! STARTTLS through the core's TLS client). What it delivered to
//! alice@example.test must be in her Maildir, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hato_core::policy::ListenerKind;
use hato_core::smtp::client::{
    ClientConfig, ClientEvent, ClientSession, CloseReason, Failure, Outcome, Transaction,
};
use hato_core::tls::{client_config, TimeProvider, TlsStream, TlsTime};
use hato_spec_tests::maildir::{crlf_to_lf, split_delivered};
use hato_spec_tests::server::{Binary, DataDir, Server};

/// How long the whole conversation may take.
const TALK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long local delivery may take after the last message was queued.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// One message: the transaction and its body (CRLF text, not stuffed).
struct Message {
    tx: Transaction,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Clock;

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<TlsTime> {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(TlsTime::since_unix_epoch(d))
    }
}

/// The connection: plaintext, or TLS after STARTTLS.
struct Wire {
    stream: TcpStream,
    tls: Option<TlsStream>,
    /// The handshake has not been reported to the session yet.
    handshaking: bool,
}

impl Wire {
    /// Writes the session's bytes (encrypted when TLS runs) and whatever
    /// TLS itself has to send.
    fn write(&mut self, plain: &mut Vec<u8>) {
        match &mut self.tls {
            None => self.stream.write_all(plain).unwrap(),
            Some(tls) => {
                if !plain.is_empty() {
                    tls.write_plaintext(plain).unwrap();
                }
                let mut cipher = Vec::new();
                tls.poll_ciphertext(&mut cipher);
                self.stream.write_all(&cipher).unwrap();
            }
        }
        plain.clear();
    }

    /// Takes bytes read from the socket; plaintext goes to `inbuf`.
    fn read(&mut self, bytes: &[u8], inbuf: &mut Vec<u8>) {
        match &mut self.tls {
            None => inbuf.extend_from_slice(bytes),
            Some(tls) => tls.read_ciphertext(bytes, inbuf).unwrap(),
        }
    }
}

/// Drives a client session over TCP to `addr`: sends `messages` in turn on
/// one connection, then QUIT. Returns the outcomes of each transaction and
/// why the session closed.
fn deliver(addr: SocketAddr, messages: Vec<Message>) -> (Vec<Vec<Outcome>>, CloseReason) {
    deliver_with(addr, messages, false).0
}

/// As [`deliver`], with STARTTLS when `starttls`; also tells whether the
/// session ended inside TLS.
fn deliver_with(
    addr: SocketAddr,
    messages: Vec<Message>,
    starttls: bool,
) -> ((Vec<Vec<Outcome>>, CloseReason), bool) {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut wire = Wire {
        stream,
        tls: None,
        handshaking: false,
    };
    let start = Instant::now();
    let mut cfg = ClientConfig::new("client.example.test");
    cfg.starttls = starttls;
    let mut session = ClientSession::new(cfg, start);
    let mut queue = messages.into_iter();
    let mut current: Option<Vec<u8>> = None;
    let mut results = Vec::new();
    let mut out = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(start.elapsed() < TALK_TIMEOUT, "conversation too slow");
        // 1. Transmits.
        let _ = session.poll_transmit(&mut out);
        wire.write(&mut out);
        // 2. Events.
        let mut acted = false;
        while let Some(ev) = session.poll_event() {
            acted = true;
            match ev {
                ClientEvent::Ready | ClientEvent::TransactionDone { .. } => {
                    if let ClientEvent::TransactionDone { outcomes } = ev {
                        results.push(outcomes);
                    }
                    match queue.next() {
                        Some(m) => {
                            current = Some(m.body);
                            session.send(Instant::now(), m.tx).unwrap();
                        }
                        None => session.quit(Instant::now()).unwrap(),
                    }
                }
                ClientEvent::WantBody => {
                    let body = current.take().unwrap_or_default();
                    // Small pieces, to cross line boundaries.
                    for chunk in body.chunks(7) {
                        let mut rest = chunk;
                        while !rest.is_empty() {
                            let n = session.push_body(Instant::now(), rest).unwrap();
                            rest = &rest[n..];
                            if session.poll_transmit(&mut out) > 0 {
                                wire.write(&mut out);
                            }
                        }
                    }
                    session.end_body(Instant::now()).unwrap();
                }
                ClientEvent::RecipientResult { .. } => {}
                ClientEvent::StartTls => {
                    // Nothing read before the handshake is trusted.
                    inbuf.clear();
                    let cfg = client_config(Arc::new(Clock)).unwrap();
                    wire.tls = Some(TlsStream::client(cfg, "mail.example.test").unwrap());
                    wire.handshaking = true;
                    wire.write(&mut out);
                }
                ClientEvent::Closed { reason } => {
                    let _ = session.poll_transmit(&mut out);
                    wire.write(&mut out);
                    return ((results, reason), session.is_tls());
                }
            }
        }
        if acted {
            continue;
        }
        // 3. Input already read but not yet consumed.
        if !inbuf.is_empty() {
            let n = session.handle_input(Instant::now(), &inbuf);
            inbuf.drain(..n);
            if n > 0 {
                continue;
            }
        }
        // 4. Block until input or the session's deadline.
        let wait = session
            .poll_timeout()
            .map_or(Duration::from_secs(5), |(at, _)| {
                at.saturating_duration_since(Instant::now())
            });
        if wait.is_zero() {
            session.handle_timeout(Instant::now());
            continue;
        }
        wire.stream.set_read_timeout(Some(wait)).unwrap();
        match wire.stream.read(&mut buf) {
            Ok(0) => session.handle_eof(Instant::now()),
            Ok(n) => {
                wire.read(&buf[..n], &mut inbuf);
                let done = wire.tls.as_ref().is_some_and(TlsStream::is_established);
                if wire.handshaking && done {
                    wire.handshaking = false;
                    session.tls_established(Instant::now()).unwrap();
                }
                wire.write(&mut out);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(Instant::now());
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Waits until `address`'s Maildir holds `n` messages; returns their
/// contents (hato's fields removed, LF line endings).
fn wait_delivered(data: &DataDir, address: &str, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let files = data.delivered(address).unwrap();
        if files.len() >= n || Instant::now() > deadline {
            let mut messages: Vec<Vec<u8>> = files
                .iter()
                .map(|f| {
                    let raw = std::fs::read(f).unwrap();
                    split_delivered(&raw).unwrap().message.to_vec()
                })
                .collect();
            messages.sort();
            return messages;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(binary: Binary) {
    let data = DataDir::new(&format!("client-{}", binary.name())).unwrap();
    let server = Server::start_with(
        binary,
        data.clone(),
        &[("limits.max_message_size".into(), "\"1M\"".into())],
    )
    .unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();

    let first = b"Subject: one\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n".to_vec();
    let second = "Subject: two\r\n\r\nGr\u{fc}\u{df}e\r\n"
        .as_bytes()
        .to_vec();
    let messages = vec![
        Message {
            tx: Transaction {
                from: "<bob@example.org>".into(),
                recipients: vec![
                    "<alice@example.test>".into(),
                    "<mallory@example.test>".into(),
                ],
                size: first.len() as u64,
                body_8bit: false,
                smtputf8: false,
            },
            body: first.clone(),
        },
        Message {
            tx: Transaction {
                from: "<>".into(),
                recipients: vec!["<alice@example.test>".into(), "<bob@example.test>".into()],
                size: second.len() as u64,
                body_8bit: true,
                smtputf8: false,
            },
            body: second.clone(),
        },
        Message {
            tx: Transaction {
                from: "<bob@example.org>".into(),
                recipients: vec!["<alice@example.test>".into()],
                size: 5_000_000,
                body_8bit: false,
                smtputf8: false,
            },
            body: Vec::new(),
        },
    ];
    let (results, reason) = deliver(addr, messages);
    assert_eq!(reason, CloseReason::Quit, "{}", server.log_text());
    assert_eq!(results.len(), 3);

    assert!(
        matches!(&results[0][0], Outcome::Delivered { reply } if reply.code == 250),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[0][1], Outcome::Permanent(Failure::Reply { reply, .. }) if reply.code == 550),
        "{:?}",
        results[0]
    );
    assert!(results[1]
        .iter()
        .all(|o| matches!(o, Outcome::Delivered { .. })));
    assert_eq!(
        results[2],
        [Outcome::Permanent(Failure::TooLarge {
            size: 5_000_000,
            limit: 1024 * 1024
        })]
    );

    let mut want = vec![crlf_to_lf(&first), crlf_to_lf(&second)];
    want.sort();
    assert_eq!(wait_delivered(&data, "alice@example.test", 2), want);
    assert_eq!(
        wait_delivered(&data, "bob@example.test", 1),
        [crlf_to_lf(&second)]
    );
}

#[test]
fn client_delivers_to_hato() {
    run(Binary::Hato);
}

#[test]
fn client_delivers_to_hato_smol() {
    run(Binary::HatoSmol);
}

/// The client with STARTTLS on: it upgrades, says EHLO again inside TLS,
/// and delivers; the server logs the handshake.
fn run_starttls(binary: Binary) {
    let data = DataDir::new(&format!("client-tls-{}", binary.name())).unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let body = b"Subject: over TLS\r\n\r\nsecret\r\n".to_vec();
    let messages = vec![Message {
        tx: Transaction {
            from: "<bob@example.org>".into(),
            recipients: vec!["<alice@example.test>".into()],
            size: body.len() as u64,
            body_8bit: false,
            smtputf8: false,
        },
        body: body.clone(),
    }];
    let ((results, reason), tls) = deliver_with(addr, messages, true);
    assert_eq!(reason, CloseReason::Quit, "{}", server.log_text());
    assert!(tls, "the session ended inside TLS");
    assert!(
        matches!(&results[0][..], [Outcome::Delivered { .. }]),
        "{results:?}"
    );
    assert_eq!(
        wait_delivered(&data, "alice@example.test", 1),
        [crlf_to_lf(&body)]
    );
    assert_eq!(server.wait_events("starttls", 1).len(), 1);
    assert_eq!(server.wait_events("tls", 1).len(), 1);
    let helos = server.wait_events("helo", 2);
    assert_eq!(helos.len(), 2, "EHLO again after TLS");
}

#[test]
fn client_starttls_to_hato() {
    run_starttls(Binary::Hato);
}

#[test]
fn client_starttls_to_hato_smol() {
    run_starttls(Binary::HatoSmol);
}
