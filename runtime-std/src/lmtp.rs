//! Local delivery through LMTP (RFC 2033), e.g. to Dovecot's LMTP
//! service (`delivery.local = "lmtp:127.0.0.1:24"` or
//! `"lmtp:/run/dovecot/lmtp"`): one blocking connection per attempt that
//! hands one queued message to the server for several local recipients
//! and returns one outcome per recipient.
//!
//! The protocol is the core's sans-IO client session in LMTP mode
//! ([`ClientConfig::lmtp`]: LHLO, and after the final `.` one reply per
//! accepted recipient, RFC 2033 §4.2); this module only moves its bytes
//! and keeps its timers (`set_read_timeout` from `poll_timeout`).
//!
//! [`deliver_queued`] records the outcomes in the queue's progress file
//! and logs them; `delivery.rs` calls it for the local recipients of a
//! message when `delivery.local` names an LMTP server.
//!
//! Outcomes: a 2yz is delivered; a 4yz, a timeout, a lost or refused
//! connection or a protocol error is temporary (retry later); a 5yz is
//! permanent, with the server's reply text for the bounce.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[cfg(unix)]
use std::os::unix::net::UnixStream;

use hato_core::config::LmtpTarget;
use hato_core::queue::QueueEnvelope;
use hato_core::smtp::client::{ClientConfig, ClientEvent, ClientSession, Outcome, Transaction};

use crate::log;
use crate::store::{RecordedFailure, Store};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one write may block (the server stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(180);

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpOutcome {
    /// The server took the message for this recipient; its reply.
    Delivered(String),
    /// Try again later: a 4yz reply, or the connection failed; why.
    Temporary(String),
    /// Do not try again (5yz): the server's reply, for the bounce.
    Permanent(String),
}

impl fmt::Display for LmtpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered(r) | Self::Temporary(r) | Self::Permanent(r) => f.write_str(r),
        }
    }
}

impl From<Outcome> for LmtpOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Delivered { reply } => Self::Delivered(reply.to_string()),
            Outcome::Temporary(f) => Self::Temporary(f.to_string()),
            Outcome::Permanent(f) => Self::Permanent(f.to_string()),
        }
    }
}

/// Delivers the queued message `env` to `batch` (local recipients not yet
/// finished: index and mailbox) through the LMTP server at `target`, and
/// records each outcome in the progress file:
///
/// - delivered: marked done, fsynced (there is no Maildir intent here, so
///   a crash between the server's 250 and this mark delivers the
///   recipient again on restart: LMTP's at-least-once contract);
///   `event=deliver id= to= mailbox= via=lmtp reply=`;
/// - temporary: `event=defer id= to= reason=`, retried later;
/// - permanent: marked failed with the server's reply (fsynced), never
///   retried; `event=fail id= to= reason=`. The reply waits in the
///   progress file for the bounce ([`Store::failures`]).
///
/// Returns whether some recipient must be tried again.
pub fn deliver_queued(
    store: &Store,
    hostname: &str,
    target: &LmtpTarget,
    env: &QueueEnvelope,
    batch: &[(usize, String)],
) -> bool {
    let original = |idx: usize, address: &str| {
        env.recipients
            .get(idx)
            .map_or(address.to_owned(), |r| r.original.clone())
    };
    let body = match store.open_body(&env.id) {
        Ok(body) => body,
        Err(e) => {
            log::Line::new("defer")
                .kv("id", &env.id)
                .kv("reason", format!("cannot read queue file: {e}"))
                .emit();
            return true;
        }
    };
    let mut retry = false;
    for ((idx, outcome), (_, address)) in deliver(target, hostname, env, batch, body)
        .into_iter()
        .zip(batch)
    {
        let to = original(idx, address);
        let recorded = match &outcome {
            LmtpOutcome::Delivered(reply) => store.mark_delivered(&env.id, idx).map(|()| {
                log::Line::new("deliver")
                    .kv("id", &env.id)
                    .kv("to", &to)
                    .kv("mailbox", address)
                    .kv("via", "lmtp")
                    .kv("reply", reply)
                    .emit();
            }),
            LmtpOutcome::Temporary(why) => {
                log::Line::new("defer")
                    .kv("id", &env.id)
                    .kv("to", &to)
                    .kv("reason", format!("{target}: {why}"))
                    .emit();
                retry = true;
                Ok(())
            }
            LmtpOutcome::Permanent(why) => {
                let failure = RecordedFailure {
                    mta: Some(target.to_string()),
                    reason: why.clone(),
                };
                store.mark_failed(&env.id, idx, &failure).map(|()| {
                    log::Line::new("bounce")
                        .kv("id", &env.id)
                        .kv("to", &to)
                        .kv("relay", target.to_string())
                        .kv("reason", why)
                        .emit();
                })
            }
        };
        if let Err(e) = recorded {
            log::Line::new("defer")
                .kv("id", &env.id)
                .kv("to", &to)
                .kv(
                    "reason",
                    format!("{target} answered \"{outcome}\" but it cannot be recorded: {e}"),
                )
                .emit();
            retry = true;
        }
    }
    retry
}

