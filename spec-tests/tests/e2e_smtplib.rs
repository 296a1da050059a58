//! End to end with a real client: Python's smtplib sends to `hato` and to
//! `hato-smol` over TCP on 127.0.0.1, and every message must arrive in the
//! Maildirs byte for byte as smtplib sent it (after dot-unstuffing, with LF
//! line endings), behind hato's Return-Path, Delivered-To and Received
//! fields. Python's `email` package then parses the delivered files back:
//! the RFC 2047 subject, the 8bit text part and the base64 attachment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::dot_unstuff;
use hato_spec_tests::maildir::{crlf_to_lf, split_delivered};
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};
use hato_spec_tests::transcript::escape;

/// How long the python3 script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long delivery may take after the last message was queued.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The envelope sender of every message.
const FROM: &str = "bob@example.org";

/// `send PORT`: sends the messages and prints, per message, one line
/// `MSG name rcpts code reply wire payload` (tab-separated; `wire` is what
/// went over the wire after the DATA command, `payload` the message
/// smtplib handed to `data()`, both in hex), and `REFUSED code` for the
/// unknown recipient. `check KIND FILE...`: parses delivered files with
/// the `email` package and checks what it finds.
const SCRIPT: &str = r#"
import email, email.header, email.policy, email.utils, smtplib, sys
from email.message import EmailMessage

SUBJECT = "Grüße aus Köln – ☃ ok"
ATTACHMENT = bytes(range(256)) * 40 + b"\r\n.\r\nend\x00"
TEXT = "Grüße, Alice!\nThe report is attached.\n.a line that starts with a dot\n.\n"
FROM = "bob@example.org"

PLAIN_BODY = "\n".join([
    "Hello Alice,",
    ".this line starts with a dot",
    ".",
    "",
    "x" * 900,
    "..two dots",
    " leading blank and a trailing one ",
    "last line",
]) + "\n"


class Recording(smtplib.SMTP):
    """Keeps every write, and for each DATA what smtplib sent."""

    def __init__(self, *args, **kwargs):
        self.sent = []
        super().__init__(*args, **kwargs)

    def send(self, s):
        self.sent.append(s if isinstance(s, bytes) else s.encode("ascii"))
        super().send(s)

    def data(self, msg):
        start = len(self.sent)
        code, resp = super().data(msg)
        # sent[start] is "data\r\n", sent[start + 1] the message and its end.
        assert self.sent[start] == b"data\r\n", self.sent[start]
        self.last = (code, resp.decode("utf-8", "replace"), self.sent[start + 1], msg)
        return code, resp


def report(s, name, rcpts):
    code, resp, wire, payload = s.last
    print("\t".join(["MSG", name, ",".join(rcpts), str(code), resp, wire.hex(), payload.hex()]))


def plain_message(to, n):
    return (
        f"From: Bob <{FROM}>\n"
        f"To: {to}\n"
        f"Subject: {email.header.Header(SUBJECT, 'utf-8').encode()}\n"
        f"Message-ID: {email.utils.make_msgid(str(n), domain='client.example')}\n"
        f"Date: {email.utils.formatdate()}\n"
        "\n" + PLAIN_BODY
    )


def send(port):
    s = Recording("127.0.0.1", port, local_hostname="client.example", timeout=20)
    s.ehlo()
    for ext in ["8bitmime", "pipelining", "size"]:
        assert s.has_extn(ext), f"EHLO does not announce {ext}: {s.esmtp_features}"

    rcpts = ["alice@example.test"]
    refused = s.sendmail(FROM, rcpts, plain_message("Alice <alice@example.test>", 1))
    assert refused == {}, refused
    report(s, "plain", rcpts)

    rcpts = ["alice@example.test", "bob@example.test"]
    refused = s.sendmail(FROM, rcpts, plain_message("alice@example.test, bob@example.test", 2))
    assert refused == {}, refused
    report(s, "two", rcpts)

    m = EmailMessage()
    m["From"] = f"Bob <{FROM}>"
    m["To"] = "Alice <alice@example.test>"
    m["Subject"] = SUBJECT
    m["Message-ID"] = email.utils.make_msgid("3", domain="client.example")
    m["Date"] = email.utils.formatdate()
    m.set_content(TEXT, cte="8bit")
    m.add_attachment(ATTACHMENT, maintype="application", subtype="octet-stream",
                     filename="report.bin")
    refused = s.send_message(m, mail_options=["BODY=8BITMIME"])
    assert refused == {}, refused
    report(s, "attach", ["alice@example.test"])

    try:
        s.sendmail(FROM, ["nobody@example.test"], plain_message("nobody@example.test", 4))
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["nobody@example.test"]
        print("\t".join(["REFUSED", str(code), text.decode("utf-8", "replace")]))
    else:
        sys.exit("a message to nobody@example.test was accepted")
    code, _ = s.quit()
    assert code == 221, code


