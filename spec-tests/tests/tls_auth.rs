//! STARTTLS, implicit TLS, SMTP AUTH and the submission rules against both
//! binaries over loopback TCP: Python's smtplib with `starttls()` and
//! `login()`, `SMTP_SSL` on the implicit-TLS listener, and a raw client
//! with the core's own TLS stream for the STARTTLS injection test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hato_core::policy::ListenerKind;
use hato_core::tls::{client_config, TimeProvider, TlsStream, TlsTime};
use hato_runtime_std::store::users;
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{log_value, parse_listening, Binary, DataDir, Server};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "s3cret pass";

/// `MODE PORT`: prints one tab-separated line per step.
const SCRIPT: &str = r#"
import smtplib, ssl, sys
mode, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
USER, PASSWORD = "alice@example.test", "s3cret pass"

def out(*a):
    print("\t".join(str(x) for x in a), flush=True)

def auth(s, mech, user, password):
    s.user, s.password = user, password
    try:
        code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()))
        return code
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code
    except smtplib.SMTPServerDisconnected:
        return "closed"

if mode == "starttls":
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("client.example")
    out("PLAIN-EHLO", s.has_extn("starttls"))
    out("MAIL-NOAUTH", s.mail(USER)[0])
    s.rset()
    s.starttls(context=ctx)
    s.ehlo("client.example")
    out("TLS-EHLO", s.has_extn("starttls"), s.esmtp_features.get("auth", "").strip())
    out("AUTH-WRONG", auth(s, "PLAIN", USER, "wrong"))
    out("AUTH-LOGIN", auth(s, "LOGIN", USER, PASSWORD))
    out("MAIL", s.mail(USER)[0])
    out("RCPT-RELAY", s.rcpt("carol@outside.example")[0])
    out("DATA", s.data(b"From: Alice <alice@example.test>\r\nTo: carol@outside.example\r\nSubject: hi\r\n\r\nhello\r\n")[0])
    out("MAIL-SPOOF", s.mail("bob@example.test")[0])
    s.rset()
    s.mail(USER)
    s.rcpt("bob@example.test")
    out("DATA-SPOOF", s.data(b"From: Bob <bob@example.test>\r\nSubject: x\r\n\r\nhi\r\n")[0])
    s.quit()
elif mode == "login":
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.starttls(context=ctx)
    s.login(USER, PASSWORD)
    refused = s.sendmail(USER, ["bob@example.test"], b"From: alice@example.test\r\nSubject: via login()\r\n\r\nhello bob\r\n")
    out("SENT", len(refused))
    s.quit()
elif mode == "noauth-relay":
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("client.example")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    out("MAIL", s.mail("someone@outside.example")[0])
    out("RCPT-RELAY", s.rcpt("carol@elsewhere.example")[0])
    s.quit()
elif mode == "guess":
    codes = []
    for i in range(3):
        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
        s.starttls(context=ctx)
        s.ehlo("client.example")
        codes.append(auth(s, "PLAIN", USER, "guess%d" % i))
        if codes[-1] != 535:
            continue
        codes.append(auth(s, "PLAIN", USER, PASSWORD))
        try:
            s.quit()
        except Exception:
            pass
    out("CODES", ",".join(str(c) for c in codes))
elif mode == "implicit":
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=20)
    s.ehlo("client.example")
    out("EHLO", s.has_extn("starttls"), s.esmtp_features.get("auth", "").strip())
    s.login(USER, PASSWORD)
    refused = s.sendmail(USER, ["bob@example.test"], b"From: alice@example.test\r\nSubject: over 465\r\n\r\nhello\r\n")
    out("SENT", len(refused))
    s.quit()
"#;

/// Starts `binary` with alice's password set and an implicit-TLS listener;
/// returns the server and its submissions address.
fn start(binary: Binary, label: &str, extra: &[(&str, &str)]) -> (Server, SocketAddr) {
    let data = DataDir::new(label).unwrap();
    users::set_password(data.path(), "alice@example.test", Some(PASSWORD)).unwrap();
    let mut overrides = vec![(
        "listen.submissions".to_owned(),
        r#"["127.0.0.1:0"]"#.to_owned(),
    )];
    overrides.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let server = Server::start_with(binary, data, &overrides).unwrap();
    let lines = server.wait_events("listening", 3);
    let submissions = lines
        .iter()
        .filter_map(|l| parse_listening(l))
        .find(|(k, _)| *k == ListenerKind::Submissions)
        .map(|(_, a)| a)
        .unwrap_or_else(|| panic!("no submissions listener:\n{}", server.log_text()));
    (server, submissions)
}

