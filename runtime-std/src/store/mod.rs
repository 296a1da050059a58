//! Everything hato writes to disk under `data_dir` (DESIGN.md §4).
//!
//! ```text
//! data_dir/
//!   queue/<ID>            one queued message: envelope header + body
//!                         (format: `hato_core::queue`), complete and fsynced
//!   queue/<ID>.done       delivery progress: indexes of finished recipients
//!                         (created by its first line, see `progress`; most
//!                         messages never have one)
//!   queue/incoming/<ID>   a message being received; renamed into queue/
//!                         only once complete and fsynced
//!   mailboxes/<domain>/<local>/{tmp,new,cur}   Maildir; files named after
//!                         the queue id and recipient (see `maildir`)
//!   users                 mailboxes and password hashes (passwd-file)
//!   state/policy          rate, penalty, trap-block, greylisting and
//!                         duplicate records (see `policy`)
//!   state/lock, state/control   the running server's lock and control
//!                         socket (see `crate::control`)
//! ```
//!
//! Directories are created 0700 and files 0600: mail is private.
//! Every function here blocks; `hato-smol` calls them through
//! `smol::unblock`. A [`Store`] is `Send + Sync` and meant to be shared in
//! an `Arc`.

mod fsutil;
mod group_sync;
mod id;
pub mod maildir;
pub mod owner;
mod policy;
mod progress;
mod queue;
mod settle;
mod spool;
pub mod users;
mod users_cache;

#[cfg(test)]
pub(crate) mod testdir;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hato_core::queue::is_valid_queue_id;

use crate::log;
use group_sync::GroupSync;

/// The most Maildir `new/` barriers kept (one per mailbox in use, each
/// holding its directory open).
const MAX_NEW_DIR_BARRIERS: usize = 256;

pub(crate) use fsutil::remove_if_exists as remove_file_if_exists;
pub use policy::POLICY_FILE;
pub use progress::{Progress, RecordedFailure};
pub use queue::{Body, QueueSummary, RecipientState};
pub use settle::Settled;
pub use spool::SpoolWriter;
pub use users_cache::UsersCache;

/// The data directory, opened: paths to its parts and the operations on them.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    queue: PathBuf,
    incoming: PathBuf,
    mailboxes: PathBuf,
    state: PathBuf,
    /// Who owns the Maildirs (`delivery.mailbox_owner`); `None`: this process.
    owner: Option<owner::Owner>,
    /// The shared fsync barrier of `queue/` (see `group_sync`).
    queue_sync: Arc<GroupSync>,
    /// Messages known to have no progress file, or one whose name may not
    /// be durable yet (see `progress`).
    progress_known: Arc<Mutex<progress::Known>>,
    /// The Maildirs made sure of and their `new/` fsync barriers, shared
    /// by every [`maildir::Writer`] of this store
    /// ([`Store::maildir_writer`], [`Store::sync_maildir_new`]).
    maildirs: maildir::Known,
}