def parse(path):
    with open(path, "rb") as f:
        return email.message_from_binary_file(f, policy=email.policy.default)


def check(kind, paths):
    for path in paths:
        m = parse(path)
        assert str(m["Subject"]) == SUBJECT, (path, str(m["Subject"]))
        assert m["Return-Path"] == f"<{FROM}>", m["Return-Path"]
        assert m["Received"].startswith("from client.example ([127.0.0.1])"), m["Received"]
        if kind in ("plain", "two"):
            assert not m.is_multipart()
            body = m.get_content()
            assert body == PLAIN_BODY, (body[:200], PLAIN_BODY[:200])
        elif kind == "attach":
            assert m.is_multipart()
            text = m.get_body(("plain",))
            assert text["Content-Transfer-Encoding"] == "8bit", text["Content-Transfer-Encoding"]
            assert text.get_content() == TEXT, repr(text.get_content())
            parts = list(m.iter_attachments())
            assert len(parts) == 1, parts
            assert parts[0].get_filename() == "report.bin"
            assert parts[0]["Content-Transfer-Encoding"] == "base64"
            assert parts[0].get_content() == ATTACHMENT, "attachment bytes differ"
        else:
            sys.exit(f"unknown kind {kind}")
        print("OK", kind, path)


if sys.argv[1] == "send":
    send(int(sys.argv[2]))
else:
    check(sys.argv[2], sys.argv[3:])
"#;

/// One message smtplib sent, as it reported it.
#[derive(Debug)]
struct Sent {
    name: String,
    rcpts: Vec<String>,
    queue_id: String,
    /// The message as the server must have stored it: the DATA bytes
    /// dot-unstuffed, CRLF turned into LF.
    expected: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Reads the `send` output: the messages and the refusal code.
fn parse_output(stdout: &str) -> (Vec<Sent>, Option<u16>) {
    let mut sent = Vec::new();
    let mut refused = None;
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.first() {
            Some(&"MSG") => {
                let [_, name, rcpts, code, reply, wire, payload] = fields[..] else {
                    panic!("bad MSG line {line:?}");
                };
                assert_eq!(code, "250", "{name}: end of data answered {code} {reply}");
                let queue_id = reply
                    .split_once("queued as ")
                    .and_then(|(_, id)| id.split_whitespace().next())
                    .unwrap_or_else(|| panic!("{name}: no queue id in {reply:?}"))
                    .to_owned();
                let wire = unhex(wire);
                let payload = unhex(payload);
                // Our own unstuffing of what smtplib put on the wire must
                // give back what smtplib was asked to send: it checks the
                // reference the server's result is compared with.
                let unstuffed = dot_unstuff(&wire).unwrap();
                let mut want = payload.clone();
                if !want.ends_with(b"\r\n") {
                    want.extend_from_slice(b"\r\n");
                }
                assert_eq!(escape(&unstuffed), escape(&want), "{name}: unstuffed DATA");
                assert_ne!(wire, payload, "{name}: smtplib stuffed no dot");
                sent.push(Sent {
                    name: name.to_owned(),
                    rcpts: rcpts.split(',').map(str::to_owned).collect(),
                    queue_id,
                    expected: crlf_to_lf(&unstuffed),
                });
            }
            Some(&"REFUSED") => {
                let text = fields.get(2).copied().unwrap_or_default();
                assert!(text.starts_with("5.1.1 "), "RCPT refusal text {text:?}");
                refused = fields.get(1).and_then(|c| c.parse().ok());
            }
            _ => panic!("unexpected output line {line:?}"),
        }
    }
    (sent, refused)
}

/// Returns the `to` address of a log line without angle brackets.
fn bare(addr: &str) -> &str {
    addr.trim_start_matches('<').trim_end_matches('>')
}

