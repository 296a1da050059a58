//! What the administrator's queue commands do to one message (`hato queue
//! show|delete|bounce ID`), written once and run by whoever owns the
//! queue at that moment: the delivery thread of a running server (asked
//! through the control socket, see [`crate::control`]), or the command
//! itself when no server runs (holding the data directory's lock).
//!
//! `bounce` fails every recipient not yet delivered: it queues one RFC
//! 3464 delivery status notification (`hato_core::message::dsn`) from the
//! null reverse-path to the original sender (to the postmaster when the
//! message was itself a bounce), then removes the original. The report is
//! queued (fsynced) before the original goes, so a crash between the two
//! can repeat the report but never lose it.

use std::fmt::Write as _;
use std::io;

use hato_core::config::Config;
use hato_core::policy::Destination;
use hato_core::queue::{QueueEnvelope, QueuedRecipient};
use hato_core::time::UnixTime;

use crate::reports::{self, Failed};
use crate::store::Store;

/// The reason every failed recipient gets in the report of `queue bounce`.
pub const ADMIN_REASON: &str = "deleted from the queue by the administrator";

/// What `bounce` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounced {
    /// How many recipients failed (those not delivered before).
    pub failed: usize,
    /// The report queued: its queue id, whom it goes to, and where.
    pub report: Option<(String, String, Destination)>,
    /// Why no report was queued, when none was.
    pub no_report: Option<&'static str>,
}

/// Removes message `id` from the queue.
///
/// # Errors
/// `NotFound` when it is not queued; the removal fails.
pub fn delete(store: &Store, id: &str) -> io::Result<()> {
    // Confirms the message exists (and the id is valid) before removing.
    store.read_envelope(id)?;
    store.remove(id)
}

/// Fails every undelivered recipient of `id`: queues the report, then
/// removes the message (see the module docs).
///
/// # Errors
/// `NotFound` when the message is not queued; reading it, writing the
/// report or removing the message fails (the message then stays queued).
pub fn bounce(store: &Store, cfg: &Config, id: &str, now: UnixTime) -> io::Result<Bounced> {
    let (env, body) = store.open_message(id)?;
    let headers = reports::read_header_block(body)?;
    let done = delivered(store, &env)?;
    let recorded = store.failures(id)?;
    let mut failed: Vec<Failed<'_>> = recorded
        .iter()
        .filter_map(|(i, f)| Failed::new(env.recipients.get(*i)?, f))
        .collect();
    let open: Vec<&QueuedRecipient> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(i, _)| done.binary_search(i).is_err())
        .map(|(_, r)| r)
        .collect();
    failed.extend(open.iter().map(|r| Failed::by_admin(r, ADMIN_REASON)));
    let mut outcome = Bounced {
        failed: open.len(),
        report: None,
        no_report: None,
    };
    if failed.is_empty() {
        outcome.no_report = Some("every recipient was delivered already");
    } else {
        match reports::failure_report(store, cfg, &env, &failed, &headers, now)? {
            Ok(queued) => outcome.report = Some(queued),
            Err(why) => outcome.no_report = Some(why),
        }
    }
    store.remove(id)?;
    Ok(outcome)
}

/// The recipients of `env` already finished: those its progress file
/// lists, and those whose copy is in their Maildir (a crash before the
/// line, or none needed, see `store::settle`).
fn delivered(store: &Store, env: &QueueEnvelope) -> io::Result<Vec<usize>> {
    Ok(store.settle(env, None)?.finished())
}

