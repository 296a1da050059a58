//! Remote delivery through MX records, against real peers, for `hato` and
//! `hato-smol`: dnsmasq ([`Dnsmasq`]) serves the MX / A records, and the
//! receivers listen on other loopback addresses (127.0.0.2, .3, .4) at one
//! port, `delivery.smtp_port`: Python's aiosmtpd ([`AioSmtpd`]) as a plain
//! sink, and a private Postfix instance ([`Postfix`]) as a real MTA. The
//! server asks only the test's dnsmasq (`delivery.dns_servers`), never the
//! machine's resolver.
//!
//! Covered (RFC 5321 §5.1, RFC 7505):
//! - MX preference; fallback to the next MX when the first refuses
//!   connections (the log shows the connect failure first) or has no
//!   address; the implicit MX (a domain with only an address); an MX host
//!   with only an IPv6 address (::1);
//! - a first MX that accepts the connection but never greets: after the
//!   timeout the next MX takes the message in the same attempt;
//! - a 451 retried and a 550 bounced, per recipient;
//! - the permanent DNS answers, each bouncing at once: null MX 5.1.10, MX
//!   hosts that lead back to this server by name 5.4.6, a domain that does
//!   not exist 5.1.2, no MX host with an address 5.4.4;
//! - an MX that is this server by address only: the message loops until
//!   `delivery.max_hops` bounces it (5.4.6);
//! - Postfix receiving a message intact (dot lines, an 8-bit body with
//!   BODY=8BITMIME), refusing an unknown user (its 550 quoted in the
//!   bounce), and announcing a SIZE limit for which a bigger message is
//!   bounced (5.3.4) without being sent; Postfix's rate limit (450 4.7.1)
//!   deferring a message until a retry gets through.
//!
//! Every bounce lands in the local sender's Maildir and is read as an
//! RFC 3464 report by Python's `email` package.
//!
//! Also: a loop through this server ends in a bounce even with duplicate
//! suppression on; a host skipped after EHLO (421) is logged; SMTPUTF8 is
//! declared when a message is passed on to a server that offers it.
//!
//! The scripted-peer cases (4xx then retry, timeouts, a connection lost
//! in DATA) are in `remote_delivery.rs`. These need Debian's
//! `dnsmasq-base`, `python3-aiosmtpd` and `postfix`, and root for Postfix:
//! `.ci/interop` installs them and runs
//! `cargo test -p hato-spec-tests --test remote_mx -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::aiosmtpd::{free_port_on, AioSmtpd};
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::dnsmasq::Dnsmasq;
use hato_spec_tests::maildir::crlf_to_lf;
use hato_spec_tests::postfix::Postfix;
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};
use hato_spec_tests::setup::HOSTNAME;

/// The local sender, who gets the bounces.
const ALICE: &str = "alice@example.test";

/// The longest any one wait may take (retries are 1 s apart here).
const WAIT: Duration = Duration::from_secs(20);

/// 127.0.0.`n`.
fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A port free on 127.0.0.`n` for each of `hosts`.
fn port_on(hosts: &[u8]) -> u16 {
    let ips: Vec<Ipv4Addr> = hosts.iter().map(|n| lo(*n)).collect();
    free_port_on(&ips).expect("a port free on every receiver address")
}

fn records(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Starts `binary` asking only `dns`, with MX hosts on `port`, retries 1 s
/// apart and every wait capped at 3 s.
fn start(binary: Binary, dns: &Dnsmasq, port: u16) -> Server {
    let overrides: Vec<(String, String)> = vec![
        (
            "delivery.dns_servers".into(),
            format!("[\"{}\"]", dns.addr()),
        ),
        ("delivery.smtp_port".into(), port.to_string()),
        ("delivery.retry".into(), "[\"1s\"]".into()),
        ("delivery.timeout".into(), "\"3s\"".into()),
    ];
    Server::start_with(binary, DataDir::new("remote-mx").unwrap(), &overrides).unwrap()
}

/// Queues `message` through the SMTP listener (the test client is on
/// loopback: trusted, may relay); `mail_params` go after `MAIL FROM`.
fn send(server: &Server, to: &[&str], mail_params: &str, message: &[u8]) -> String {
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("client.example").unwrap();
    let reply = c
        .send_mail_with(&format!("<{ALICE}>{mail_params}"), to, message)
        .unwrap();
    c.quit().unwrap();
    reply.queue_id().unwrap().to_owned()
}

fn message(to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <{ALICE}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.test>\r\n\r\nHello.\r\n\
         .a line that starts with a dot\r\n..two dots\r\n.\r\nEnd.\r\n"
    )
    .into_bytes()
}