fn python(mode: &str, addr: SocketAddr, server: &Server) -> Vec<Vec<String>> {
    let port = addr.port().to_string();
    let out = run_python(SCRIPT, &[mode, &port], SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- server log ---\n{}", server.log_text()));
    out.stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn step<'a>(lines: &'a [Vec<String>], name: &str) -> &'a [String] {
    lines
        .iter()
        .find(|l| l[0] == name)
        .map(|l| &l[1..])
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

fn submission_with_smtplib(binary: Binary) {
    let (server, _) = start(binary, "tls-smtplib", &[]);
    let sub = server.addr(ListenerKind::Submission).unwrap();
    let out = python("starttls", sub, &server);
    assert_eq!(step(&out, "PLAIN-EHLO"), ["True"]);
    assert_eq!(step(&out, "MAIL-NOAUTH"), ["530"]);
    assert_eq!(step(&out, "TLS-EHLO"), ["False", "PLAIN LOGIN"]);
    assert_eq!(step(&out, "AUTH-WRONG"), ["535"]);
    assert_eq!(step(&out, "AUTH-LOGIN"), ["235"]);
    assert_eq!(step(&out, "MAIL"), ["250"]);
    assert_eq!(step(&out, "RCPT-RELAY"), ["250"], "authenticated relay");
    assert_eq!(step(&out, "DATA"), ["250"]);
    assert_eq!(step(&out, "MAIL-SPOOF"), ["553"]);
    assert_eq!(step(&out, "DATA-SPOOF"), ["553"]);
    let auth = server.wait_events("auth", 1);
    assert_eq!(log_value(&auth[0], "user"), Some("alice@example.test"));
    assert!(!server
        .wait_refusals("user alice@example.test may not send as", 2)
        .is_empty());
    assert_eq!(server.wait_events("tls", 1).len(), 1);

    // login() then sendmail(): delivered, with Message-ID and Date added.
    let out = python("login", sub, &server);
    assert_eq!(step(&out, "SENT"), ["0"]);
    let data = server.data();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let files = loop {
        let files = data.delivered("bob@example.test").unwrap();
        if !files.is_empty() || std::time::Instant::now() > deadline {
            break files;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("\nMessage-ID: <"), "{text}");
    assert!(text.contains("\nDate: "), "{text}");
    assert!(text.contains("Subject: via login()"), "{text}");

    // Without AUTH, even inside TLS, no relay (not from loopback's trust
    // on the smtp listener here: submission requires AUTH before MAIL).
    let out = python("noauth-relay", sub, &server);
    assert_eq!(step(&out, "MAIL"), ["530"]);
}

#[test]
fn smtplib_starttls_login_relay_and_spoofing_hato() {
    submission_with_smtplib(Binary::Hato);
}

#[test]
fn smtplib_starttls_login_relay_and_spoofing_hato_smol() {
    submission_with_smtplib(Binary::HatoSmol);
}

fn port_25_does_not_relay_without_auth(binary: Binary) {
    // No trusted networks: loopback is an ordinary client here.
    let (server, _) = start(binary, "tls-norelay", &[("relay.trusted_networks", "[]")]);
    let smtp = server.addr(ListenerKind::Smtp).unwrap();
    let out = python("noauth-relay", smtp, &server);
    assert_eq!(step(&out, "MAIL"), ["250"]);
    assert_eq!(step(&out, "RCPT-RELAY"), ["550"]);
}

#[test]
fn port_25_does_not_relay_without_auth_hato() {
    port_25_does_not_relay_without_auth(Binary::Hato);
}

#[test]
fn port_25_does_not_relay_without_auth_hato_smol() {
    port_25_does_not_relay_without_auth(Binary::HatoSmol);
}

fn failed_logins_trip_the_limit(binary: Binary) {
    let (server, _) = start(
        binary,
        "tls-guess",
        &[("limits.auth_failures", "\"2/10m\"")],
    );
    let sub = server.addr(ListenerKind::Submission).unwrap();
    let out = python("guess", sub, &server);
    // Two wrong guesses, then even the right password is refused (421),
    // on this connection and the next.
    let codes = &step(&out, "CODES")[0];
    assert_eq!(codes, "535,235,535,421,421", "{}", server.log_text());
    assert!(!server
        .wait_refusals("too many failed authentications", 1)
        .is_empty());
}

#[test]
fn failed_logins_trip_the_limit_hato() {
    failed_logins_trip_the_limit(Binary::Hato);
}

#[test]
fn failed_logins_trip_the_limit_hato_smol() {
    failed_logins_trip_the_limit(Binary::HatoSmol);
}

fn implicit_tls(binary: Binary) {
    let (server, submissions) = start(binary, "tls-implicit", &[]);
    let out = python("implicit", submissions, &server);
    assert_eq!(step(&out, "EHLO"), ["False", "PLAIN LOGIN"]);
    assert_eq!(step(&out, "SENT"), ["0"]);
    // Plaintext on the implicit-TLS port is a failed handshake, logged.
    let mut raw = TcpStream::connect(submissions).unwrap();
    raw.write_all(b"EHLO plain.example\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "a TLS alert or nothing: {:?}",
        &buf[..n]
    );
    assert!(!server.wait_events("tls-failed", 1).is_empty());
}

#[test]
fn implicit_tls_on_the_submissions_listener_hato() {
    implicit_tls(Binary::Hato);
}

#[test]
fn implicit_tls_on_the_submissions_listener_hato_smol() {
    implicit_tls(Binary::HatoSmol);
}

#[derive(Debug)]
struct Clock;

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<TlsTime> {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(TlsTime::since_unix_epoch(d))
    }
}

/// Reads one reply line in plaintext.
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = stream.read(&mut byte).unwrap();
        assert!(n == 1, "closed after {line:?}");
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

/// Moves ciphertext until the handshake is done; returns plaintext that
/// arrived with it.
fn handshake(stream: &mut TcpStream, tls: &mut TlsStream) -> Vec<u8> {
    let mut plain = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !tls.is_established() {
        let mut wire = Vec::new();
        tls.poll_ciphertext(&mut wire);
        stream.write_all(&wire).unwrap();
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed during the handshake");
        tls.read_ciphertext(&buf[..n], &mut plain).unwrap();
    }
    let mut wire = Vec::new();
    tls.poll_ciphertext(&mut wire);
    stream.write_all(&wire).unwrap();
    plain
}

/// Reads plaintext through TLS for `wait`.
fn read_tls(stream: &mut TcpStream, tls: &mut TlsStream, wait: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut plain = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tls.read_ciphertext(&buf[..n], &mut plain).unwrap(),
            Err(_) => break,
        }
        if plain.ends_with(b"\r\n") && plain.windows(4).any(|w| w.starts_with(b"250 ")) {
            break;
        }
    }
    plain
}