fn run(binary: Binary) {
    let name = binary.name();
    let data = DataDir::new(&format!("e2e-{name}")).unwrap();
    let server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let port = server.addr(ListenerKind::Smtp).unwrap().port().to_string();

    let out = run_python(SCRIPT, &["send", &port], SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e}\n--- server log ---\n{}", server.log_text()));
    let (sent, refused) = parse_output(&out.stdout);
    let names: Vec<&str> = sent.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["plain", "two", "attach"], "{name}: {}", out.stdout);
    assert_eq!(refused, Some(550), "{name}: RCPT to an unknown user");

    // Wait until every recipient's copy is delivered and the queue is empty.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let files: BTreeMap<(String, String), String> = loop {
        let mut files = BTreeMap::new();
        for line in server.events("deliver") {
            let (Some(id), Some(to), Some(file)) = (
                log_value(&line, "id"),
                log_value(&line, "to"),
                log_value(&line, "file"),
            ) else {
                panic!("{name}: deliver line without id, to or file: {line}");
            };
            let prev = files.insert((id.to_owned(), bare(to).to_owned()), file.to_owned());
            assert!(prev.is_none(), "{name}: delivered twice: {line}");
        }
        let want = sent.iter().map(|s| s.rcpts.len()).sum::<usize>();
        let queue = data.queue_files().unwrap();
        if files.len() >= want && queue.is_empty() {
            assert_eq!(files.len(), want, "{name}: deliveries: {files:?}");
            break files;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not delivered within {DELIVERY_TIMEOUT:?}: {} of {want} copies, queue {queue:?}\n{}",
            files.len(),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let queued = server.events("queued");
    // The queue file goes just before its dequeue line is written.
    let dequeued = server.wait_events("dequeue", sent.len());
    let mut to_check: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in &sent {
        let id = s.queue_id.as_str();
        let with_id = |lines: &[String]| {
            lines
                .iter()
                .filter(|l| log_value(l, "id") == Some(id))
                .count()
        };
        assert_eq!(with_id(&queued), 1, "{name}: {}: queued lines", s.name);
        assert_eq!(with_id(&dequeued), 1, "{name}: {}: dequeue lines", s.name);
        let queued_line = queued
            .iter()
            .find(|l| log_value(l, "id") == Some(id))
            .unwrap();
        assert_eq!(log_value(queued_line, "from"), Some("<bob@example.org>"));
        assert_eq!(
            log_value(queued_line, "nrcpt"),
            Some(s.rcpts.len().to_string().as_str()),
            "{queued_line}"
        );
        for rcpt in &s.rcpts {
            let file = &files[&(id.to_owned(), rcpt.clone())];
            let path = data.maildir_new(rcpt).join(file);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{name}: read {}: {e}", path.display()));
            let d = split_delivered(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d.return_path, format!("<{FROM}>"), "{name}: {}", s.name);
            assert_eq!(d.delivered_to, rcpt, "{name}: {}", s.name);
            assert!(
                d.received
                    .starts_with("Received: from client.example ([127.0.0.1])\n\tby mail.example.test with ESMTP id "),
                "{name}: {}: {}",
                s.name,
                d.received
            );
            assert!(
                d.received.contains(&format!(" id {id}")),
                "{name}: {}: {}",
                s.name,
                d.received
            );
            let for_clause = d.received.contains(&format!("\tfor <{rcpt}>"));
            assert_eq!(for_clause, s.rcpts.len() == 1, "{name}: {}", d.received);
            assert!(
                d.message == s.expected.as_slice(),
                "{name}: {} to {rcpt}: the delivered message differs from what smtplib sent\n\
                 --- delivered ({} bytes) ---\n{}\n--- sent ({} bytes) ---\n{}",
                s.name,
                d.message.len(),
                escape(&d.message[..d.message.len().min(3000)]),
                s.expected.len(),
                escape(&s.expected[..s.expected.len().min(3000)]),
            );
            to_check
                .entry(s.name.as_str())
                .or_default()
                .push(path.display().to_string());
        }
    }
    // Nothing else arrived: one file per copy.
    assert_eq!(data.delivered("alice@example.test").unwrap().len(), 3);
    assert_eq!(data.delivered("bob@example.test").unwrap().len(), 1);
    assert!(data.delivered("nobody@example.test").unwrap().is_empty());
    assert!(data.incoming_files().unwrap().is_empty());
    let refusals = server.events("refuse");
    assert!(
        refusals.iter().any(|l| log_value(l, "code") == Some("550")
            && log_value(l, "stage") == Some("rcpt")
            && l.contains("nobody@example.test")),
        "{name}: no refuse line for nobody@example.test:\n{}",
        refusals.join("\n")
    );

    for (kind, paths) in &to_check {
        let mut args = vec!["check", kind];
        args.extend(paths.iter().map(String::as_str));
        let out =
            run_python(SCRIPT, &args, SCRIPT_TIMEOUT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.stdout.lines().count(), paths.len(), "{}", out.stdout);
    }
}

#[test]
fn smtplib_to_hato() {
    run(Binary::Hato);
}

#[test]
fn smtplib_to_hato_smol() {
    run(Binary::HatoSmol);
}
