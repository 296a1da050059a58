//! Direct delivery: a message whose every recipient is a local Maildir
//! and whose data arrived in one chunk is written into the Maildirs at the
//! end of DATA, before the 250, instead of into `queue/` first and into
//! the Maildirs afterwards by the local-delivery role.
//!
//! The promise of RFC 5321 §6.1 holds: the 250 is sent only once the
//! message is durable, here in its final place (Maildir: file fsynced,
//! renamed into `new/`, `new/` fsynced, that fsync shared by the sessions
//! delivering into the same Maildir at the same moment:
//! [`Store::sync_maildir_new`]). What it saves is the queue's half
//! of the work: the spool file, its progress file, two renames, two
//! unlinks and three of the five flushes per message, plus the hand-over
//! to the delivery thread. That is most of the disk traffic of a small
//! site's mail, which is mostly small messages to its own users.
//!
//! Everything else takes the queue, as before: a remote recipient, LMTP
//! (`delivery.local = "lmtp:..."`), a message larger than one chunk
//! ([`HELD_LIMIT`]; it is spooled as it arrives). And when a Maildir
//! cannot be written, the message is queued after all with the
//! recipients delivered so far marked done, so the local-delivery role
//! retries the rest with back-off and, in the end, reports it.
//!
//! Until the end of data the message is held in memory ([`Intake`]):
//! at most one chunk per session in DATA; a longer message goes to the
//! spool file at its second chunk.

use std::io;

use hato_core::config::{Config, LocalMethod};
use hato_core::policy::Destination;
use hato_core::queue::QueueEnvelope;
use hato_core::smtp::server::BODY_CHUNK;

use crate::store::{maildir, SpoolWriter, Store};

/// The most message data held in memory for direct delivery: one chunk
/// as the front ends write it (they hand over at least [`BODY_CHUNK`]
/// octets at a time, a little more when a read ends past it).
pub const HELD_LIMIT: usize = 2 * BODY_CHUNK;

/// A message being received: in memory while it may still go directly
/// into the Maildirs, else in its spool file.
#[derive(Debug)]
pub enum Intake {
    /// Held until the end of data.
    Held {
        /// The envelope, for the spool file should it be needed.
        env: Box<QueueEnvelope>,
        /// The data received so far (at most one chunk).
        body: Vec<u8>,
    },
    /// In `queue/incoming/`, on its way into the queue.
    Spooled(SpoolWriter),
}

impl Intake {
    /// Starts receiving `env` in memory (it is [`eligible`]); no disk work.
    pub fn held(env: Box<QueueEnvelope>) -> Self {
        Self::Held {
            env,
            body: Vec::new(),
        }
    }

    /// Starts receiving `env` into its spool file.
    ///
    /// # Errors
    /// The spool file cannot be created.
    pub fn spooled(store: &Store, env: &QueueEnvelope) -> io::Result<Self> {
        store.spool(env).map(Self::Spooled)
    }

    /// Appends message data; a held message that outgrows one chunk moves
    /// to its spool file.
    ///
    /// # Errors
    /// The spool file cannot be created or written.
    pub fn write(&mut self, store: &Store, chunk: &[u8]) -> io::Result<()> {
        match self {
            Self::Held { env, body } => {
                if body.is_empty() && chunk.len() <= HELD_LIMIT {
                    body.extend_from_slice(chunk);
                    return Ok(());
                }
                let mut spool = store.spool(env)?;
                spool.write(body)?;
                spool.write(chunk)?;
                *self = Self::Spooled(spool);
                Ok(())
            }
            Self::Spooled(spool) => spool.write(chunk),
        }
    }

    /// Drops the message: removes its spool file, if it has one.
    pub fn discard(self) {
        if let Self::Spooled(spool) = self {
            spool.discard();
        }
    }
}

/// Tells whether `env` may be delivered directly: local deliveries go to
/// Maildirs and every recipient is a local mailbox.
pub fn eligible(cfg: &Config, env: &QueueEnvelope) -> bool {
    matches!(cfg.delivery.local, LocalMethod::Maildir)
        && !env.recipients.is_empty()
        && env
            .recipients
            .iter()
            .all(|r| matches!(r.destination, Destination::Local(_)))
}

/// One recipient written into its Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The recipient's index in the envelope.
    pub idx: usize,
    /// The mailbox (after aliases).
    pub mailbox: String,
    /// The file name in `new/`.
    pub file: String,
}

/// What became of a direct delivery.
#[derive(Debug)]
pub struct Outcome {
    /// The recipients delivered, in order.
    pub delivered: Vec<Delivered>,
    /// The first recipient that could not be delivered, and why; the
    /// ones after it were not tried.
    pub failed: Option<(usize, String)>,
}