/// Describes message `id` for `hato queue show`: the envelope, each
/// recipient's state, and the header block.
///
/// # Errors
/// `NotFound` when it is not queued; the files cannot be read.
pub fn show(store: &Store, id: &str) -> io::Result<String> {
    let (env, body) = store.open_message(id)?;
    let headers = reports::read_header_block(body)?;
    let done = delivered(store, &env)?;
    let failures = store.failures(id)?;
    let mut s = String::with_capacity(1024 + headers.len());
    let _ = writeln!(s, "id:        {}", env.id);
    let _ = writeln!(
        s,
        "received:  {} ({})",
        env.received.rfc3339(),
        env.received.0
    );
    let _ = writeln!(s, "client:    {} (helo {})", env.client_ip, env.helo);
    let _ = writeln!(s, "from:      {}", env.from);
    let _ = writeln!(
        s,
        "options:   body={} smtputf8={}",
        if env.body_8bit { "8bitmime" } else { "7bit" },
        if env.smtputf8 { "yes" } else { "no" }
    );
    let _ = writeln!(s, "recipients:");
    for (i, r) in env.recipients.iter().enumerate() {
        let (kind, address) = match &r.destination {
            Destination::Local(a) => ("local", a),
            Destination::Remote(a) => ("remote", a),
        };
        let failure = failures.iter().find(|(f, _)| *f == i);
        let state = if let Some((_, f)) = failure {
            format!("failed: {}", f.reason)
        } else if done.binary_search(&i).is_ok() {
            "delivered".to_owned()
        } else if kind == "local" {
            "waiting for local delivery".to_owned()
        } else {
            "waiting for remote delivery".to_owned()
        };
        let _ = writeln!(s, "  {}  {kind} {address}  {state}", r.original);
    }
    let _ = writeln!(s, "headers:");
    for line in String::from_utf8_lossy(&headers).lines() {
        let _ = writeln!(s, "  {line}");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;

    use super::*;
    use crate::store::testdir::{envelope, TestDir};

    fn setup(name: &str) -> (TestDir, Store, Config) {
        let t = TestDir::new(name);
        let store = Store::open(t.path()).unwrap();
        fs::write(
            t.path().join("users"),
            "bob@example.org:!\npostmaster@example.org:!\n",
        )
        .unwrap();
        let mut cfg = Config::defaults("mail.example.org");
        cfg.domains = vec!["example.org".into()];
        cfg.postmaster = "postmaster@example.org".into();
        (t, store, cfg)
    }

    fn queue(store: &Store, from: &str, to: &[Destination]) -> String {
        let mut env = envelope(store, to);
        env.from = from.into();
        let mut w = store.spool(&env).unwrap();
        w.write(b"Subject: Quarterly figures\r\nFrom: x\r\n\r\nSECRET BODY\r\n")
            .unwrap();
        w.commit().unwrap();
        env.id
    }

    fn remote(a: &str) -> Destination {
        Destination::Remote(a.into())
    }

    #[test]
    fn bounce_queues_a_report_to_the_local_sender_and_removes_the_message() {
        let (_t, store, cfg) = setup("admin-bounce");
        let id = queue(
            &store,
            "<bob@example.org>",
            &[remote("dave@partner.example"), remote("erin@other.example")],
        );
        store.mark_delivered(&id, 1).unwrap();
        let out = bounce(&store, &cfg, &id, UnixTime(1_795_501_000)).unwrap();
        assert_eq!(out.failed, 1);
        let (report_id, to, dest) = out.report.unwrap();
        assert_eq!(to, "bob@example.org");
        assert_eq!(dest, Destination::Local("bob@example.org".into()));
        assert_eq!(store.queued().unwrap(), vec![report_id.clone()]);
        let env = store.read_envelope(&report_id).unwrap();
        assert_eq!(env.from, "<>");
        let mut text = String::new();
        store
            .open_body(&report_id)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains("Final-Recipient: rfc822; dave@partner.example\r\n"));
        assert!(!text.contains("erin@other.example"), "delivered already");
        assert!(text.contains(ADMIN_REASON));
        assert!(text.contains("Subject: Quarterly figures"));
        assert!(!text.contains("SECRET BODY"));
    }

    #[test]
    fn a_bounce_of_a_bounce_goes_to_the_postmaster() {
        let (_t, store, cfg) = setup("admin-double");
        let id = queue(&store, "<>", &[remote("dave@partner.example")]);
        let out = bounce(&store, &cfg, &id, UnixTime(1)).unwrap();
        let (_, to, dest) = out.report.unwrap();
        assert_eq!(to, "postmaster@example.org");
        assert_eq!(dest, Destination::Local("postmaster@example.org".into()));
    }

    #[test]
    fn a_remote_sender_gets_a_report_queued_for_remote_delivery() {
        let (_t, store, cfg) = setup("admin-remote");
        let id = queue(
            &store,
            "<carol@elsewhere.example>",
            &[remote("dave@partner.example")],
        );
        let out = bounce(&store, &cfg, &id, UnixTime(1)).unwrap();
        let (_, to, dest) = out.report.unwrap();
        assert_eq!(to, "carol@elsewhere.example");
        assert_eq!(dest, remote("carol@elsewhere.example"));
    }

    #[test]
    fn delete_and_show_and_missing_messages() {
        let (_t, store, cfg) = setup("admin-delete");
        let id = queue(
            &store,
            "<bob@example.org>",
            &[remote("dave@partner.example")],
        );
        let text = show(&store, &id).unwrap();
        assert!(text.contains("from:      <bob@example.org>"), "{text}");
        assert!(text.contains(
            "  <dave@partner.example>  remote dave@partner.example  waiting for remote delivery"
        ));
        assert!(text.contains("  Subject: Quarterly figures\n"));
        assert!(!text.contains("SECRET"));
        let failure = crate::store::RecordedFailure {
            mta: Some("mx.partner.example".into()),
            reason: "550 5.1.1 no such user".into(),
        };
        store.mark_failed(&id, 0, &failure).unwrap();
        assert!(show(&store, &id)
            .unwrap()
            .contains("remote dave@partner.example  failed: 550 5.1.1 no such user"));
        delete(&store, &id).unwrap();
        assert!(store.queued().unwrap().is_empty());
        for err in [
            delete(&store, &id).err(),
            bounce(&store, &cfg, &id, UnixTime(1)).err(),
            show(&store, &id).err(),
        ] {
            assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        }
        assert!(delete(&store, "../users").is_err());
    }
}