impl Store {
    /// Opens the data directory for the server: creates `queue/`,
    /// `queue/incoming/`, `mailboxes/` and `state/` (0700) when missing,
    /// then removes what a crash left behind: messages in `queue/incoming/`
    /// that were never answered with 250, and progress files whose message
    /// is gone. Each removal is logged. Finally it fsyncs `queue/`, so the
    /// names of progress files that the previous run created without an
    /// fsync of `queue/` (lazy lines, see `progress`) are durable before
    /// anything relies on them.
    ///
    /// Messages found in `queue/` are left to delivery, which settles each
    /// one before delivering it: the recipients recorded in its progress
    /// file, and those whose Maildir file is there already (see `settle`).
    ///
    /// Only the server calls this, once, before it accepts connections;
    /// commands that run beside a live server use [`Store::attach`].
    ///
    /// # Errors
    /// A directory cannot be created or read, or a leftover cannot be removed.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let mut store = Self::attach(data_dir)?;
        // The server removes progress files in the background (see
        // `Store::remove`).
        store.queue_sync = Arc::new(GroupSync::new(store.queue.clone(), true));
        store.remove_leftovers()?;
        Ok(store)
    }

    /// Opens the data directory like [`Store::open`] but removes nothing,
    /// so it is safe while a server is receiving mail into the same
    /// directory (`hato queue`, `hato user`).
    ///
    /// # Errors
    /// A directory cannot be created.
    pub fn attach(data_dir: &Path) -> io::Result<Self> {
        let queue = data_dir.join("queue");
        let store = Self {
            data_dir: data_dir.to_path_buf(),
            incoming: queue.join("incoming"),
            queue_sync: Arc::new(GroupSync::new(queue.clone(), false)),
            queue,
            mailboxes: data_dir.join("mailboxes"),
            state: data_dir.join("state"),
            owner: None,
            progress_known: Arc::default(),
            maildirs: maildir::Known::default(),
        };
        for dir in [&store.incoming, &store.mailboxes, &store.state] {
            fsutil::create_private_dir_all(dir)?;
        }
        Ok(store)
    }

    /// Finishes the removals that wait for an fsync of `queue/` (see
    /// [`Store::remove`]); the server calls it when it stops.
    ///
    /// # Errors
    /// The fsync failed: the progress files stay, and the next start
    /// removes them.
    pub fn flush_removals(&self) -> io::Result<()> {
        self.queue_sync.flush()
    }

    /// Returns the data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns `data_dir/mailboxes`, the root of the Maildirs.
    pub fn mailbox_root(&self) -> &Path {
        &self.mailboxes
    }

    /// Returns the owner given to new Maildir directories and files.
    pub fn mailbox_owner(&self) -> Option<owner::Owner> {
        self.owner
    }

    /// Makes the renames into a Maildir's `new/` (as
    /// [`maildir::Writer::publish`] returns it) made before this call
    /// durable: waits for an fsync of `new/` that started after the call.
    /// Sessions and delivery agents that deliver into the same Maildir at
    /// the same moment share that fsync (group commit, as `queue/`'s).
    ///
    /// # Errors
    /// The fsync failed.
    pub fn sync_maildir_new(&self, new: &Path) -> io::Result<()> {
        let barrier = {
            let mut known = self.maildirs.lock().unwrap_or_else(PoisonError::into_inner);
            let dirs = &mut known.new_barriers;
            if dirs.len() >= MAX_NEW_DIR_BARRIERS {
                // Bounded (open directories): a site with more mailboxes in
                // use than this starts over.
                dirs.clear();
            }
            Arc::clone(
                dirs.entry(new.to_path_buf())
                    .or_insert_with(|| Arc::new(GroupSync::new(new.to_path_buf(), false))),
            )
        };
        barrier.sync()
    }

    /// A Maildir writer for this store's mailboxes and owner; the writers
    /// share which Maildirs exist, so each is checked once.
    pub fn maildir_writer(&self) -> maildir::Writer {
        maildir::Writer::sharing(&self.mailboxes, self.owner, Arc::clone(&self.maildirs))
    }

    /// Makes `owner` the owner of the Maildirs written from now on
    /// (`delivery.mailbox_owner`): gives it `mailboxes/`, and lets its
    /// group traverse `data_dir` (group set to the owner's, plus the group
    /// search bit: 0700 becomes 0710), so it reaches `mailboxes/` and
    /// nothing else: queue, users and state stay 0700 / 0600. Existing Maildirs are not changed.
    ///
    /// # Errors
    /// This process can neither give files away (not root) nor is it the
    /// owner; or a chown / chmod failed.
    pub fn set_mailbox_owner(&mut self, owner: owner::Owner) -> io::Result<()> {
        if let Some(me) = owner::effective_uid().filter(|&me| me != 0 && me != owner.uid) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "delivery.mailbox_owner ({owner}): hato runs as uid {me} and cannot give \
                     mailboxes to another user; run it as root, or as that user"
                ),
            ));
        }
        let explain = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("delivery.mailbox_owner ({owner}): cannot {what}: {e}"),
            )
        };
        if !owner.owns(&self.mailboxes) {
            owner
                .apply(&self.mailboxes)
                .map_err(|e| explain("give mailboxes/ to it", e))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let meta = fs::metadata(&self.data_dir).map_err(|e| explain("read data_dir", e))?;
            if meta.gid() != owner.gid {
                std::os::unix::fs::chown(&self.data_dir, None, Some(owner.gid))
                    .map_err(|e| explain("give data_dir's group to it", e))?;
            }
            if meta.mode() & 0o010 == 0 {
                let mode = (meta.mode() & 0o7777) | 0o010;
                fs::set_permissions(&self.data_dir, fs::Permissions::from_mode(mode))
                    .map_err(|e| explain("let its group traverse data_dir", e))?;
            }
        }
        self.owner = Some(owner);
        Ok(())
    }

    /// Returns `data_dir/state`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Returns `data_dir/queue`.
    pub fn queue_dir(&self) -> &Path {
        &self.queue
    }

    /// Returns a new queue id: 16 characters of `0-9A-V`, unique across
    /// processes and restarts, sorting in the order the ids were made.
    pub fn new_queue_id(&self) -> String {
        id::new_queue_id()
    }

    /// Returns `queue/<id>`, refusing anything that is not a queue id (ids
    /// also come from the command line and must never name another path).
    fn queue_path(&self, id: &str) -> io::Result<PathBuf> {
        check_id(id)?;
        Ok(self.queue.join(id))
    }

    fn remove_leftovers(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.incoming)? {
            let entry = entry?;
            let name = entry.file_name();
            fs::remove_file(entry.path())?;
            log::Line::new("cleanup")
                .kv("id", name.to_string_lossy())
                .kv("reason", "incomplete message from before a restart")
                .emit();
        }
        fsutil::sync_dir(&self.incoming)?;
        for entry in fs::read_dir(&self.queue)? {
            let name = entry?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(progress::SUFFIX)) else {
                continue;
            };
            if is_valid_queue_id(id) && !self.queue.join(id).exists() {
                fsutil::remove_if_exists(&self.queue.join(&name))?;
                log::Line::new("cleanup")
                    .kv("id", id)
                    .kv("reason", "progress file of a message no longer queued")
                    .emit();
            }
        }
        fsutil::sync_dir(&self.queue)
    }
}