/// Writes `body` into the Maildir of every recipient of `env` whose index
/// is not in `skip` (duplicates), one after another; stops at the first
/// failure.
pub fn deliver(
    store: &Store,
    hostname: &str,
    env: &QueueEnvelope,
    body: &[u8],
    skip: &[usize],
) -> Outcome {
    let mut delivered = Vec::with_capacity(env.recipients.len());
    let mut writer = store.maildir_writer();
    for (idx, rcpt) in env.recipients.iter().enumerate() {
        let Destination::Local(mailbox) = &rcpt.destination else {
            continue;
        };
        if skip.contains(&idx) {
            continue;
        }
        // The name the queue would give it (`maildir::file_name`), so that
        // should the message be queued after all, recovery recognises
        // this copy.
        let file = maildir::file_name(&env.id, idx, env.received.0, hostname);
        let written = writer
            .prepare(mailbox, &file, &env.from, body)
            .and_then(|prepared| writer.publish(prepared))
            .and_then(|new| store.sync_maildir_new(&new));
        match written {
            Ok(()) => delivered.push(Delivered {
                idx,
                mailbox: mailbox.clone(),
                file,
            }),
            Err(e) => {
                return Outcome {
                    delivered,
                    failed: Some((idx, format!("maildir delivery to {mailbox} failed: {e}"))),
                }
            }
        }
    }
    Outcome {
        delivered,
        failed: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use hato_core::queue::QueuedRecipient;

    use super::*;
    use crate::store::testdir::{self, TestDir};

    fn envelope(store: &Store, to: &[&str]) -> QueueEnvelope {
        let to: Vec<Destination> = to
            .iter()
            .map(|t| Destination::Local((*t).to_owned()))
            .collect();
        testdir::envelope(store, &to)
    }

    fn new_files(store: &Store, mailbox: &str) -> Vec<String> {
        let dir = maildir::mailbox_dir(store.mailbox_root(), mailbox)
            .unwrap()
            .join("new");
        fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn only_all_local_maildir_messages_are_eligible() {
        let t = TestDir::new("direct-eligible");
        let store = Store::open(t.path()).unwrap();
        let mut cfg = Config::defaults("mail.example.test");
        let mut env = envelope(&store, &["b@example.test"]);
        assert!(eligible(&cfg, &env));
        env.recipients.push(QueuedRecipient {
            original: "c@else.example".into(),
            destination: Destination::Remote("c@else.example".into()),
        });
        assert!(!eligible(&cfg, &env), "a remote recipient takes the queue");
        env.recipients.pop();
        cfg.delivery.local =
            LocalMethod::Lmtp(hato_core::config::LmtpTarget::Unix("/run/lmtp".into()));
        assert!(!eligible(&cfg, &env), "LMTP takes the queue");
    }

    #[test]
    fn a_held_message_outgrowing_one_chunk_moves_to_its_spool_file() {
        let t = TestDir::new("direct-held");
        let store = Store::open(t.path()).unwrap();
        let cfg = Config::defaults("mail.example.test");
        let env = Box::new(envelope(&store, &["b@example.test"]));
        let id = env.id.clone();
        assert!(eligible(&cfg, &env));
        let mut intake = Intake::held(env);
        intake
            .write(&store, b"Subject: x\r\n\r\nsmall\r\n")
            .unwrap();
        assert!(matches!(intake, Intake::Held { .. }));
        let incoming = t.path().join("queue").join("incoming").join(&id);
        assert!(!incoming.exists(), "held in memory, no spool file");
        intake.write(&store, b"more\r\n").unwrap();
        let Intake::Spooled(spool) = intake else {
            panic!("a second chunk goes to the spool file");
        };
        assert!(incoming.exists());
        assert_eq!(spool.body_len(), 27);
        spool.commit().unwrap();
        let (_, mut body) = store.open_message(&id).unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut body, &mut text).unwrap();
        assert_eq!(text, "Subject: x\r\n\r\nsmall\r\nmore\r\n");
    }

    #[test]
    fn delivers_to_each_mailbox_except_the_skipped_and_stops_at_a_failure() {
        let t = TestDir::new("direct-deliver");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(
            &store,
            &["b@example.test", "c@example.test", "d@example.test"],
        );
        let out = deliver(
            &store,
            "mail.example.test",
            &env,
            b"Subject: x\r\n\r\nhi\r\n",
            &[1],
        );
        assert!(out.failed.is_none());
        assert_eq!(
            out.delivered.iter().map(|d| d.idx).collect::<Vec<_>>(),
            [0, 2]
        );
        let files = new_files(&store, "b@example.test");
        assert_eq!(files, [out.delivered[0].file.clone()]);
        let text = fs::read_to_string(
            maildir::mailbox_dir(store.mailbox_root(), "b@example.test")
                .unwrap()
                .join("new")
                .join(&files[0]),
        )
        .unwrap();
        assert_eq!(
            text,
            "Return-Path: <alice@example.net>\nDelivered-To: b@example.test\nSubject: x\n\nhi\n"
        );
        assert!(new_files(&store, "c@example.test").is_empty(), "skipped");

        // c's Maildir cannot be written: b is delivered, c fails, d is not tried.
        let env = envelope(
            &store,
            &["b@example.test", "c@example.test", "d@example.test"],
        );
        let c = maildir::mailbox_dir(store.mailbox_root(), "c@example.test").unwrap();
        fs::create_dir_all(c.parent().unwrap()).unwrap();
        fs::write(&c, "not a directory").unwrap();
        let out = deliver(&store, "mail.example.test", &env, b"\r\n", &[]);
        assert_eq!(out.delivered.iter().map(|d| d.idx).collect::<Vec<_>>(), [0]);
        let (idx, why) = out.failed.unwrap();
        assert_eq!(idx, 1);
        assert!(why.contains("c@example.test"), "{why}");
        assert_eq!(
            new_files(&store, "d@example.test").len(),
            1,
            "from the first message only"
        );
        let _ = fs::set_permissions(&c, fs::Permissions::from_mode(0o600));
    }
}
