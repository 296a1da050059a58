//! A graceful stop (SIGTERM): live sessions get 421 4.3.2 (RFC 5321 §3.8),
//! queued mail stays safe and is delivered, the log says so, the process
//! exits 0 and stops listening. Against both binaries, over loopback TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::server::{Binary, DataDir, Server};

const ALICE: &str = "alice@example.test";

fn graceful_stop(binary: Binary) {
    let data = DataDir::new("shutdown").unwrap();
    let mut server = Server::start_with(binary, data.clone(), &[]).unwrap();
    let addr = server.addr(ListenerKind::Smtp).unwrap();

    let mut sender = SmtpClient::connect(addr).unwrap();
    sender.ehlo("client.example").unwrap();
    let queued = sender
        .send_mail(
            "bob@sender.example",
            &[ALICE],
            b"Subject: before the stop\r\n\r\nhi\r\n",
        )
        .unwrap();
    assert!(queued.queue_id().is_some(), "{queued:?}");
    let mut idle = SmtpClient::connect(addr).unwrap();
    idle.ehlo("idle.example").unwrap();

    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    for client in [&mut idle, &mut sender] {
        let reply = client.read_reply().unwrap();
        assert_eq!(reply.code, 421, "{reply:?}");
        assert!(reply.lines[0].starts_with("4.3.2"), "{reply:?}");
    }
    let log = server.log_lines().join("\n");
    assert!(log.contains("event=stopping signal=TERM live=2"), "{log}");
    assert!(
        log.contains("event=stopped how=graceful abandoned=0"),
        "{log}"
    );
    assert_eq!(
        server
            .events("disconnect")
            .iter()
            .filter(|l| l.contains("reason=shutdown"))
            .count(),
        2,
        "{log}"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening after the stop"
    );
    assert_eq!(data.delivered(ALICE).unwrap().len(), 1, "{log}");
    assert!(data.queue_files().unwrap().is_empty(), "{log}");
}

#[test]
fn sigterm_stops_hato_gracefully() {
    graceful_stop(Binary::Hato);
}

#[test]
fn sigterm_stops_hato_smol_gracefully() {
    graceful_stop(Binary::HatoSmol);
}
