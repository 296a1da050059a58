//! Receiving a message into the queue: the envelope header and the body
//! go to `queue/incoming/<id>`; [`SpoolWriter::commit`] fdatasyncs the
//! file, renames it to `queue/<id>` and waits for an fsync of `queue/`
//! that covers the rename (group commit: sessions finishing DATA together
//! share that fsync, see `group_sync`). A message is in the queue exactly
//! when it is in `queue/`, and only then may the server answer 250 (RFC
//! 5321 §6.1: once it has said 250, the server owns the message). A writer
//! dropped without commit removes its file.
//!
//! `fdatasync` is enough for the file: it writes the data and the
//! metadata needed to read it back (its size and blocks), leaving out
//! only times. The rename never replaces a queued message (on Linux
//! `renameat2(RENAME_NOREPLACE)`, elsewhere a check before it); ids are
//! unique, so that is a guard, not a lookup that every message pays for.
//!
//! No progress file is made here (see `progress`): local delivery needs
//! none, and the store notes in memory that the message has none, so
//! delivery's first attempt reads nothing but the queue file.

use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hato_core::queue::QueueEnvelope;

use std::sync::Mutex;

use super::group_sync::GroupSync;
use super::{check_id, fsutil, progress, Store};
use crate::log;

/// A message being written to `queue/incoming/`.
#[derive(Debug)]
pub struct SpoolWriter {
    id: String,
    incoming: PathBuf,
    queued: PathBuf,
    queue_sync: Arc<GroupSync>,
    progress_known: Arc<Mutex<progress::Known>>,
    out: Option<File>,
    /// The encoded envelope, written together with the first body bytes
    /// (one `writev`), or at commit for an empty body.
    header: Vec<u8>,
    body_len: u64,
}

impl Store {
    /// Starts spooling a message: creates `queue/incoming/<env.id>` (0600);
    /// the envelope header goes out with the first body bytes.
    ///
    /// # Errors
    /// The id is not a queue id or being received, or the file cannot be
    /// created or written. (An id already queued fails at commit.)
    pub fn spool(&self, env: &QueueEnvelope) -> io::Result<SpoolWriter> {
        check_id(&env.id)?;
        let incoming = self.incoming.join(&env.id);
        let file = fsutil::create_private_file(&incoming)?;
        Ok(SpoolWriter {
            id: env.id.clone(),
            incoming,
            queued: self.queue.join(&env.id),
            queue_sync: Arc::clone(&self.queue_sync),
            progress_known: Arc::clone(&self.progress_known),
            out: Some(file),
            header: env.encode(),
            body_len: 0,
        })
    }
}

impl SpoolWriter {
    /// Returns the queue id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns how many body bytes were written.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Appends message bytes, straight to the file: no buffer of its own,
    /// so the body is copied once, from the session's buffer into the
    /// kernel. The caller passes large chunks (the session gathers up to
    /// `BODY_CHUNK`).
    ///
    /// # Errors
    /// The write fails (disk full, ...): answer 451 and drop the writer.
    pub fn write(&mut self, body: &[u8]) -> io::Result<()> {
        let header = std::mem::take(&mut self.header);
        let out = self.out.as_mut().ok_or_else(closed)?;
        write_both(out, &header, body)?;
        self.body_len += body.len() as u64;
        Ok(())
    }

    /// Makes the message durable and queued: fdatasync the file, rename it
    /// into `queue/` (never over a queued message), wait for the shared
    /// fsync of `queue/`. Only after `Ok` may the server answer 250. On
    /// error nothing is queued and the file is removed.
    ///
    /// # Errors
    /// Any of the steps fails; `AlreadyExists` when the id is queued.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(closed());
        };
        let result = commit_file(out, &self);
        match &result {
            Ok(()) => progress::note_absent(&self.progress_known, &self.id),
            // Whatever step failed, leave nothing behind: the client is
            // told 451 and will send the message again. A message that was
            // queued under this id already is not ours to remove.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&self.incoming);
            }
            Err(_) => {
                let _ = fs::remove_file(&self.incoming);
                let _ = fs::remove_file(&self.queued);
            }
        }
        result
    }

    /// Abandons the message and removes its file.
    pub fn discard(self) {
        // Drop does it.
    }
}

/// Writes `first` then `second`, in one `writev` when the kernel takes
/// them whole.
fn write_both(out: &mut File, mut first: &[u8], mut second: &[u8]) -> io::Result<()> {
    while !first.is_empty() {
        let n = match out.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n < first.len() {
            first = first.get(n..).unwrap_or_default();
        } else {
            second = second.get(n - first.len()..).unwrap_or_default();
            first = &[];
        }
    }
    out.write_all(second)
}

fn commit_file(mut file: File, w: &SpoolWriter) -> io::Result<()> {
    if !w.header.is_empty() {
        file.write_all(&w.header)?; // an empty message
    }
    // Announced before the file's fsync, so that a barrier about to start
    // may wait a moment for this commit (see `group_sync`).
    let arriving = w.queue_sync.arriving();
    file.sync_data()?;
    drop(file);
    rename_no_replace(&w.incoming, &w.queued).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(e.kind(), format!("queue id {} is already queued", w.id))
        } else {
            e
        }
    })?;
    // Sessions that get here at the same time share one barrier.
    arriving.sync()
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // A file system without RENAME_NOREPLACE: check, then rename.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    fs::rename(from, to)
}

