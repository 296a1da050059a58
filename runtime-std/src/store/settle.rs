//! Which recipients of a queued message are finished, before an attempt
//! that is not the message's first (after a restart, a failed attempt, or
//! its return from remote delivery) and for the administrator's queue
//! commands: those its progress file lists, and each local recipient
//! whose copy is in its Maildir although no line says so.
//!
//! A Maildir delivery writes no fsynced line (see `progress`): its file's
//! name is derived from the queue id and the recipient (see `maildir`),
//! and the rename into `new/` is fsynced before the line is written or
//! the message leaves the queue. So after a crash, or a failure between
//! that fsync and the line, the file itself tells: found in `new/` or
//! `cur/`, the recipient is done, and must not get a second copy. Intent
//! lines of older versions name their (random) files, which are looked
//! for the same way; a `tmp/` leftover of one is removed.

use std::io;
use std::path::PathBuf;

use hato_core::policy::Destination;
use hato_core::queue::QueueEnvelope;

use super::{maildir, Store};

/// The finished recipients of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Indexes of the recipients the progress file lists, sorted.
    pub recorded: Vec<usize>,
    /// The local recipients found in their Maildir without a line:
    /// (index, the file's path in `new/` or `cur/`). Whether the rename
    /// that put it there is durable is not known: fsync its directory
    /// before counting on it.
    pub found: Vec<(usize, PathBuf)>,
}

impl Settled {
    /// Indexes of every finished recipient, recorded or found, sorted.
    pub fn finished(&self) -> Vec<usize> {
        let mut done = self.recorded.clone();
        done.extend(self.found.iter().map(|(idx, _)| *idx));
        done.sort_unstable();
        done.dedup();
        done
    }
}

impl Store {
    /// Returns the finished recipients of `env` (see the module docs).
    /// `hostname`, when known, lets a copy still in `new/` be found with
    /// one `stat`; otherwise `new/` and `cur/` are read.
    ///
    /// # Errors
    /// The progress file or a Maildir cannot be read.
    pub fn settle(&self, env: &QueueEnvelope, hostname: Option<&str>) -> io::Result<Settled> {
        let progress = self.progress(&env.id)?;
        let mut found = Vec::new();
        for (idx, rcpt) in env.recipients.iter().enumerate() {
            let Destination::Local(address) = &rcpt.destination else {
                continue;
            };
            if progress.done.binary_search(&idx).is_ok() {
                continue;
            }
            let mut file = None;
            for (_, name) in progress.intents.iter().filter(|(i, _)| *i == idx) {
                file = maildir::find_named(&self.mailboxes, address, name)?;
                if file.is_some() {
                    break;
                }
                maildir::remove_leftover(&self.mailboxes, address, name);
            }
            if file.is_none() {
                let secs = env.received.0;
                let unique = maildir::unique_part(&env.id, idx, secs);
                let name = hostname.map(|h| maildir::file_name(&env.id, idx, secs, h));
                let root = &self.mailboxes;
                file = match maildir::find_delivered(root, address, &unique, name.as_deref()) {
                    Ok(file) => file,
                    // Not a mailbox name: delivery says so when it tries.
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => None,
                    Err(e) => return Err(e),
                };
            }
            if let Some(file) = file {
                found.push((idx, file));
            }
        }
        Ok(Settled {
            recorded: progress.done,
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use hato_core::policy::Destination;

    use super::super::testdir::{envelope, TestDir};
    use super::*;

    #[test]
    fn copies_in_the_maildir_count_as_done_without_a_line() {
        let t = TestDir::new("settle");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(
            &store,
            &[
                Destination::Local("bob@example.org".into()),
                Destination::Local("carol@example.org".into()),
                Destination::Remote("dave@partner.example".into()),
                Destination::Local("erin@example.org".into()),
                Destination::Local("frank@example.org".into()),
            ],
        );
        let name = |idx| maildir::file_name(&env.id, idx, env.received.0, "mx.example.org");
        let root = store.mailbox_root();
        // bob: delivered, its line lost; carol: not delivered; erin: a
        // reader moved it to cur/, under the earlier host name.
        maildir::deliver(root, "bob@example.org", &name(0), "<>", &b"x"[..]).unwrap();
        maildir::deliver(root, "erin@example.org", &name(3), "<>", &b"x"[..]).unwrap();
        let erin = root.join("example.org/erin");
        fs::rename(
            erin.join("new").join(name(3)),
            erin.join("cur").join(format!("{},S=40:2,S", name(3))),
        )
        .unwrap();
        // frank: an older version's intent whose file got to new/, and a
        // torn try of carol's that left its tmp/ file.
        let old = "1700000000.M1P2Q3.mx.example.org";
        maildir::deliver(root, "frank@example.org", old, "<>", &b"x"[..]).unwrap();
        let carol_tmp = root.join("example.org/carol/tmp");
        fs::create_dir_all(&carol_tmp).unwrap();
        fs::write(carol_tmp.join("1700000000.M9P9Q9.h"), b"half").unwrap();
        let progress = store.queue_dir().join(format!("{}.done", env.id));
        fs::write(
            &progress,
            format!("intent 4 {old}\nintent 1 1700000000.M9P9Q9.h\n2\n"),
        )
        .unwrap();

        let settled = store.settle(&env, Some("mx.example.org")).unwrap();
        let erin_file = format!("{},S=40:2,S", name(3));
        assert_eq!(settled.recorded, vec![2]);
        assert_eq!(settled.finished(), vec![0, 2, 3, 4]);
        let new = |user: &str| root.join("example.org").join(user).join("new");
        assert_eq!(
            settled.found,
            vec![
                (0, new("bob").join(name(0))),
                (3, erin.join("cur").join(&erin_file)),
                (4, new("frank").join(old)),
            ]
        );
        assert_eq!(fs::read_dir(&carol_tmp).unwrap().count(), 0);
        // Without the host name: the same, by reading the directories.
        let again = store.settle(&env, None).unwrap();
        assert_eq!(again, settled);
    }
}
