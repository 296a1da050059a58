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
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr};

use hato_core::config::Config;
use hato_core::message::dsn::{self, BounceTarget, DsnInput, DsnKind, DsnRecipient};
use hato_core::policy::{check_recipient, Client, Destination, ListenerKind};
use hato_core::queue::{QueueEnvelope, QueuedRecipient};
use hato_core::smtp::address::ForwardPath;
use hato_core::smtp::parse::parse_mailbox;
use hato_core::smtp::reply::Enhanced;
use hato_core::time::UnixTime;

use crate::store::{maildir, users, Store};

/// The reason every failed recipient gets in the report of `queue bounce`.
pub const ADMIN_REASON: &str = "deleted from the queue by the administrator";

/// The most of a message's start read to find its header block.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

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
    let headers = read_header_block(body)?;
    let done = delivered(store, &env)?;
    let failed: Vec<&QueuedRecipient> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(i, _)| done.binary_search(i).is_err())
        .map(|(_, r)| r)
        .collect();
    let mut outcome = Bounced {
        failed: failed.len(),
        report: None,
        no_report: None,
    };
    if failed.is_empty() {
        outcome.no_report = Some("every recipient was delivered already");
    } else {
        match report_destination(store, cfg, &env.from) {
            Ok((to, destination)) => {
                let report_id =
                    queue_report(store, cfg, &env, &failed, &headers, &to, &destination, now)?;
                outcome.report = Some((report_id, to, destination));
            }
            Err(why) => outcome.no_report = Some(why),
        }
    }
    store.remove(id)?;
    Ok(outcome)
}

/// Whom the report goes to, and where that is; or why nobody.
fn report_destination(
    store: &Store,
    cfg: &Config,
    from: &str,
) -> Result<(String, Destination), &'static str> {
    let dir = users::load(store.data_dir()).map_err(|_| "the users file cannot be read")?;
    let client = Client {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        listener: ListenerKind::Smtp,
        authenticated: true,
    };
    let to_postmaster = || {
        check_recipient(cfg, &dir, &client, &ForwardPath::Postmaster)
            .map(|d| (cfg.postmaster.clone(), d))
            .map_err(|_| "the postmaster address cannot be resolved")
    };
    match dsn::should_bounce(from) {
        BounceTarget::Sender(address) => {
            let Ok(mailbox) = parse_mailbox(&address) else {
                return Err("the sender's address cannot be parsed");
            };
            let path = ForwardPath::Mailbox {
                mailbox,
                had_route: false,
            };
            match check_recipient(cfg, &dir, &client, &path) {
                Ok(d) => Ok((address, d)),
                // A local sender without a mailbox (a forged or removed
                // address): the postmaster hears of it instead.
                Err(_) => to_postmaster(),
            }
        }
        BounceTarget::Postmaster => to_postmaster(),
        BounceTarget::None => Err("the sender is not an address a report can go to"),
    }
}

/// Composes the report and queues it from `<>`; returns its queue id.
#[allow(clippy::too_many_arguments)]
fn queue_report(
    store: &Store,
    cfg: &Config,
    env: &QueueEnvelope,
    failed: &[&QueuedRecipient],
    headers: &[u8],
    to: &str,
    destination: &Destination,
    now: UnixTime,
) -> io::Result<String> {
    let recipients: Vec<DsnRecipient<'_>> = failed
        .iter()
        .map(|r| DsnRecipient {
            // No ORCPT was given (hato does not offer DSN), so no
            // Original-Recipient (RFC 3461 §6.3 (d)).
            original: None,
            address: match &r.destination {
                Destination::Local(a) | Destination::Remote(a) => a,
            },
            reason: ADMIN_REASON,
            status: Some(Enhanced(5, 0, 0)),
            remote: None,
            last_attempt: None,
        })
        .collect();
    let report_id = store.new_queue_id();
    let report = dsn::compose(&DsnInput {
        kind: DsnKind::Failure,
        hostname: &cfg.hostname,
        to,
        original_sender: &env.from,
        queue_id: &env.id,
        dsn_id: &report_id,
        arrival: env.received,
        now,
        retry_until: None,
        recipients: &recipients,
        original_headers: headers,
        boundary_seed: seed(&report_id, now),
    });
    let report_env = QueueEnvelope {
        id: report_id.clone(),
        received: now,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: cfg.hostname.clone(),
        from: dsn::BOUNCE_REVERSE_PATH.to_owned(),
        smtputf8: env.smtputf8,
        body_8bit: report.body_8bit,
        recipients: vec![QueuedRecipient {
            original: format!("<{to}>"),
            destination: destination.clone(),
        }],
    };
    let mut w = store.spool(&report_env)?;
    w.write(&report.bytes)?;
    w.commit()?;
    Ok(report_id)
}

/// A boundary seed from the report's id and the time: the front end's
/// part of "randomness comes from outside the core".
fn seed(id: &str, now: UnixTime) -> u64 {
    id.bytes().fold(now.0, |h, b| {
        h.rotate_left(5) ^ u64::from(b).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

/// The recipients of `env` already delivered: those marked done, and
/// those whose recorded intent reached the Maildir (a crash before the
/// done mark, see `store::progress`).
fn delivered(store: &Store, env: &QueueEnvelope) -> io::Result<Vec<usize>> {
    let mut done = store.delivered(&env.id)?;
    for (idx, name) in store.intents(&env.id)? {
        let Some(Destination::Local(address)) = env.recipients.get(idx).map(|r| &r.destination)
        else {
            continue;
        };
        if done.binary_search(&idx).is_err()
            && maildir::is_delivered(store.mailbox_root(), address, &name)?
        {
            if let Err(pos) = done.binary_search(&idx) {
                done.insert(pos, idx);
            }
        }
    }
    Ok(done)
}

/// Reads the message's header block (up to its empty line, or
/// [`MAX_HEADER_BLOCK`] bytes).
fn read_header_block(body: impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(8192);
    body.take(MAX_HEADER_BLOCK as u64).read_to_end(&mut buf)?;
    let end = find(&buf, b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| find(&buf, b"\n\n").map(|p| p + 1))
        .unwrap_or(buf.len());
    buf.truncate(end);
    Ok(buf)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Describes message `id` for `hato queue show`: the envelope, each
/// recipient's state, and the header block.
///
/// # Errors
/// `NotFound` when it is not queued; the files cannot be read.
pub fn show(store: &Store, id: &str) -> io::Result<String> {
    let (env, body) = store.open_message(id)?;
    let headers = read_header_block(body)?;
    let done = delivered(store, &env)?;
    let failures = store.failures(&env.id)?;
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
        let failed = failures.iter().find(|(f, _)| *f == i);
        let state = if done.binary_search(&i).is_ok() {
            "delivered".to_owned()
        } else if let Some((_, why)) = failed {
            format!("failed, to be bounced: {why}")
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
        store
            .mark_failed(&id, 0, "lmtp:127.0.0.1:24: 550 5.1.1 no such user")
            .unwrap();
        assert!(show(&store, &id).unwrap().contains(
            "remote dave@partner.example  failed, to be bounced: lmtp:127.0.0.1:24: 550 5.1.1 no such user"
        ));
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
