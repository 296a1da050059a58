//! `delivery.mailbox_owner` with both binaries: an owner that does not
//! exist stops `serve` at start with a message naming it; an owner that
//! exists (uid 65534, nobody, when the tests run as root) receives the
//! Maildir hato writes (directories 0700, files 0600), and its group may
//! traverse `data_dir` while the queue stays hato's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::server::{Binary, DataDir, Server};

fn owner(value: &str) -> Vec<(String, String)> {
    vec![("delivery.mailbox_owner".into(), format!("\"{value}\""))]
}

fn unknown_owner_stops_the_start(binary: Binary) {
    let data = DataDir::new("owner-unknown").unwrap();
    let Err(e) = Server::start_with(binary, data, &owner("no-such-user-here")) else {
        panic!("{} started with an unknown mailbox owner", binary.name());
    };
    assert!(
        e.contains("delivery.mailbox_owner: no user \"no-such-user-here\" in /etc/passwd"),
        "{e}"
    );
}

/// Tells whether this process runs as root (from /proc, as hato does).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|u| u == "0")
        })
        .unwrap_or(false)
}

fn owner_gets_the_maildir(binary: Binary) {
    use std::os::unix::fs::MetadataExt;
    if !running_as_root() {
        eprintln!("skipped: giving files away needs root");
        return;
    }
    let data = DataDir::new("owner-nobody").unwrap();
    let server = Server::start_with(binary, data, &owner("65534")).unwrap();
    let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
    c.ehlo("client.example").unwrap();
    c.send_mail(
        "carol@sender.example",
        &["alice@example.test"],
        b"Subject: owned\r\n\r\nhi\r\n",
    )
    .unwrap();
    c.quit().unwrap();
    let d = server.data();
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        if let Some(f) = d.delivered("alice@example.test").unwrap().pop() {
            break f;
        }
        assert!(Instant::now() < deadline, "not delivered");
        std::thread::sleep(Duration::from_millis(20));
    };
    let meta = |p: &std::path::Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o777)
    };
    assert_eq!(meta(&file), (65534, 65534, 0o600));
    let maildir = file.parent().unwrap().parent().unwrap();
    for dir in [
        maildir.to_path_buf(),
        maildir.join("cur"),
        maildir.join("tmp"),
    ] {
        assert_eq!(meta(&dir), (65534, 65534, 0o700), "{}", dir.display());
    }
    assert_eq!(meta(&d.path().join("mailboxes")), (65534, 65534, 0o700));
    assert_eq!(meta(d.path()).1, 65534);
    assert_eq!(meta(d.path()).2 & 0o010, 0o010, "the group may traverse");
    assert_eq!(meta(&d.queue_dir()).0, 0, "the queue stays hato's");
    assert_eq!(server.wait_events("mailbox-owner", 1).len(), 1);
}

#[test]
fn mailbox_owner_with_hato() {
    unknown_owner_stops_the_start(Binary::Hato);
    owner_gets_the_maildir(Binary::Hato);
}

#[test]
fn mailbox_owner_with_hato_smol() {
    unknown_owner_stops_the_start(Binary::HatoSmol);
    owner_gets_the_maildir(Binary::HatoSmol);
}
