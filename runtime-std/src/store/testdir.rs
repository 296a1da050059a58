//! Test helpers of the crate: a temporary directory removed when dropped,
//! a queue envelope, and waiting for a condition.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hato_core::policy::Destination;
use hato_core::queue::{QueueEnvelope, QueuedRecipient};
use hato_core::time::UnixTime;

use super::Store;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system's temp dir, unique per process and call.
#[derive(Debug)]
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hato-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An envelope from <alice@example.net> to `to`, with a fresh id.
pub(crate) fn envelope(store: &Store, to: &[Destination]) -> QueueEnvelope {
    QueueEnvelope {
        id: store.new_queue_id(),
        received: UnixTime(1_795_500_900),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        helo: "client.example.net".into(),
        from: "<alice@example.net>".into(),
        smtputf8: false,
        body_8bit: false,
        auth: None,
        recipients: to
            .iter()
            .map(|d| QueuedRecipient {
                original: match d {
                    Destination::Local(a) | Destination::Remote(a) => format!("<{a}>"),
                },
                destination: d.clone(),
            })
            .collect(),
    }
}

/// Waits until `cond` holds, at most 10 s; panics naming `what` otherwise.
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