fn starttls_injection(binary: Binary) {
    let (server, _) = start(binary, "tls-inject", &[("limits.greet_pause", "\"0s\"")]);
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(read_line(&mut stream).starts_with("220 "));
    stream.write_all(b"EHLO client.example\r\n").unwrap();
    loop {
        let line = read_line(&mut stream);
        if line.starts_with("250 ") {
            break;
        }
    }
    // One write: STARTTLS and a command behind it.
    stream.write_all(b"STARTTLS\r\nRSET\r\n").unwrap();
    assert_eq!(read_line(&mut stream), "220 2.0.0 Ready to start TLS\r\n");
    let cfg = client_config(Arc::new(Clock)).unwrap();
    let mut tls = TlsStream::client(cfg, "mail.example.test").unwrap();
    let early = handshake(&mut stream, &mut tls);
    assert!(early.is_empty(), "{}", String::from_utf8_lossy(&early));
    // The RSET must not be answered after the handshake.
    let stray = read_tls(&mut stream, &mut tls, Duration::from_millis(700));
    assert!(
        stray.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&stray)
    );
    tls.write_plaintext(b"EHLO client.example\r\n").unwrap();
    let mut wire = Vec::new();
    tls.poll_ciphertext(&mut wire);
    stream.write_all(&wire).unwrap();
    let reply = String::from_utf8(read_tls(&mut stream, &mut tls, Duration::from_secs(5))).unwrap();
    assert!(reply.starts_with("250-mail.example.test\r\n"), "{reply}");
    assert!(reply.contains("250-AUTH PLAIN LOGIN\r\n"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "{reply}");
    let discard = server.wait_events("discard", 1);
    assert_eq!(log_value(&discard[0], "bytes"), Some("6"), "{discard:?}");
}

#[test]
fn starttls_injection_is_not_executed_hato() {
    starttls_injection(Binary::Hato);
}

#[test]
fn starttls_injection_is_not_executed_hato_smol() {
    starttls_injection(Binary::HatoSmol);
}
