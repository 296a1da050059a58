//! An independent reading of hato's bounces: the delivery status
//! notifications that `hato_core::message::dsn` composes (RFC 3464 inside
//! an RFC 6522 `multipart/report`) are parsed by Python's `email`
//! package, which must find the report type, one delivery-status block
//! per recipient with its Action, Status and Final-Recipient, and the
//! original message's Subject in the headers part (and not its body).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use hato_core::message::dsn::{compose, DsnInput, DsnKind, DsnRecipient, RemoteFailure};
use hato_core::smtp::reply::{Enhanced, Reply};
use hato_core::time::UnixTime;
use hato_spec_tests::python::run_python;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the DSN in argv[1] and prints what it found, one fact a line.
const SCRIPT: &str = r#"
import email, email.parser, email.policy, sys

data = open(sys.argv[1], "rb").read()
for policy in (email.policy.compat32, email.policy.default):
    msg = email.message_from_bytes(data, policy=policy)
    assert not msg.defects, msg.defects
    print("type", msg.get_content_type())
    print("report-type", msg.get_param("report-type"))
    print("from", msg["From"])
    print("to", str(msg["To"]).strip("<>"))
    print("subject", msg["Subject"])
    print("auto-submitted", msg["Auto-Submitted"])
    parts = msg.get_payload()
    print("parts", len(parts), " ".join(p.get_content_type() for p in parts))
    for p in parts:
        assert not p.defects, (p.get_content_type(), p.defects)
    human = parts[0].get_payload(decode=True).decode(parts[0].get_content_charset())
    print("human-mentions-reply", "550 5.1.1" in human)
    blocks = parts[1].get_payload()
    print("blocks", len(blocks))
    print("reporting-mta", blocks[0]["Reporting-MTA"])
    for b in blocks[1:]:
        print("rcpt", b["Final-Recipient"], "|", b["Action"], "|", b["Status"],
              "|", " ".join(str(b["Diagnostic-Code"]).split()))
    raw_headers = parts[2].get_payload(decode=True).decode("utf-8")
    headers = email.parser.HeaderParser().parsestr(raw_headers)
    print("original-subject", headers["Subject"])
    print("original-body-included", "SECRET BODY" in raw_headers)
    print("--")
"#;

fn reply(code: u16, esc: Option<Enhanced>, text: &str) -> Reply {
    Reply {
        code,
        esc,
        text: Cow::Owned(text.to_owned()),
    }
}

fn parse_with_python(name: &str, bytes: &[u8]) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.eml"));
    std::fs::write(&path, bytes).unwrap();
    let out = run_python(SCRIPT, &[path.to_str().unwrap()], SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&path);
    let runs: Vec<&str> = out.stdout.split("--\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(runs.len(), 2, "{}", out.stdout);
    // Both policies (compat32 and the modern one) must see the same thing.
    assert_eq!(runs[0], runs[1]);
    runs[0].lines().map(str::to_owned).collect()
}

#[test]
fn python_reads_a_failure_report_with_two_recipients() {
    let refused = reply(
        550,
        Some(Enhanced(5, 1, 1)),
        "<dave@partner.example>: Recipient address rejected:\nUser unknown in local table",
    );
    let too_big = reply(552, None, &format!("Message too big {}", "zz ".repeat(400)));
    let rcpts = [
        DsnRecipient {
            original: Some("<Dave@Partner.example>"),
            address: "dave@partner.example",
            reason: "The remote server refused the recipient.",
            status: None,
            remote: Some(RemoteFailure {
                mta: "mx1.partner.example",
                reply: &refused,
            }),
            last_attempt: Some(UnixTime(1_795_500_990)),
        },
        DsnRecipient {
            original: None,
            address: "erin@other.example",
            reason: "The remote server refused the message's size.",
            status: None,
            remote: Some(RemoteFailure {
                mta: "mx.other.example",
                reply: &too_big,
            }),
            last_attempt: Some(UnixTime(1_795_500_995)),
        },
    ];
    let original = b"Received: from client ([127.0.0.1])\r\n\tby mail.example.test\r\n\
        From: bob@example.test\r\nSubject: Quarterly figures\r\nMessage-ID: <q@x>\r\n\r\n\
        SECRET BODY\r\n";
    let dsn = compose(&DsnInput {
        kind: DsnKind::Failure,
        hostname: "mail.example.test",
        to: "bob@example.test",
        original_sender: "<bob@example.test>",
        queue_id: "0ORIGINAL0001",
        dsn_id: "0BOUNCE000001",
        arrival: UnixTime(1_795_500_900),
        now: UnixTime(1_795_501_000),
        retry_until: None,
        recipients: &rcpts,
        original_headers: original,
        boundary_seed: 7,
    });
    let facts = parse_with_python("failure", &dsn.bytes);
    let want = [
        "type multipart/report",
        "report-type delivery-status",
        "from Mail Delivery System <MAILER-DAEMON@mail.example.test>",
        "to bob@example.test",
        "subject Undelivered Mail Returned to Sender",
        "auto-submitted auto-replied",
        "parts 3 text/plain message/delivery-status text/rfc822-headers",
        "human-mentions-reply True",
        "blocks 3",
        "reporting-mta dns; mail.example.test",
        "rcpt rfc822; dave@partner.example | failed | 5.1.1 | smtp; 550 5.1.1 \
         <dave@partner.example>: Recipient address rejected: User unknown in local table",
        &format!(
            "rcpt rfc822; erin@other.example | failed | 5.2.2 | smtp; 552 Message too big {}",
            "zz ".repeat(400).trim_end()
        ),
        "original-subject Quarterly figures",
        "original-body-included False",
    ];
    assert_eq!(facts, want);
}

#[test]
fn python_reads_a_delay_warning_with_utf8() {
    let rcpts = [DsnRecipient {
        original: None,
        address: "jörg@bücher.example",
        reason: "Der Server antwortet nicht.",
        status: Some(Enhanced(4, 4, 1)),
        remote: None,
        last_attempt: None,
    }];
    let dsn = compose(&DsnInput {
        kind: DsnKind::Delay,
        hostname: "mail.example.test",
        to: "bob@example.test",
        original_sender: "bob@example.test",
        queue_id: "0ORIGINAL0002",
        dsn_id: "0DELAY0000001",
        arrival: UnixTime(1_795_500_900),
        now: UnixTime(1_795_515_300),
        retry_until: Some(UnixTime(1_795_932_900)),
        recipients: &rcpts,
        original_headers: "Subject: Grüße\r\n\r\nSECRET BODY\r\n".as_bytes(),
        boundary_seed: 8,
    });
    assert!(dsn.body_8bit);
    let facts = parse_with_python("delay", &dsn.bytes);
    assert!(facts.contains(&"subject Delayed Mail (still being retried)".to_owned()));
    assert!(facts.contains(&"blocks 2".to_owned()));
    assert!(
        facts.contains(
            &"rcpt utf-8; j\\x{F6}rg@b\\x{FC}cher.example | delayed | 4.4.1 | None".to_owned()
        ),
        "{facts:?}"
    );
    assert!(
        facts.contains(&"original-subject Grüße".to_owned()),
        "{facts:?}"
    );
}