/// A stream the session can run over.
trait Conn: Read + Write {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        Self::set_read_timeout(self, t)
    }
}

#[cfg(unix)]
impl Conn for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        Self::set_read_timeout(self, t)
    }
}

/// Hands the message of `env` (its body: `body`, CRLF text as spooled) to
/// the LMTP server at `target` for `recipients` (their index in the
/// envelope and their mailbox address), greeting with `hostname`.
/// Returns one outcome per recipient, in the order given.
pub fn deliver(
    target: &LmtpTarget,
    hostname: &str,
    env: &QueueEnvelope,
    recipients: &[(usize, String)],
    body: impl Read,
) -> Vec<(usize, LmtpOutcome)> {
    deliver_with(target, ClientConfig::lmtp(hostname), env, recipients, body)
}

/// [`deliver`] with a given client configuration (timeouts in tests).
pub fn deliver_with(
    target: &LmtpTarget,
    cfg: ClientConfig,
    env: &QueueEnvelope,
    recipients: &[(usize, String)],
    body: impl Read,
) -> Vec<(usize, LmtpOutcome)> {
    if recipients.is_empty() {
        return Vec::new();
    }
    let tx = Transaction {
        from: env.from.clone(),
        recipients: recipients.iter().map(|(_, a)| a.clone()).collect(),
        size: 0,
        body_8bit: env.body_8bit,
        smtputf8: env.smtputf8,
    };
    let result = match target {
        LmtpTarget::Tcp(addr) => TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .and_then(|s| {
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(s)
            })
            .map_err(|e| format!("cannot connect to {target}: {e}"))
            .map(|s| run(s, cfg, tx, body)),
        #[cfg(unix)]
        LmtpTarget::Unix(path) => UnixStream::connect(path)
            .and_then(|s| {
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(s)
            })
            .map_err(|e| format!("cannot connect to {target}: {e}"))
            .map(|s| run(s, cfg, tx, body)),
        #[cfg(not(unix))]
        LmtpTarget::Unix(_) => Err(format!("{target}: Unix sockets need a Unix system")),
    };
    let outcomes = match result {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(why)) | Err(why) => vec![LmtpOutcome::Temporary(why); recipients.len()],
    };
    recipients.iter().map(|(i, _)| *i).zip(outcomes).collect()
}