/// Waits until `queue/` is empty (every message finished).
fn wait_queue_empty(server: &Server) {
    server.wait_queue_empty(WAIT);
}

/// Waits for the first message in alice's Maildir (the bounce).
fn wait_bounce(server: &Server) -> Vec<u8> {
    server.wait_first_mail(ALICE, WAIT)
}

/// Reads a DSN with Python's `email` package; prints one fact a line:
/// the report's type, each recipient's block, the human part on one line
/// and the original's Subject.
const DSN_SCRIPT: &str = r#"
import email, email.policy, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
assert not msg.defects, msg.defects
print("type", msg.get_content_type(), msg.get_param("report-type"))
print("to", msg["To"])
parts = msg.get_payload()
human = parts[0].get_content()
blocks = parts[1].get_payload()
for b in sorted(blocks[1:], key=lambda b: str(b["Final-Recipient"])):
    print("rcpt", b["Final-Recipient"], "|", b["Action"], "|", b["Status"], "|",
          b["Remote-MTA"], "|", " ".join(str(b["Diagnostic-Code"]).split()))
print("human", " ".join(human.split()))
print("subject", email.message_from_bytes(parts[2].get_payload(decode=True))["Subject"])
"#;

/// The facts [`DSN_SCRIPT`] finds in `dsn`.
fn read_dsn(dsn: &[u8]) -> Vec<String> {
    let dir = DataDir::new("dsn").unwrap();
    let path = dir.path().join("dsn.eml");
    std::fs::write(&path, dsn).unwrap();
    let out = run_python(DSN_SCRIPT, &[path.to_str().unwrap()], WAIT).unwrap();
    out.stdout.lines().map(str::to_owned).collect()
}

/// The position of the first log line of `event` that `keep` accepts.
fn log_position(server: &Server, event: &str, keep: impl Fn(&str) -> bool) -> Option<usize> {
    let want = format!("event={event}");
    server
        .log_lines()
        .iter()
        .position(|l| l.split_whitespace().any(|t| t == want) && keep(l))
}

#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn the_next_mx_takes_the_mail_when_the_first_refuses_connections() {
    let port = port_on(&[2, 3]);
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=fallback.test,mx1.fallback.test,10",
        "--mx-host=fallback.test,mx2.fallback.test,20",
        "--host-record=mx1.fallback.test,127.0.0.2",
        "--host-record=mx2.fallback.test,127.0.0.3",
    ]));
    // Nothing listens on mx1 (127.0.0.2): connection refused.
    let mx2 = AioSmtpd::start(SocketAddr::from((lo(3), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "carol@fallback.test";
        send(&server, &[to], "", &message(to, "fallback"));
        let got = mx2.wait_for(i + 1, WAIT).unwrap();
        assert_eq!(got.len(), i + 1, "{}", server.log_text());
        let m = &got[i];
        assert_eq!(m.from, format!("<{ALICE}>"));
        assert_eq!(m.rcpts, [format!("<{to}>")]);
        assert_eq!(m.helo, HOSTNAME);
        assert!(
            m.data.ends_with(&message(to, "fallback")),
            "{}",
            String::from_utf8_lossy(&m.data)
        );
        wait_queue_empty(&server);
        let mx1 = format!("mx1.fallback.test[127.0.0.2:{port}]");
        let failed = log_position(&server, "connect-failed", |l| {
            log_value(l, "relay") == Some(mx1.as_str())
        });
        let delivered = log_position(&server, "deliver", |l| {
            log_value(l, "relay").is_some_and(|r| r.contains("mx2.fallback.test"))
        });
        assert!(
            matches!((failed, delivered), (Some(f), Some(d)) if f < d),
            "{}: connect failure to mx1, then delivery to mx2:\n{}",
            binary.name(),
            server.log_text()
        );
        assert!(server.events("bounce").is_empty(), "{}", server.log_text());
    }
}

#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn an_mx_host_without_an_address_is_skipped() {
    let port = port_on(&[3]);
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=skip.test,ghost.skip.test,10",
        "--mx-host=skip.test,mx.skip.test,20",
        "--host-record=mx.skip.test,127.0.0.3",
    ]));
    let peer = AioSmtpd::start(SocketAddr::from((lo(3), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "gina@skip.test";
        send(&server, &[to], "", &message(to, "skip"));
        let got = peer.wait_for(i + 1, WAIT).unwrap();
        assert_eq!(got.len(), i + 1, "{}", server.log_text());
        wait_queue_empty(&server);
        assert!(server.events("bounce").is_empty(), "{}", server.log_text());
    }
}

/// An MX host that is this server under another name (found by its
/// address only): the message comes back in, goes out again, and each
/// round adds a `Received:` header until `delivery.max_hops` stops it
/// with a 5.4.6 bounce to the sender; it never goes round for ever.
/// Duplicate suppression is off here: see the next test.
#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn an_mx_that_is_this_server_by_address_loops_until_max_hops_then_bounces() {
    mail_to_ourselves_by_address_bounces(&[("limits.duplicate_window", "\"0s\"")]);
}

