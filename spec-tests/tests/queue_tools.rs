//! The administrator's queue commands against a running server, for
//! `hato` and `hato-smol`: `queue list`, `queue show ID`, `queue delete
//! ID` (the message goes, the server keeps serving), `queue bounce ID`
//! (an RFC 3464 report lands in the local sender's Maildir, and Python's
//! `email` package reads it as one), `queue flush`, and `queue delete`
//! with the server stopped (the command then works on the files itself).
//!
//! Messages to a remote recipient stay queued (the test setup's smarthost
//! is a closed loopback port), which gives the commands something to act on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{Binary, DataDir, Server};

const BOB: &str = "bob@example.test";
const ALICE: &str = "alice@example.test";
const DAVE: &str = "dave@partner.example";

/// How long a delivery or report may take.
const WAIT: Duration = Duration::from_secs(10);

/// How long one command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `binary queue ARGS --config data/hato.toml`; returns (success,
/// stdout, stderr).
fn hato(binary: Binary, data: &DataDir, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(binary.path().unwrap())
        .args(args)
        .arg("--config")
        .arg(data.path().join("hato.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} {args:?} ran longer than {COMMAND_TIMEOUT:?}",
                binary.name()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(binary: Binary, data: &DataDir, args: &[&str]) -> String {
    let (success, stdout, stderr) = hato(binary, data, args);
    assert!(success, "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn send(server: &Server, to: &[&str], subject: &str) -> String {
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("client.example").unwrap();
    let message = format!(
        "From: Bob <{BOB}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nSECRET BODY of {subject}\r\n",
        to.join(", ")
    );
    let reply = c.send_mail(BOB, to, message.as_bytes()).unwrap();
    c.quit().unwrap();
    reply.queue_id().unwrap().to_owned()
}

/// Parses a delivered DSN with Python's `email` package; prints facts.
const DSN_SCRIPT: &str = r#"
import email, email.parser, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read())
print("return-path", msg["Return-Path"])
print("type", msg.get_content_type(), msg.get_param("report-type"))
print("subject", msg["Subject"])
parts = msg.get_payload()
print("parts", " ".join(p.get_content_type() for p in parts))
print("admin-reason", "deleted from the queue by the administrator" in parts[0].get_payload())
for b in parts[1].get_payload()[1:]:
    print("rcpt", b["Final-Recipient"], "|", b["Action"], "|", b["Status"])
headers = email.parser.HeaderParser().parsestr(parts[2].get_payload())
print("original-subject", headers["Subject"])
print("body-included", "SECRET BODY" in parts[2].get_payload())
"#;

fn python_facts(file: &Path) -> Vec<String> {
    let out = run_python(DSN_SCRIPT, &[file.to_str().unwrap()], COMMAND_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    out.stdout.lines().map(str::to_owned).collect()
}

fn queue_tools_against(binary: Binary) {
    let data = DataDir::new(&format!("queue-tools-{}", binary.name())).unwrap();
    let mut server = Server::start_with(binary, data.clone(), &[]).unwrap();

    let first = send(&server, &[DAVE], "first");
    let second = send(&server, &[ALICE, DAVE], "second");
    let third = send(&server, &[DAVE], "third");
    // alice's copy of the second message is delivered; dave's waits.
    server.wait_until("alice has the second message", WAIT, || {
        data.delivered(ALICE).unwrap().len() == 1
    });
    server.wait_until("alice is recorded", WAIT, || {
        std::fs::read_to_string(data.queue_dir().join(format!("{second}.done")))
            .is_ok_and(|t| t.lines().any(|l| l == "0"))
    });

    let list = ok(binary, &data, &["queue", "list"]);
    for id in [&first, &second, &third] {
        assert!(list.contains(id.as_str()), "{id} not in:\n{list}");
    }

    let show = ok(binary, &data, &["queue", "show", &second]);
    for needle in [
        format!("id:        {second}"),
        format!("from:      <{BOB}>"),
        format!("<{ALICE}>  local {ALICE}  delivered"),
        format!("<{DAVE}>  remote {DAVE}  waiting for remote delivery"),
        "  Subject: second".to_owned(),
    ] {
        assert!(show.contains(&needle), "{needle} not in:\n{show}");
    }
    assert!(!show.contains("SECRET BODY"));

    // delete, while the server runs.
    let out = ok(binary, &data, &["queue", "delete", &first]);
    assert_eq!(out.trim(), format!("deleted {first}"));
    assert!(!data.queue_dir().join(&first).exists());
    let logged = server.wait_events("queue-delete", 1);
    assert_eq!(logged.len(), 1);
    assert!(
        logged[0].contains(&format!("id={first} by=admin")),
        "{logged:?}"
    );
    let (success, _, stderr) = hato(binary, &data, &["queue", "delete", &first]);
    assert!(!success && stderr.contains("no message"), "{stderr}");
    // The server still serves.
    let fourth = send(&server, &[DAVE], "fourth");

    // bounce: the report lands in bob's Maildir.
    let out = ok(binary, &data, &["queue", "bounce", &second]);
    assert!(
        out.starts_with(&format!("bounced {second}: 1 recipients failed; report ")),
        "{out}"
    );
    assert!(!data.queue_dir().join(&second).exists());
    server.wait_until("bob has the report", WAIT, || {
        data.delivered(BOB).unwrap().len() == 1
    });
    let logged = server.wait_events("queue-bounce", 1);
    assert!(
        logged[0].contains(&format!("id={second} by=admin failed=1 dsn=")),
        "{logged:?}"
    );
    let report = &data.delivered(BOB).unwrap()[0];
    let facts = python_facts(report);
    assert_eq!(
        facts,
        [
            "return-path <>",
            "type multipart/report delivery-status",
            "subject Undelivered Mail Returned to Sender",
            "parts text/plain message/delivery-status text/rfc822-headers",
            "admin-reason True",
            "rcpt rfc822; dave@partner.example | failed | 5.0.0",
            "original-subject second",
            "body-included False",
        ],
        "{}",
        std::fs::read_to_string(report).unwrap_or_default()
    );
    // The report was queued and delivered, so only the third and fourth
    // messages are left.
    server.wait_until("the report leaves the queue", WAIT, || {
        data.queued_messages().unwrap() == {
            let mut v = vec![third.clone(), fourth.clone()];
            v.sort();
            v
        }
    });

    let out = ok(binary, &data, &["queue", "flush"]);
    assert_eq!(
        out.trim(),
        "2 queued messages are due now (2 waiting for remote delivery)"
    );
    assert_eq!(server.wait_events("queue-flush", 1).len(), 1);

    // With the server stopped, the command does the work itself.
    let status = server.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success());
    let out = ok(binary, &data, &["queue", "delete", &third]);
    assert_eq!(out.trim(), format!("deleted {third}"));
    assert_eq!(data.queued_messages().unwrap(), vec![fourth.clone()]);
    let out = ok(binary, &data, &["queue", "flush"]);
    assert!(out.contains("no server is running"), "{out}");
}

#[test]
fn queue_tools_with_hato() {
    queue_tools_against(Binary::Hato);
}

#[test]
fn queue_tools_with_hato_smol() {
    queue_tools_against(Binary::HatoSmol);
}