fn closed() -> io::Error {
    io::Error::other("spool file already closed")
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        let Some(out) = self.out.take() else {
            return; // committed, or commit cleaned up
        };
        drop(out);
        if let Err(e) = fs::remove_file(&self.incoming) {
            log::Line::new("error")
                .kv("id", &self.id)
                .kv("reason", format!("cannot remove discarded spool file: {e}"))
                .emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use hato_core::policy::Destination;

    use super::super::testdir::{envelope, TestDir};
    use super::*;

    fn local(a: &str) -> Destination {
        Destination::Local(a.into())
    }

    #[test]
    fn spool_is_not_visible_in_queue_before_commit() {
        let t = TestDir::new("spool-visible");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        let mut w = store.spool(&env).unwrap();
        w.write(b"Subject: hi\r\n\r\nhello\r\n").unwrap();
        assert!(store.queued().unwrap().is_empty());
        assert!(store.incoming.join(&env.id).exists());
        w.commit().unwrap();
        assert_eq!(store.queued().unwrap(), vec![env.id.clone()]);
        assert!(!store.incoming.join(&env.id).exists());
    }

    #[test]
    fn discard_and_drop_remove_the_incoming_file() {
        let t = TestDir::new("spool-discard");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        let mut w = store.spool(&env).unwrap();
        w.write(b"partial").unwrap();
        w.discard();
        assert!(!store.incoming.join(&env.id).exists());

        let env = envelope(&store, &[local("bob@example.org")]);
        {
            let mut w = store.spool(&env).unwrap();
            w.write(b"partial").unwrap();
        }
        assert!(!store.incoming.join(&env.id).exists());
        assert!(store.queued().unwrap().is_empty());
    }

    #[test]
    fn commit_then_read_back_envelope_and_body() {
        let t = TestDir::new("spool-commit");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        let mut body = Vec::new();
        for i in 0..5_000 {
            body.extend_from_slice(format!("line {i} of a long message\r\n").as_bytes());
        }
        let mut w = store.spool(&env).unwrap();
        for chunk in body.chunks(64 * 1024) {
            w.write(chunk).unwrap();
        }
        assert_eq!(w.body_len(), body.len() as u64);
        w.commit().unwrap();
        assert_eq!(store.read_envelope(&env.id).unwrap(), env);
        let back = body_of(&store, &env.id);
        assert_eq!(back, body);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.queue.join(&env.id))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_empty_message_keeps_its_envelope_and_gets_no_progress_file() {
        let t = TestDir::new("spool-empty");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        let progress = store.queue.join(format!("{}{}", env.id, progress::SUFFIX));
        let w = store.spool(&env).unwrap();
        w.commit().unwrap();
        assert!(!progress.exists());
        assert!(store.has_no_progress(&env.id));
        assert_eq!(store.read_envelope(&env.id).unwrap(), env);
        let back = body_of(&store, &env.id);
        assert!(back.is_empty());
        // The first line creates it.
        store.mark_delivered(&env.id, 0).unwrap();
        assert_eq!(fs::read(&progress).unwrap(), b"0\n");
        assert_eq!(store.delivered(&env.id).unwrap(), vec![0]);
        store.remove(&env.id).unwrap();
        store.flush_removals().unwrap();
        assert!(!progress.exists());
    }

    #[test]
    fn a_failed_commit_leaves_nothing_behind() {
        let t = TestDir::new("spool-fail");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        let progress = store.queue.join(format!("{}{}", env.id, progress::SUFFIX));
        let mut w = store.spool(&env).unwrap();
        w.write(b"Subject: x\r\n\r\nbody\r\n").unwrap();
        // The rename cannot happen: a directory holds the message's name.
        fs::create_dir(store.queue.join(&env.id)).unwrap();
        fs::write(store.queue.join(&env.id).join("x"), b"x").unwrap();
        assert!(w.commit().is_err());
        assert!(!store.incoming.join(&env.id).exists());
        assert!(!progress.exists());
    }

    #[test]
    fn spool_refuses_an_id_in_use_or_unsafe() {
        let t = TestDir::new("spool-ids");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        let mut first = store.spool(&env).unwrap();
        first.write(b"first").unwrap();
        // Being received: the incoming file is taken.
        assert!(store.spool(&env).is_err());
        first.commit().unwrap();
        // Queued: the second commit fails and leaves the first alone.
        let mut second = store.spool(&env).unwrap();
        second.write(b"second").unwrap();
        let err = second.commit().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let back = body_of(&store, &env.id);
        assert_eq!(back, b"first");
        assert!(!store.incoming.join(&env.id).exists());
        let mut bad = env.clone();
        bad.id = "../../etc".into();
        assert!(store.spool(&bad).is_err());
    }

    fn body_of(store: &Store, id: &str) -> Vec<u8> {
        let mut back = Vec::new();
        store.open_body(id).unwrap().read_to_end(&mut back).unwrap();
        back
    }
}