/// Drives one session over `conn` until the transaction is done and QUIT
/// is answered (or the connection ends). Returns the outcomes, or why
/// there are none.
fn run(
    mut conn: impl Conn,
    cfg: ClientConfig,
    tx: Transaction,
    mut body: impl Read,
) -> Result<Vec<LmtpOutcome>, String> {
    let mut s = ClientSession::new(cfg, Instant::now());
    s.send(Instant::now(), tx)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut outcomes = None;
    let mut out = Vec::with_capacity(4096);
    let mut input = vec![0u8; 8192];
    let (mut start, mut end) = (0, 0);
    loop {
        // Transmits, then events, then input already read, then block.
        flush(&mut s, &mut conn, &mut out);
        while let Some(ev) = s.poll_event() {
            match ev {
                ClientEvent::WantBody => send_body(&mut s, &mut conn, &mut out, &mut body),
                ClientEvent::TransactionDone { outcomes: o } => {
                    outcomes = Some(o.into_iter().map(LmtpOutcome::from).collect());
                    let _ = s.quit(Instant::now());
                }
                _ => {}
            }
            flush(&mut s, &mut conn, &mut out);
        }
        if s.is_closed() {
            break;
        }
        if start < end {
            let n = s.handle_input(Instant::now(), &input[start..end]);
            start += n;
            if n > 0 {
                continue;
            }
        }
        let now = Instant::now();
        let Some((deadline, _)) = s.poll_timeout() else {
            // Nothing to wait for and not closed: cannot happen; end it.
            s.handle_eof(now);
            continue;
        };
        if deadline <= now {
            s.handle_timeout(now);
            continue;
        }
        if start == end {
            start = 0;
            end = 0;
        } else if start > 0 {
            input.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == input.len() {
            // The session takes nothing and the buffer is full.
            s.handle_eof(now);
            continue;
        }
        if conn.set_read_timeout(Some(deadline - now)).is_err() {
            s.handle_eof(now);
            continue;
        }
        match conn.read(&mut input[end..]) {
            Ok(0) => s.handle_eof(Instant::now()),
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                s.handle_timeout(Instant::now());
            }
            Err(_) => s.handle_eof(Instant::now()),
        }
    }
    outcomes.ok_or_else(|| "the LMTP session ended without an outcome".to_owned())
}

/// Writes what the session has to send; a failed write ends the session.
fn flush(s: &mut ClientSession, conn: &mut impl Write, out: &mut Vec<u8>) {
    out.clear();
    if s.poll_transmit(out) > 0 && conn.write_all(out).and_then(|()| conn.flush()).is_err() {
        s.handle_eof(Instant::now());
    }
}