/// The same loop with the default settings must end the same way, with a
/// bounce: the sender must learn that the message went nowhere.
#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn a_loop_through_ourselves_is_bounced_even_with_duplicate_suppression() {
    mail_to_ourselves_by_address_bounces(&[]);
}

/// Sends to `self.test`, whose MX is this server by address, with
/// `delivery.max_hops = 5` and `extra` settings; checks that the sender
/// gets a 5.4.6 bounce after at most 5 rounds.
fn mail_to_ourselves_by_address_bounces(extra: &[(&str, &str)]) {
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=self.test,alias.self.test,10",
        "--host-record=alias.self.test,127.0.0.1",
    ]));
    for binary in Binary::ALL {
        // The server's SMTP listener is the MX port: it delivers to itself.
        let port = port_on(&[1]);
        let mut overrides: Vec<(String, String)> = vec![
            ("listen.smtp".into(), format!("[\"127.0.0.1:{port}\"]")),
            (
                "delivery.dns_servers".into(),
                format!("[\"{}\"]", dns.addr()),
            ),
            ("delivery.smtp_port".into(), port.to_string()),
            ("delivery.retry".into(), "[\"1s\"]".into()),
            ("delivery.timeout".into(), "\"3s\"".into()),
            ("delivery.max_hops".into(), "5".into()),
        ];
        overrides.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let server =
            Server::start_with(binary, DataDir::new("remote-self").unwrap(), &overrides).unwrap();
        send(
            &server,
            &["hal@self.test"],
            "",
            &message("hal@self.test", "self"),
        );
        let dsn = wait_bounce(&server);
        wait_queue_empty(&server);
        let bounces = server.events("bounce");
        assert_eq!(bounces.len(), 1, "{}", server.log_text());
        assert!(
            log_value(&bounces[0], "reason").is_some_and(|r| r.starts_with("5.4.6")),
            "{}",
            server.log_text()
        );
        let rounds = server
            .events("deliver")
            .iter()
            .filter(|l| log_value(l, "relay").is_some_and(|r| r.starts_with("alias.self.test")))
            .count();
        assert!(rounds <= 5, "{rounds} rounds:\n{}", server.log_text());
        let facts = read_dsn(&dsn);
        assert!(
            facts
                .iter()
                .any(|f| f.starts_with("rcpt rfc822; hal@self.test | failed | 5.4.6 |")),
            "{facts:#?}"
        );
    }
}

#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn an_mx_host_with_only_an_ipv6_address_is_reached_over_ipv6() {
    let port = std::net::TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .expect("IPv6 loopback")
        .port();
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=six.test,mx.six.test,10",
        "--host-record=mx.six.test,::1",
    ]));
    let peer =
        AioSmtpd::start(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "ivan@six.test";
        send(&server, &[to], "", &message(to, "six"));
        let got = peer.wait_for(i + 1, WAIT).unwrap();
        assert_eq!(got.len(), i + 1, "{}", server.log_text());
        wait_queue_empty(&server);
        let delivered = server.wait_events("deliver", 1);
        assert!(
            delivered
                .iter()
                .any(|l| log_value(l, "relay").is_some_and(|r| r.starts_with("mx.six.test[::1]"))),
            "{}",
            server.log_text()
        );
    }
}