fn check_id(id: &str) -> io::Result<()> {
    if is_valid_queue_id(id) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a queue id: {id:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::testdir::TestDir;
    use super::*;

    #[test]
    fn maildir_new_barriers_are_one_per_directory_and_report_failures() {
        let t = TestDir::new("new-barriers");
        let store = Store::open(&t.path().join("data")).unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        store.sync_maildir_new(&a).unwrap();
        store.sync_maildir_new(&a).unwrap();
        store.sync_maildir_new(&b).unwrap();
        assert_eq!(store.maildirs.lock().unwrap().new_barriers.len(), 2);
        let missing = store.sync_maildir_new(&t.path().join("missing"));
        assert!(missing.is_err(), "an fsync that cannot run is an error");
    }

    #[test]
    fn a_maildir_made_again_gets_a_new_barrier() {
        let t = TestDir::new("new-barrier-again");
        let store = Store::open(&t.path().join("data")).unwrap();
        let mut writer = store.maildir_writer();
        let mut deliver = |name: &str| {
            let prepared = writer
                .prepare("bob@example.org", name, "<a@b>", &b"x\r\n"[..])
                .unwrap();
            let new = writer.publish(prepared).unwrap();
            store.sync_maildir_new(&new).unwrap();
            new
        };
        let new = deliver("one");
        let barrier = |store: &Store| {
            let known = store.maildirs.lock().unwrap();
            known.new_barriers.get(&new).map(Arc::clone)
        };
        let first = barrier(&store).unwrap();
        // The administrator removes the mailbox while hato runs.
        fs::remove_dir_all(new.parent().unwrap()).unwrap();
        deliver("two");
        let second = barrier(&store).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "the barrier of the removed new/ (its handle names the old directory) is not reused"
        );
        assert!(new.join("two").exists());
    }

    #[test]
    #[cfg(unix)]
    fn a_mailbox_owner_gets_mailboxes_and_may_traverse_data_dir() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if owner::effective_uid() != Some(0) {
            eprintln!("skipped: giving files away needs root");
            return;
        }
        let t = TestDir::new("owner-layout");
        let mut store = Store::open(&t.path().join("data")).unwrap();
        let nobody = owner::Owner {
            uid: 65534,
            gid: 65534,
        };
        store.set_mailbox_owner(nobody).unwrap();
        assert_eq!(store.mailbox_owner(), Some(nobody));
        let m = fs::metadata(store.mailbox_root()).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (65534, 65534, 0o700));
        let d = fs::metadata(store.data_dir()).unwrap();
        assert_eq!((d.uid(), d.gid(), d.mode() & 0o777), (0, 65534, 0o710));
        for private in ["queue", "state"] {
            let m = fs::metadata(store.data_dir().join(private)).unwrap();
            assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o700));
        }
    }

    #[test]
    fn open_creates_the_layout_private() {
        let t = TestDir::new("layout");
        let store = Store::open(&t.path().join("data")).unwrap();
        for sub in ["queue", "queue/incoming", "mailboxes", "state"] {
            let dir = store.data_dir().join(sub);
            assert!(dir.is_dir(), "{sub}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&dir).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o700, "{sub}");
            }
        }
    }

    #[test]
    fn open_removes_incoming_leftovers_and_orphan_progress() {
        let t = TestDir::new("leftovers");
        let store = Store::open(t.path()).unwrap();
        fs::write(store.incoming.join("0000CRASHED00001"), b"half a message").unwrap();
        fs::write(store.queue.join("0000ORPHAN000001.done"), b"0\n").unwrap();
        fs::write(store.queue.join("0000KEPT00000001"), b"x").unwrap();
        fs::write(store.queue.join("0000KEPT00000001.done"), b"0\n").unwrap();
        let store = Store::open(t.path()).unwrap();
        assert_eq!(fs::read_dir(&store.incoming).unwrap().count(), 0);
        assert!(!store.queue.join("0000ORPHAN000001.done").exists());
        assert!(store.queue.join("0000KEPT00000001.done").exists());
        // attach never removes anything.
        fs::write(store.incoming.join("0000RECEIVING001"), b"x").unwrap();
        let store = Store::attach(t.path()).unwrap();
        assert!(store.incoming.join("0000RECEIVING001").exists());
    }

    #[test]
    fn paths_refuse_what_is_not_a_queue_id() {
        let t = TestDir::new("ids");
        let store = Store::open(t.path()).unwrap();
        for bad in ["", "../users", "abc", "A/B", "A.done"] {
            assert!(store.queue_path(bad).is_err(), "{bad}");
        }
        assert!(store.queue_path("0ABC").is_ok());
    }
}
