//! Remote delivery end to end, for `hato` and `hato-smol`: a trusted
//! client queues mail for other domains, and the server delivers it over
//! real loopback sockets to a scripted receiver ([`Sink`]) named by
//! `delivery.smarthost` or a `[routes]` entry (the MX cases, which need a
//! DNS server, are in `remote_mx.rs`, run by `.ci/interop` with dnsmasq).
//!
//! Covered: the message arrives byte for byte (dot-stuffing both ways);
//! a 4xx is retried until it succeeds; a 5xx fails only its recipient and
//! the bounce lands in the local sender's Maildir, where Python's `email`
//! package reads it as an RFC 3464 report naming the server's reply; a
//! silent peer hits the timeout and the message is retried; a peer that
//! drops the connection in the middle of DATA leaves the message queued,
//! and it arrives once on the retry; a message with too many `Received:`
//! headers is a loop and bounces; routes beat the smarthost; an idle
//! connection is reused for the next message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};
use hato_spec_tests::sink::{Plan, Sink};

const ALICE: &str = "alice@example.test";
const CAROL: &str = "carol@partner.test";
const DAVE: &str = "dave@partner.test";

/// How long a delivery may take (retries are 1 s apart here).
const WAIT: Duration = Duration::from_secs(20);

/// Starts `binary` with the smarthost `sink`, retries 1 s apart and a
/// 2 s cap on every wait, plus `extra` settings.
fn start(binary: Binary, sink: &Sink, extra: &[(&str, &str)]) -> Server {
    let mut o: Vec<(String, String)> = vec![
        ("delivery.smarthost".into(), format!("\"{}\"", sink.addr)),
        ("delivery.retry".into(), "[\"1s\"]".into()),
        ("delivery.timeout".into(), "\"2s\"".into()),
    ];
    o.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Server::start_with(binary, DataDir::new("remote").unwrap(), &o).unwrap()
}

/// Queues `message` from `from` to `to` through the SMTP listener (the
/// test client is on loopback: trusted, may relay).
fn send(server: &Server, from: &str, to: &[&str], message: &str) -> String {
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("client.example").unwrap();
    let reply = c.send_mail(from, to, message.as_bytes()).unwrap();
    c.quit().unwrap();
    reply.queue_id().unwrap().to_owned()
}

fn message(subject: &str) -> String {
    format!(
        "From: Alice <{ALICE}>\r\nTo: {CAROL}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nHello.\r\n.a line that starts with a dot\r\n..two dots\r\nEnd.\r\n"
    )
}

/// Waits until `queue/` is empty (every message finished).
fn wait_queue_empty(server: &Server) {
    server.wait_queue_empty(WAIT);
}

/// Waits for the first file in `address`'s Maildir; returns its bytes.
fn wait_mail(server: &Server, address: &str) -> Vec<u8> {
    server.wait_first_mail(address, WAIT)
}

/// Reads a DSN with Python's email package; prints one fact a line.
const DSN_SCRIPT: &str = r#"
import email, email.policy, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
print("type", msg.get_content_type(), msg.get_param("report-type"))
print("return-path", msg["Return-Path"])
parts = msg.get_payload()
blocks = parts[1].get_payload()
for b in blocks[1:]:
    print("rcpt", b["Final-Recipient"], "|", b["Action"], "|", b["Status"], "|",
          b["Remote-MTA"], "|", " ".join(str(b["Diagnostic-Code"]).split()))
print("subject", email.message_from_bytes(parts[2].get_payload(decode=True))["Subject"])
"#;

fn read_dsn(bytes: &[u8]) -> String {
    // One file per call: tests run in parallel in this process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("hato-remote-dsn-{}-{call}.eml", std::process::id(),));
    std::fs::write(&path, bytes).unwrap();
    let out = run_python(DSN_SCRIPT, &[path.to_str().unwrap()], WAIT).unwrap();
    let _ = std::fs::remove_file(&path);
    out.stdout
}