/// A 451 for one recipient defers only that one; the retry (1 s later)
/// delivers it, once; a 550 for another bounces at once.
#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn a_451_is_retried_and_a_550_bounced_per_recipient() {
    let port = port_on(&[2]);
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=mixed.test,mx.mixed.test,10",
        "--host-record=mx.mixed.test,127.0.0.2",
    ]));
    for binary in Binary::ALL {
        let later = "later@mixed.test";
        let never = "never@mixed.test";
        let now = "now@mixed.test";
        let peer =
            AioSmtpd::start_with(SocketAddr::from((lo(2), port)), &[never], &[later]).unwrap();
        let server = start(binary, &dns, port);
        send(&server, &[now, later, never], "", &message(now, "mixed"));
        let dsn = wait_bounce(&server);
        wait_queue_empty(&server);
        let got = peer.received().unwrap();
        let rcpts: Vec<&[String]> = got.iter().map(|m| m.rcpts.as_slice()).collect();
        assert_eq!(
            rcpts,
            [[format!("<{now}>")], [format!("<{later}>")]],
            "{}",
            server.log_text()
        );
        let defers = server.events("defer");
        assert_eq!(defers.len(), 1, "{}", server.log_text());
        assert_eq!(log_value(&defers[0], "to"), Some("<later@mixed.test>"));
        assert!(
            log_value(&defers[0], "reason").is_some_and(|r| r.starts_with("451 4.3.0")),
            "{}",
            defers[0]
        );
        let facts = read_dsn(&dsn);
        let rcpt: Vec<&String> = facts.iter().filter(|f| f.starts_with("rcpt ")).collect();
        assert_eq!(
            rcpt,
            [&format!(
                "rcpt rfc822; {never} | failed | 5.1.1 | dns; mx.mixed.test | smtp; \
                 550 5.1.1 <{never}>: no such user here"
            )],
            "{}: {facts:#?}",
            binary.name()
        );
    }
}

/// A listener that accepts connections and never says a word (a tarpit
/// or a hung server); the connections are held until it is dropped.
struct Silent {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start(addr: SocketAddr) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first MX accepts the connection but never greets: after
/// `delivery.timeout` (3 s) the attempt goes on to the next MX, which
/// takes the message in the same attempt (no retry needed).
#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn a_silent_first_mx_times_out_and_the_next_one_takes_the_mail() {
    let port = port_on(&[2, 3]);
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=slow.test,mx1.slow.test,10",
        "--mx-host=slow.test,mx2.slow.test,20",
        "--host-record=mx1.slow.test,127.0.0.2",
        "--host-record=mx2.slow.test,127.0.0.3",
    ]));
    let _mx1 = Silent::start(SocketAddr::from((lo(2), port)));
    let mx2 = AioSmtpd::start(SocketAddr::from((lo(3), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "kim@slow.test";
        let sent = Instant::now();
        send(&server, &[to], "", &message(to, "slow"));
        let got = mx2.wait_for(i + 1, WAIT).unwrap();
        assert_eq!(got.len(), i + 1, "{}", server.log_text());
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(10),
            "the greeting timeout, then mx2 at once: {took:?}\n{}",
            server.log_text()
        );
        wait_queue_empty(&server);
        assert!(server.events("defer").is_empty(), "{}", server.log_text());
        let mx1 = format!("mx1.slow.test[127.0.0.2:{port}]");
        assert!(
            server.events("connect-failed").iter().any(|l| {
                log_value(l, "relay") == Some(mx1.as_str())
                    && log_value(l, "reason").is_some_and(|r| r.contains("timeout"))
            }),
            "{}",
            server.log_text()
        );
    }
}

/// A server that greets and answers EHLO, then says `421` to the next
/// command and closes the connection (a server going down).
fn start_closing_peer(addr: SocketAddr) -> Silent {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind(addr).unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let _ = conn.write_all(b"220 mx1.closing.test ESMTP\r\n");
            let _ = reader.read_line(&mut line);
            let _ = conn.write_all(b"250 mx1.closing.test\r\n");
            line.clear();
            let _ = reader.read_line(&mut line);
            let _ = conn.write_all(b"421 4.3.2 mx1.closing.test going down\r\n");
        }
    });
    Silent {
        stop,
        thread: Some(thread),
    }
}