/// Streams the body into the session, writing as its buffer fills, then
/// ends it. A body that cannot be read ends the session (temporary).
fn send_body(
    s: &mut ClientSession,
    conn: &mut impl Write,
    out: &mut Vec<u8>,
    body: &mut impl Read,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return s.handle_eof(Instant::now()),
        };
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let Ok(taken) = s.push_body(Instant::now(), rest) else {
                return; // The session ended (a failed write).
            };
            rest = &rest[taken..];
            flush(s, conn, out);
        }
    }
    let _ = s.end_body(Instant::now());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hato_core::config::{Config, LocalMethod};
    use hato_core::policy::Destination;

    use super::*;
    use crate::delivery::{LocalDelivery, RetryPolicy};
    use crate::lmtp_fake::{FakeLmtp, Script};
    use crate::store::testdir::{envelope, wait_until, TestDir};
    use crate::store::Store;

    fn env(to: &[&str]) -> QueueEnvelope {
        let t = TestDir::new("lmtp-env");
        let store = Store::attach(t.path()).unwrap();
        let dest: Vec<_> = to.iter().map(|a| Destination::Local((*a).into())).collect();
        envelope(&store, &dest)
    }

    fn rcpts(to: &[&str]) -> Vec<(usize, String)> {
        to.iter().map(|a| (*a).to_owned()).enumerate().collect()
    }

    const BODY: &[u8] = b"Subject: hi\r\n\r\nline\r\n.hidden dot\r\n";

    #[test]
    fn each_recipient_gets_its_own_outcome() {
        let fake = FakeLmtp::start(Script {
            unknown: vec!["nobody@example.org".into()],
            after_data: BTreeMap::from([(
                "full@example.org".to_owned(),
                "452 4.2.2 <full@example.org> Quota exceeded".to_owned(),
            )]),
            hang_up_at: None,
        });
        let to = ["bob@example.org", "nobody@example.org", "full@example.org"];
        let got = deliver(
            &LmtpTarget::Tcp(fake.addr),
            "mail.example.org",
            &env(&to),
            &rcpts(&to),
            BODY,
        );
        assert_eq!(
            got,
            [
                (
                    0,
                    LmtpOutcome::Delivered("250 2.0.0 <bob@example.org> saved".into())
                ),
                (
                    1,
                    LmtpOutcome::Permanent(
                        "550 5.1.1 <nobody@example.org> User doesn't exist (in reply to RCPT TO)"
                            .into()
                    )
                ),
                (
                    2,
                    LmtpOutcome::Temporary(
                        "452 4.2.2 <full@example.org> Quota exceeded (in reply to end of data)"
                            .into()
                    )
                ),
            ]
        );
        let rx = fake.received();
        assert_eq!(rx.len(), 1);
        assert_eq!(rx[0].lhlo, "mail.example.org");
        assert_eq!(rx[0].from, "<alice@example.net>");
        assert_eq!(rx[0].to, ["bob@example.org", "full@example.org"]);
        assert_eq!(rx[0].data, b"Subject: hi\r\n\r\nline\r\n..hidden dot\r\n");
    }

    #[test]
    fn indexes_are_kept_for_a_subset_of_the_envelope() {
        let fake = FakeLmtp::start(Script::default());
        let to = ["a@example.org", "b@example.org", "c@example.org"];
        let got = deliver(
            &LmtpTarget::Tcp(fake.addr),
            "h",
            &env(&to),
            &[(2, "c@example.org".into()), (0, "a@example.org".into())],
            BODY,
        );
        let idx: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [2, 0]);
        assert!(got
            .iter()
            .all(|(_, o)| matches!(o, LmtpOutcome::Delivered(_))));
    }

    #[test]
    fn a_hang_up_between_replies_keeps_the_delivered_and_retries_the_rest() {
        let fake = FakeLmtp::start(Script {
            hang_up_at: Some("b@example.org".into()),
            ..Script::default()
        });
        let to = ["a@example.org", "b@example.org"];
        let got = deliver(
            &LmtpTarget::Tcp(fake.addr),
            "h",
            &env(&to),
            &rcpts(&to),
            BODY,
        );
        assert!(matches!(got[0].1, LmtpOutcome::Delivered(_)), "{got:?}");
        assert_eq!(got[1].1, LmtpOutcome::Temporary("connection lost".into()));
    }

    #[test]
    fn no_server_is_a_temporary_failure_for_everyone() {
        // A port nothing listens on: bind, note it, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let to = ["a@example.org", "b@example.org"];
        let got = deliver(&LmtpTarget::Tcp(addr), "h", &env(&to), &rcpts(&to), BODY);
        assert_eq!(got.len(), 2);
        for (_, o) in got {
            let LmtpOutcome::Temporary(why) = o else {
                panic!("{o:?}")
            };
            assert!(
                why.starts_with(&format!("cannot connect to lmtp:{addr}")),
                "{why}"
            );
        }
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = ClientConfig::lmtp("h");
        cfg.timeouts.greeting = Duration::from_millis(200);
        let to = ["a@example.org"];
        let started = Instant::now();
        let got = deliver_with(&LmtpTarget::Tcp(addr), cfg, &env(&to), &rcpts(&to), BODY);
        assert_eq!(
            got,
            [(
                0,
                LmtpOutcome::Temporary("timeout waiting for greeting".into())
            )]
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    /// Queues a message from <alice@example.net> to local `to`; returns its id.
    fn queue(store: &Store, to: &[&str]) -> String {
        let dest: Vec<_> = to.iter().map(|a| Destination::Local((*a).into())).collect();
        let env = envelope(store, &dest);
        let mut w = store.spool(&env).unwrap();
        w.write(BODY).unwrap();
        w.commit().unwrap();
        env.id
    }

    fn lmtp_setup(name: &str, fake: &FakeLmtp) -> (TestDir, std::sync::Arc<Store>, Config) {
        let t = TestDir::new(name);
        let store = std::sync::Arc::new(Store::open(t.path()).unwrap());
        let mut cfg = Config::defaults("mail.example.org");
        cfg.delivery.local = LocalMethod::Lmtp(LmtpTarget::Tcp(fake.addr));
        (t, store, cfg)
    }

    #[test]
    fn delivery_in_lmtp_mode_records_each_recipient() {
        let fake = FakeLmtp::start(Script {
            unknown: vec!["nobody@example.org".into()],
            after_data: BTreeMap::from([(
                "full@example.org".to_owned(),
                "452 4.2.2 Quota exceeded".to_owned(),
            )]),
            hang_up_at: None,
        });
        let (_t, store, cfg) = lmtp_setup("lmtp-agent", &fake);
        let id = queue(
            &store,
            &["bob@example.org", "nobody@example.org", "full@example.org"],
        );
        let retry = RetryPolicy {
            first: Duration::from_millis(50),
            max: Duration::from_millis(100),
        };
        let handle = LocalDelivery::spawn_with(
            std::sync::Arc::clone(&store),
            std::sync::Arc::new(cfg),
            retry,
        )
        .unwrap();
        handle.submit(id.clone());
        wait_until("full was tried again", || fake.received().len() >= 2);
        handle.shutdown();
        // bob is delivered and nobody failed (both finished); full is open.
        assert_eq!(store.delivered(&id).unwrap(), [0, 1]);
        let failures = store.failures(&id).unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, 1);
        assert!(
            failures[0]
                .1
                .reason
                .contains("550 5.1.1 <nobody@example.org> User doesn't exist"),
            "{failures:?}"
        );
        // The retry went to full alone: bob is done and nobody failed.
        let rx = fake.received();
        assert_eq!(rx[0].to, ["bob@example.org", "full@example.org"]);
        assert_eq!(rx[1].to, ["full@example.org"]);
        // The message stays queued (full is open; nobody's failure goes
        // into the report once it is finished); nothing was written into a
        // Maildir by hato itself.
        assert_eq!(store.queued().unwrap(), [id]);
        assert!(!store.mailbox_root().join("example.org").exists());
    }

    #[test]
    fn a_message_fully_delivered_over_lmtp_leaves_the_queue() {
        let fake = FakeLmtp::start(Script::default());
        let (_t, store, cfg) = lmtp_setup("lmtp-agent-all", &fake);
        let id = queue(&store, &["bob@example.org", "carol@example.org"]);
        let handle =
            LocalDelivery::spawn(std::sync::Arc::clone(&store), std::sync::Arc::new(cfg)).unwrap();
        handle.submit(id);
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        handle.shutdown();
        let rx = fake.received();
        assert_eq!(rx.len(), 1, "one transaction for both");
        assert_eq!(rx[0].to, ["bob@example.org", "carol@example.org"]);
        assert_eq!(rx[0].lhlo, "mail.example.org");
    }

    #[cfg(unix)]
    #[test]
    fn a_unix_socket_works_too() {
        use std::io::{BufRead, BufReader};
        use std::os::unix::net::UnixListener;
        let t = TestDir::new("lmtp-unix");
        let path = t.path().join("lmtp");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            w.write_all(b"220 unix LMTP\r\n").unwrap();
            let mut line = String::new();
            let mut in_data = false;
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                let reply: &[u8] = match (in_data, line.as_str()) {
                    (true, ".\r\n") => {
                        in_data = false;
                        b"250 2.0.0 saved\r\n"
                    }
                    (true, _) => continue,
                    (_, l) if l.starts_with("LHLO") => b"250 unix\r\n",
                    (_, "DATA\r\n") => {
                        in_data = true;
                        b"354 go\r\n"
                    }
                    (_, "QUIT\r\n") => {
                        w.write_all(b"221 bye\r\n").unwrap();
                        return;
                    }
                    _ => b"250 OK\r\n",
                };
                w.write_all(reply).unwrap();
            }
        });
        let to = ["a@example.org"];
        let got = deliver(&LmtpTarget::Unix(path), "h", &env(&to), &rcpts(&to), BODY);
        assert_eq!(got, [(0, LmtpOutcome::Delivered("250 2.0.0 saved".into()))]);
        server.join().unwrap();
    }
}