#[test]
fn delivers_through_the_smarthost_byte_for_byte() {
    for binary in Binary::ALL {
        let sink = Sink::start(Vec::new()).unwrap();
        let server = start(binary, &sink, &[]);
        let body = message("smarthost");
        send(&server, ALICE, &[CAROL, DAVE, "bob@example.test"], &body);
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        assert_eq!(got[0].from, format!("<{ALICE}>"));
        assert_eq!(got[0].rcpts, [format!("<{CAROL}>"), format!("<{DAVE}>")]);
        let data = String::from_utf8(got[0].data.clone()).unwrap();
        assert!(data.starts_with("Received: from client.example"), "{data}");
        assert!(data.ends_with(&body), "{data}");
        wait_mail(&server, "bob@example.test");
        wait_queue_empty(&server);
        let delivered = server.wait_events("deliver", 3);
        let remote: Vec<&String> = delivered
            .iter()
            .filter(|l| log_value(l, "relay").is_some())
            .collect();
        assert_eq!(remote.len(), 2, "{delivered:?}");
        assert!(
            log_value(remote[0], "reply").is_some_and(|r| r.starts_with("250")),
            "{remote:?}"
        );
    }
}

#[test]
fn a_4xx_is_retried_until_it_succeeds() {
    for binary in Binary::ALL {
        let plan = Plan::RefuseRcpt("carol".into(), "451 4.3.0 try again later".into());
        let sink = Sink::start(vec![plan]).unwrap();
        let server = start(binary, &sink, &[]);
        send(&server, ALICE, &[CAROL], &message("retry"));
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        wait_queue_empty(&server);
        assert!(sink.connections() >= 2);
        let defer = server.wait_events("defer", 1);
        assert!(
            log_value(&defer[0], "reason").is_some_and(|r| r.contains("451 4.3.0 try again later")),
            "{defer:?}"
        );
        assert!(server.events("bounce").is_empty());
        assert!(
            server.data().delivered(ALICE).unwrap().is_empty(),
            "no report for a delay"
        );
    }
}

#[test]
fn a_5xx_bounces_to_the_local_sender_as_a_dsn() {
    for binary in Binary::ALL {
        let plan = Plan::RefuseRcpt(
            "dave".into(),
            "550 5.1.1 <dave@partner.test>: no such user".into(),
        );
        let sink = Sink::start(vec![plan]).unwrap();
        let server = start(binary, &sink, &[]);
        send(&server, ALICE, &[CAROL, DAVE], &message("bounce-me"));
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rcpts, [format!("<{CAROL}>")], "only carol got it");
        let dsn = wait_mail(&server, ALICE);
        let facts = read_dsn(&dsn);
        assert!(
            facts.contains("type multipart/report delivery-status"),
            "{facts}"
        );
        assert!(facts.contains("return-path <>"), "{facts}");
        assert!(
            facts.contains(
                "rcpt rfc822; dave@partner.test | failed | 5.1.1 | dns; 127.0.0.1 | smtp; 550 5.1.1 <dave@partner.test>: no such user"
            ),
            "{facts}"
        );
        assert!(!facts.contains("carol"), "carol was delivered: {facts}");
        assert!(facts.contains("subject bounce-me"), "{facts}");
        wait_queue_empty(&server);
        assert_eq!(server.wait_events("bounce", 1).len(), 1);
        assert_eq!(server.wait_events("report", 1).len(), 1);
    }
}

#[test]
fn a_silent_peer_times_out_and_the_message_is_retried() {
    for binary in Binary::ALL {
        let sink = Sink::start(vec![Plan::Silent]).unwrap();
        let server = start(binary, &sink, &[]);
        send(&server, ALICE, &[CAROL], &message("slow"));
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        let defer = server.wait_events("defer", 1);
        assert!(
            log_value(&defer[0], "reason").is_some_and(|r| r.contains("timeout")),
            "{defer:?}"
        );
        wait_queue_empty(&server);
    }
}

#[test]
fn a_drop_in_the_middle_of_data_keeps_the_message_and_retries() {
    for binary in Binary::ALL {
        let sink = Sink::start(vec![Plan::DropInData]).unwrap();
        let server = start(binary, &sink, &[]);
        send(&server, ALICE, &[CAROL], &message("dropped"));
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        wait_queue_empty(&server);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sink.got().len(), 1, "exactly one complete copy");
        assert!(!server.events("defer").is_empty());
    }
}