/// Every host skipped must be logged with its reason, as connection
/// failures are (`event=connect-failed`): here the first MX's 421 after
/// EHLO, when the second MX then takes the message.
#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn a_host_skipped_after_ehlo_is_logged() {
    let port = port_on(&[2, 3]);
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=closing.test,mx1.closing.test,10",
        "--mx-host=closing.test,mx2.closing.test,20",
        "--host-record=mx1.closing.test,127.0.0.2",
        "--host-record=mx2.closing.test,127.0.0.3",
    ]));
    let _mx1 = start_closing_peer(SocketAddr::from((lo(2), port)));
    let mx2 = AioSmtpd::start(SocketAddr::from((lo(3), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "lee@closing.test";
        send(&server, &[to], "", &message(to, "closing"));
        assert_eq!(mx2.wait_for(i + 1, WAIT).unwrap().len(), i + 1);
        wait_queue_empty(&server);
        assert!(
            server
                .log_lines()
                .iter()
                .any(|l| l.contains("mx1.closing.test[127.0.0.2")
                    && l.contains("421")
                    && !l.contains("event=deliver")),
            "{}: no log line says why mx1 was skipped:\n{}",
            binary.name(),
            server.log_text()
        );
    }
}

#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn the_lowest_preference_gets_the_mail_when_every_mx_is_up() {
    let port = port_on(&[2, 3]);
    // The preferred host is listed second, and has the higher address.
    let dns = Dnsmasq::start(&records(&[
        "--mx-host=pref.test,mx20.pref.test,20",
        "--mx-host=pref.test,mx5.pref.test,5",
        "--host-record=mx20.pref.test,127.0.0.2",
        "--host-record=mx5.pref.test,127.0.0.3",
    ]));
    let mx20 = AioSmtpd::start(SocketAddr::from((lo(2), port)), &[]).unwrap();
    let mx5 = AioSmtpd::start(SocketAddr::from((lo(3), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        for n in 0..2 {
            let to = format!("user{n}@pref.test");
            send(&server, &[&to], "", &message(&to, "preference"));
        }
        let got = mx5.wait_for(2 * (i + 1), WAIT).unwrap();
        assert_eq!(got.len(), 2 * (i + 1), "{}", server.log_text());
        wait_queue_empty(&server);
        assert!(mx20.received().unwrap().is_empty(), "{}", server.log_text());
        assert!(
            server.events("connect-failed").is_empty(),
            "{}",
            server.log_text()
        );
    }
}

#[test]
#[ignore = "needs dnsmasq and aiosmtpd; run by .ci/interop"]
fn a_domain_without_mx_gets_its_mail_at_its_address() {
    let port = port_on(&[2]);
    // RFC 5321 §5.1: no MX record, but an address: the implicit MX.
    let dns = Dnsmasq::start(&records(&["--host-record=implicit.test,127.0.0.2"]));
    let peer = AioSmtpd::start(SocketAddr::from((lo(2), port)), &[]).unwrap();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        let to = "dave@implicit.test";
        let mut body = message(to, "implicit");
        body.extend_from_slice("8-bit: Grüße \u{2603}\r\n".as_bytes());
        send(&server, &[to], " BODY=8BITMIME", &body);
        let got = peer.wait_for(i + 1, WAIT).unwrap();
        assert_eq!(got.len(), i + 1, "{}", server.log_text());
        assert_eq!(got[i].rcpts, [format!("<{to}>")]);
        // aiosmtpd announces 8BITMIME: the body type is passed on.
        assert!(
            got[i].options.iter().any(|o| o == "BODY=8BITMIME"),
            "{:?}",
            got[i].options
        );
        assert!(got[i].data.ends_with(&body));
        wait_queue_empty(&server);
        let delivered = server.wait_events("deliver", 1);
        assert!(
            delivered
                .iter()
                .any(|l| log_value(l, "relay")
                    .is_some_and(|r| r.starts_with("implicit.test[127.0.0.2"))),
            "{}",
            server.log_text()
        );
    }
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn null_mx_mail_loop_nxdomain_and_no_address_bounce_at_once_with_a_dsn() {
    let port = port_on(&[2]);
    let dns = Dnsmasq::start(&records(&[
        // RFC 7505: one MX of preference 0 naming the root ("."), in
        // RFC 3597 form: preference 0x0000, then the empty name.
        "--dns-rr=nullmx.test,15,000000",
        // The only MX is this server's own name (setup.rs HOSTNAME).
        &format!("--mx-host=loop.test,{HOSTNAME},10"),
        &format!("--host-record={HOSTNAME},127.0.0.1"),
        // The only MX host has no address.
        "--mx-host=noaddr.test,ghost.noaddr.test,10",
        // nowhere.test: no record at all, NXDOMAIN (--local=/#/).
    ]));
    for binary in Binary::ALL {
        let server = start(binary, &dns, port);
        let rcpts = [
            "carol@nullmx.test",
            "dave@loop.test",
            "erin@nowhere.test",
            "frank@noaddr.test",
        ];
        let started = Instant::now();
        send(&server, &rcpts, "", &message(rcpts[0], "undeliverable"));
        let dsn = wait_bounce(&server);
        wait_queue_empty(&server);
        // Permanent answers: no retry, no connection anywhere.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            server.events("connect-failed").is_empty(),
            "{}",
            server.log_text()
        );
        assert!(server.events("defer").is_empty(), "{}", server.log_text());
        let bounces = server.wait_events("bounce", 4);
        for (rcpt, status) in [
            ("carol@nullmx.test", "5.1.10"),
            ("dave@loop.test", "5.4.6"),
            ("erin@nowhere.test", "5.1.2"),
            ("frank@noaddr.test", "5.4.4"),
        ] {
            assert!(
                bounces
                    .iter()
                    .any(|l| log_value(l, "to") == Some(format!("<{rcpt}>").as_str())
                        && log_value(l, "reason").is_some_and(|r| r.starts_with(status))),
                "{}: {rcpt} {status}\n{}",
                binary.name(),
                server.log_text()
            );
        }
        let facts = read_dsn(&dsn);
        let want_rcpts = [
            "rcpt rfc822; carol@nullmx.test | failed | 5.1.10 | None | None",
            "rcpt rfc822; dave@loop.test | failed | 5.4.6 | None | None",
            "rcpt rfc822; erin@nowhere.test | failed | 5.1.2 | None | None",
            "rcpt rfc822; frank@noaddr.test | failed | 5.4.4 | None | None",
        ];
        let got_rcpts: Vec<&str> = facts
            .iter()
            .filter(|f| f.starts_with("rcpt "))
            .map(String::as_str)
            .collect();
        assert_eq!(got_rcpts, want_rcpts, "{}: {facts:#?}", binary.name());
        assert!(facts.contains(&"type multipart/report delivery-status".to_owned()));
        assert!(facts.contains(&format!("to {ALICE}")), "{facts:#?}");
        assert!(facts.contains(&"subject undeliverable".to_owned()));
        let human = facts.iter().find(|f| f.starts_with("human ")).unwrap();
        for words in [
            "null MX",
            "lead back to this server",
            "does not exist",
            "no mail server of noaddr.test has an address",
        ] {
            assert!(human.contains(words), "{words}: {human}");
        }
    }
}

#[test]
#[ignore = "needs dnsmasq, Postfix and root; run by .ci/interop"]
fn postfix_receives_the_message_intact_and_its_refusals_are_bounced() {
    // Postfix announces SIZE 100000 (RFC 1870).
    let (port, dns, postfix) = postfix_mx("pf.test", &["carol"], &["message_size_limit = 100000"]);
    let mut seen = Vec::new();
    for binary in Binary::ALL {
        let server = start(binary, &dns, port);
        // An 8-bit body (UTF-8 and a Latin-1 octet), dot lines, a long
        // line: sent on with BODY=8BITMIME, which Postfix announces.
        let mut body = message("carol@pf.test", "intact");
        body.extend_from_slice("Grüße, ça va? \u{2603}\r\n".as_bytes());
        body.extend_from_slice(b"latin-1: \xe9t\xe9\r\n");
        body.extend_from_slice(&[b'x'; 900]);
        body.extend_from_slice(b"\r\n.\r\n..\r\nlast line\r\n");
        send(&server, &["carol@pf.test"], " BODY=8BITMIME", &body);
        wait_queue_empty(&server);
        let stored = wait_new_mail(&postfix, "carol", &mut seen);
        // Postfix stores the message with LF line ends, below its own
        // Return-Path, Delivered-To and Received headers, and hato's.
        assert!(
            stored.ends_with(&crlf_to_lf(&body)),
            "{}",
            String::from_utf8_lossy(&stored)
        );
        let text = String::from_utf8_lossy(&stored);
        assert!(
            text.starts_with("Return-Path: <alice@example.test>\n"),
            "{text}"
        );
        assert!(text.contains(&format!("from {HOSTNAME} (")), "{text}");
        let delivered = server.wait_events("deliver", 1);
        assert!(
            delivered.iter().any(|l| log_value(l, "relay")
                .is_some_and(|r| r.starts_with("mx.pf.test[127.0.0.4"))
                && log_value(l, "reply").is_some_and(|r| r.starts_with("250 2.0.0 Ok: queued as"))),
            "{}",
            server.log_text()
        );

        // An unknown user: Postfix refuses it at RCPT; carol still gets it.
        send(
            &server,
            &["nobody@pf.test", "carol@pf.test"],
            "",
            &message("nobody@pf.test", "refused"),
        );
        let dsn = wait_bounce(&server);
        wait_queue_empty(&server);
        let facts = read_dsn(&dsn);
        let want = "rcpt rfc822; nobody@pf.test | failed | 5.1.1 | dns; mx.pf.test | smtp; \
                    550 5.1.1 <nobody@pf.test>: Recipient address rejected: User unknown in \
                    virtual mailbox table";
        let got: Vec<&str> = facts
            .iter()
            .filter(|f| f.starts_with("rcpt "))
            .map(String::as_str)
            .collect();
        assert_eq!(got, [want], "{}: {facts:#?}", binary.name());
        assert!(facts.contains(&"subject refused".to_owned()), "{facts:#?}");
        let copy = wait_new_mail(&postfix, "carol", &mut seen);
        assert!(
            copy.ends_with(b"\nEnd.\n"),
            "carol has the refused one's copy"
        );

        // Too big for Postfix's limit: refused, and bounced as such.
        let mut big = message("carol@pf.test", "too-big");
        for _ in 0..2000 {
            big.extend_from_slice(&[b'y'; 78]);
            big.extend_from_slice(b"\r\n");
        }
        send(&server, &["carol@pf.test"], "", &big);
        let dsn = wait_bounce_about(&server, "too-big");
        wait_queue_empty(&server);
        let facts = read_dsn(&dsn);
        let rcpt: Vec<&String> = facts.iter().filter(|f| f.starts_with("rcpt ")).collect();
        assert_eq!(rcpt.len(), 1, "{facts:#?}");
        assert!(
            rcpt[0].starts_with("rcpt rfc822; carol@pf.test | failed | 5.3.4 |"),
            "{}: {facts:#?}\n{}",
            binary.name(),
            server.log_text()
        );
        assert_eq!(postfix.delivered("carol").len(), seen.len(), "not sent");
    }
}

/// Waits for the bounce in alice's Maildir about the message whose
/// Subject is `subject`; returns its bytes.
fn wait_bounce_about(server: &Server, subject: &str) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let want = format!("Subject: {subject}");
    loop {
        for f in server.data().delivered(ALICE).unwrap() {
            let bytes = std::fs::read(&f).unwrap();
            if String::from_utf8_lossy(&bytes).contains(&want) {
                return bytes;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: no bounce about {subject}\n{}",
            server.binary().name(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Postfix's own 4xx: a client over its message rate gets `450 4.7.1`
/// at MAIL FROM; the message is deferred and retried (1 s apart, on the
/// parked connection, where Postfix slows its replies down as the
/// session's errors add up) until Postfix's rate window has passed, then
/// delivered, once.
#[test]
#[ignore = "needs dnsmasq, Postfix and root; run by .ci/interop"]
fn postfix_rate_limit_4xx_is_retried_until_accepted() {
    let (port, dns, postfix) = postfix_mx(
        "pf.test",
        &["carol", "dave"],
        &[
            "smtpd_client_message_rate_limit = 1",
            "anvil_rate_time_unit = 2s",
            "smtpd_client_event_limit_exceptions =",
        ],
    );
    let mut seen = Vec::new();
    for (i, binary) in Binary::ALL.into_iter().enumerate() {
        let server = start(binary, &dns, port);
        send(
            &server,
            &["carol@pf.test"],
            "",
            &message("carol@pf.test", "first"),
        );
        send(
            &server,
            &["dave@pf.test"],
            "",
            &message("dave@pf.test", "second"),
        );
        let first = wait_new_mail(&postfix, "carol", &mut seen);
        assert!(String::from_utf8_lossy(&first).contains("Subject: first"));
        let second = wait_new_mail(&postfix, "dave", &mut seen);
        assert!(String::from_utf8_lossy(&second).contains("Subject: second"));
        wait_queue_empty(&server);
        let defers = server.events("defer");
        assert!(
            !defers.is_empty()
                && defers.iter().all(|l| {
                    log_value(l, "reason").is_some_and(|r| r.starts_with("450 4.7.1"))
                }),
            "{}\n{}",
            server.log_text(),
            postfix.log()
        );
        assert!(server.events("bounce").is_empty(), "{}", server.log_text());
        for local in ["carol", "dave"] {
            assert_eq!(postfix.delivered(local).len(), i + 1, "{local}: once");
        }
    }
}

/// An SMTPUTF8 message (RFC 6531) to a UTF-8 address, and Postfix
/// announces SMTPUTF8: the message must go on with SMTPUTF8 declared
/// (Postfix's `Received:` then says `with UTF8SMTP`, RFC 6531 §4.3), or,
/// if hato cannot do that, bounce with 5.6.7 (RFC 6531 §3.2); never go on
/// undeclared.
#[test]
#[ignore = "needs dnsmasq and Postfix; run by .ci/interop"]
fn an_smtputf8_message_is_not_sent_on_undeclared() {
    let (port, dns, postfix) = postfix_mx("pf.test", &["jörg"], &["smtputf8_enable = yes"]);
    let mut seen = Vec::new();
    for binary in Binary::ALL {
        let server = start(binary, &dns, port);
        let to = "jörg@pf.test";
        send(&server, &[to], " SMTPUTF8", &message(to, "utf8"));
        wait_queue_empty(&server);
        let bounced = server
            .events("bounce")
            .iter()
            .any(|l| log_value(l, "reason").is_some_and(|r| r.starts_with("5.6.7")));
        if !bounced {
            let copy = wait_new_mail(&postfix, "jörg", &mut seen);
            let text = String::from_utf8_lossy(&copy).into_owned();
            assert!(
                text.contains("with UTF8SMTP"),
                "{}: sent on without SMTPUTF8:\n{text}",
                binary.name()
            );
        }
    }
}

/// A private Postfix on 127.0.0.4 as the one MX host of `domain`
/// (`mx.<domain>`, served by a dnsmasq of its own), with Maildirs for
/// `mailboxes` and the extra `main.cf` lines `settings`; returns the port
/// it listens on (hato's `delivery.smtp_port`), the DNS server and Postfix.
fn postfix_mx(domain: &str, mailboxes: &[&str], settings: &[&str]) -> (u16, Dnsmasq, Postfix) {
    let port = port_on(&[4]);
    let dns = Dnsmasq::start(&[
        format!("--mx-host={domain},mx.{domain},10"),
        format!("--host-record=mx.{domain},127.0.0.4"),
    ]);
    let postfix =
        Postfix::start_with(SocketAddr::from((lo(4), port)), domain, mailboxes, settings).unwrap();
    (port, dns, postfix)
}

/// Waits for a message in `local`'s Maildir at `postfix` that is not in
/// `seen`; adds it there and returns its bytes.
fn wait_new_mail(postfix: &Postfix, local: &str, seen: &mut Vec<std::path::PathBuf>) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        let files = postfix.delivered(local);
        if let Some(new) = files.iter().find(|f| !seen.contains(f)) {
            seen.push(new.clone());
            return std::fs::read(new).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "nothing new for {local}; Postfix's log:\n{}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Outbound STARTTLS against a real Postfix with a certificate (made by
/// `openssl req` for the test): the message goes over TLS (Postfix's
/// `Received:` says `ESMTPS`, hato's log `tls=TLSv1_...`).
#[test]
#[ignore = "needs dnsmasq, Postfix and openssl; run by .ci/interop"]
fn postfix_with_a_certificate_gets_the_mail_over_starttls() {
    let certs = std::env::temp_dir().join(format!("hato-pf-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=mx.tls.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let cert_line = format!("smtpd_tls_cert_file = {}", cert.display());
    let key_line = format!("smtpd_tls_key_file = {}", key.display());
    let (port, dns, postfix) = postfix_mx(
        "tls.test",
        &["dana"],
        &[&cert_line, &key_line, "smtpd_tls_security_level = may"],
    );
    let mut seen = Vec::new();
    for binary in Binary::ALL {
        let server = start(binary, &dns, port);
        send(
            &server,
            &["dana@tls.test"],
            "",
            &message("dana@tls.test", "tls"),
        );
        wait_queue_empty(&server);
        let stored = wait_new_mail(&postfix, "dana", &mut seen);
        let text = String::from_utf8_lossy(&stored);
        assert!(
            text.contains("with ESMTPS"),
            "{}: not over TLS:\n{text}\n{}",
            binary.name(),
            postfix.log()
        );
        let deliver = server.wait_events("deliver", 1);
        assert!(
            log_value(&deliver[0], "tls").is_some_and(|v| v.starts_with("TLSv1_")),
            "{deliver:?}"
        );
        assert!(server.events("tls-failed").is_empty());
    }
    let _ = std::fs::remove_dir_all(&certs);
}