#[test]
fn a_message_with_too_many_received_headers_is_a_loop_and_bounces() {
    for binary in Binary::ALL {
        let sink = Sink::start(Vec::new()).unwrap();
        let server = start(binary, &sink, &[("delivery.max_hops", "5")]);
        let hops: String = (0..5)
            .map(|i| format!("Received: from hop{i}.example by hop{}.example; Tue, 24 Nov 2026 10:00:0{i} +0000\r\n", i + 1))
            .collect();
        send(
            &server,
            ALICE,
            &[CAROL],
            &format!("{hops}{}", message("loop")),
        );
        let dsn = wait_mail(&server, ALICE);
        let facts = read_dsn(&dsn);
        assert!(facts.contains("| failed | 5.4.6 |"), "{facts}");
        wait_queue_empty(&server);
        assert!(sink.got().is_empty());
    }
}

#[test]
fn routes_beat_the_smarthost_and_connections_are_reused() {
    for binary in Binary::ALL {
        let smarthost = Sink::start(Vec::new()).unwrap();
        let partner = Sink::start(Vec::new()).unwrap();
        let route = format!("\"partner.test\" = \"{}\"", partner.addr);
        let server = start(binary, &smarthost, &[("routes", &route)]);
        send(
            &server,
            ALICE,
            &[CAROL, "erin@elsewhere.test"],
            &message("routes"),
        );
        assert_eq!(partner.wait_for(1, WAIT)[0].rcpts, [format!("<{CAROL}>")]);
        assert_eq!(
            smarthost.wait_for(1, WAIT)[0].rcpts,
            ["<erin@elsewhere.test>".to_owned()]
        );
        wait_queue_empty(&server);
        // The next message to the same destination, within the idle time,
        // goes over the connection already open.
        send(&server, ALICE, &[CAROL], &message("reuse"));
        assert_eq!(partner.wait_for(2, WAIT).len(), 2);
        assert_eq!(partner.connections(), 1, "{}", server.log_text());
    }
}

#[test]
fn after_a_crash_a_delivered_remote_recipient_is_not_sent_again() {
    for binary in Binary::ALL {
        let partner = Sink::start(Vec::new()).unwrap();
        let route = format!("\"partner.test\" = \"{}\"", partner.addr);
        let closed = [
            ("delivery.smarthost", "\"127.0.0.1:9\""),
            ("delivery.retry", "[\"1s\"]"),
            ("delivery.timeout", "\"2s\""),
        ];
        let own = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut first = own(&closed);
        first.push(("routes".into(), route.clone()));
        let data = DataDir::new("remote-crash").unwrap();
        let mut server = Server::start_with(binary, data.clone(), &first).unwrap();
        send(
            &server,
            ALICE,
            &[CAROL, "erin@other.test"],
            &message("crash"),
        );
        assert_eq!(partner.wait_for(1, WAIT).len(), 1);
        assert!(!server.wait_events("defer", 1).is_empty(), "erin waits");
        server.kill().unwrap();

        // Restarted with a reachable smarthost: only erin is sent.
        let other = Sink::start(Vec::new()).unwrap();
        let mut second = own(&[
            ("delivery.retry", "[\"1s\"]"),
            ("delivery.timeout", "\"2s\""),
        ]);
        second.push(("delivery.smarthost".into(), format!("\"{}\"", other.addr)));
        second.push(("routes".into(), route.clone()));
        let server = Server::start_with(binary, data, &second).unwrap();
        let got = other.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        assert_eq!(got[0].rcpts, ["<erin@other.test>".to_owned()]);
        wait_queue_empty(&server);
        assert_eq!(partner.got().len(), 1, "carol got it once");
        assert_eq!(partner.connections(), 1);
    }
}

#[test]
fn a_long_delay_warns_the_sender_once_then_the_message_arrives() {
    for binary in Binary::ALL {
        let later = Plan::RefuseRcpt("carol".into(), "451 4.7.1 greylisted".into());
        let sink = Sink::start(vec![later; 4]).unwrap();
        let server = start(binary, &sink, &[("delivery.delay_warning", "\"1s\"")]);
        send(&server, ALICE, &[CAROL], &message("delayed"));
        let warning = wait_mail(&server, ALICE);
        let facts = read_dsn(&warning);
        assert!(
            facts.contains("rcpt rfc822; carol@partner.test | delayed | 4.4.7"),
            "{facts}"
        );
        assert_eq!(sink.wait_for(1, WAIT).len(), 1, "{}", server.log_text());
        wait_queue_empty(&server);
        assert_eq!(
            server.data().delivered(ALICE).unwrap().len(),
            1,
            "one warning, and no failure report"
        );
        let reports = server.events("report");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(log_value(&reports[0], "kind"), Some("delay"));
    }
}

#[test]
fn queue_bounce_waits_for_the_attempt_in_flight() {
    for binary in Binary::ALL {
        let sink = Sink::start(vec![Plan::Silent]).unwrap();
        let server = start(binary, &sink, &[("delivery.timeout", "\"3s\"")]);
        let id = send(&server, ALICE, &[CAROL], &message("in-flight"));
        let deadline = Instant::now() + WAIT;
        while sink.connections() == 0 {
            assert!(Instant::now() < deadline, "no attempt started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = std::process::Command::new(binary.path().unwrap())
            .args(["queue", "bounce", &id, "--config"])
            .arg(server.data().path().join("hato.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // The bounce ran only after the attempt ended (its defer is logged
        // first), so carol is failed by the administrator, not delivered.
        let log = server.log_text();
        let defer = log.find("event=defer").expect("the attempt ended");
        let bounce = log.find("event=queue-bounce").expect("bounced");
        assert!(defer < bounce, "{log}");
        let facts = read_dsn(&wait_mail(&server, ALICE));
        assert!(
            facts.contains("rcpt rfc822; carol@partner.test | failed"),
            "{facts}"
        );
        wait_queue_empty(&server);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(sink.got().is_empty(), "never delivered after the bounce");
    }
}

#[test]
fn mail_to_another_hato_goes_over_starttls() {
    for binary in Binary::ALL {
        // B receives for example.test (the test users alice and bob).
        let receiver =
            Server::start_with(binary, DataDir::new("remote-tls-b").unwrap(), &[]).unwrap();
        let b = receiver.addr(ListenerKind::Smtp).unwrap();
        // A has other domains of its own, so example.test is remote to it.
        let sender = Server::start_with(
            binary,
            DataDir::new("remote-tls-a").unwrap(),
            &[
                (String::new(), "domains = [\"a.example\"]".into()),
                ("delivery.smarthost".into(), format!("\"{b}\"")),
                ("delivery.retry".into(), "[\"1s\"]".into()),
            ],
        )
        .unwrap();
        send(&sender, "carol@a.example", &[ALICE], &message("over-tls"));
        let got = wait_mail(&receiver, ALICE);
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("Subject: over-tls"), "{text}");
        assert!(
            text.contains("with ESMTPS"),
            "B's Received header says TLS: {text}"
        );
        wait_queue_empty(&sender);
        let deliver = sender.wait_events("deliver", 1);
        assert!(
            log_value(&deliver[0], "tls").is_some_and(|v| v.starts_with("TLSv1_")),
            "{deliver:?}"
        );
    }
}

#[test]
fn a_failed_starttls_falls_back_to_plaintext_and_is_logged() {
    for binary in Binary::ALL {
        let sink = Sink::start(vec![Plan::BrokenStartTls]).unwrap();
        let server = start(binary, &sink, &[]);
        send(&server, ALICE, &[CAROL], &message("tls-broken"));
        let got = sink.wait_for(1, WAIT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        assert_eq!(
            sink.connections(),
            2,
            "the same host again, in plaintext\n{}",
            server.log_text()
        );
        let failed = server.wait_events("tls-failed", 1);
        assert_eq!(failed.len(), 1, "{}", server.log_text());
        wait_queue_empty(&server);
        let deliver = server.wait_events("deliver", 1);
        assert_eq!(log_value(&deliver[0], "tls"), None, "{deliver:?}");
    }
}
