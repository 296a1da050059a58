//! Receiving a message into the queue: the envelope header and the body
//! go to `queue/incoming/<id>`; [`SpoolWriter::commit`] fsyncs the file,
//! renames it to `queue/<id>` and fsyncs `queue/`. A message is in the
//! queue exactly when it is in `queue/`, and only then may the server
//! answer 250 (RFC 5321 §6.1: once it has said 250, the server owns the
//! message). A writer dropped without commit removes its file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use hato_core::queue::QueueEnvelope;

use super::{check_id, fsutil, Store};
use crate::log;

/// Write buffer size: DATA arrives in chunks of about this size.
const BUFFER: usize = 64 * 1024;

/// A message being written to `queue/incoming/`.
#[derive(Debug)]
pub struct SpoolWriter {
    id: String,
    incoming: PathBuf,
    queued: PathBuf,
    queue_dir: PathBuf,
    out: Option<BufWriter<File>>,
    body_len: u64,
}

impl Store {
    /// Starts spooling a message: creates `queue/incoming/<env.id>` (0600)
    /// and writes the envelope header.
    ///
    /// # Errors
    /// The id is not a queue id or already in use, or the file cannot be
    /// created or written.
    pub fn spool(&self, env: &QueueEnvelope) -> io::Result<SpoolWriter> {
        check_id(&env.id)?;
        let queued = self.queue.join(&env.id);
        if queued.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("queue id {} is already queued", env.id),
            ));
        }
        let incoming = self.incoming.join(&env.id);
        let file = fsutil::create_private_file(&incoming)?;
        let mut writer = SpoolWriter {
            id: env.id.clone(),
            incoming,
            queued,
            queue_dir: self.queue.clone(),
            out: Some(BufWriter::with_capacity(BUFFER, file)),
            body_len: 0,
        };
        writer.out_mut()?.write_all(&env.encode())?;
        Ok(writer)
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

    /// Appends message bytes.
    ///
    /// # Errors
    /// The write fails (disk full, ...): answer 451 and drop the writer.
    pub fn write(&mut self, body: &[u8]) -> io::Result<()> {
        self.out_mut()?.write_all(body)?;
        self.body_len += body.len() as u64;
        Ok(())
    }

    /// Makes the message durable and queued: flush, fsync the file, rename
    /// it into `queue/`, fsync `queue/`. Only after `Ok` may the server
    /// answer 250. On error nothing is queued and the file is removed.
    ///
    /// # Errors
    /// Any of the steps fails.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(closed());
        };
        let result = commit_file(out, &self);
        if result.is_err() {
            // Whatever step failed, leave nothing behind: the client is
            // told 451 and will send the message again.
            let _ = fs::remove_file(&self.incoming);
            let _ = fs::remove_file(&self.queued);
        }
        result
    }

    /// Abandons the message and removes its file.
    pub fn discard(self) {
        // Drop does it.
    }

    fn out_mut(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out.as_mut().ok_or_else(closed)
    }
}

fn commit_file(out: BufWriter<File>, w: &SpoolWriter) -> io::Result<()> {
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&w.incoming, &w.queued)?;
    fsutil::sync_dir(&w.queue_dir)
}

fn closed() -> io::Error {
    io::Error::other("spool file already closed")
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        let Some(out) = self.out.take() else {
            return; // committed, or commit cleaned up
        };
        // Do not flush what is about to be deleted.
        let (file, _unflushed) = out.into_parts();
        drop(file);
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
        let mut back = Vec::new();
        store
            .open_body(&env.id)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
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
    fn spool_refuses_an_id_in_use_or_unsafe() {
        let t = TestDir::new("spool-ids");
        let store = Store::open(t.path()).unwrap();
        let env = envelope(&store, &[local("bob@example.org")]);
        store.spool(&env).unwrap().commit().unwrap();
        assert!(store.spool(&env).is_err());
        let mut bad = env.clone();
        bad.id = "../../etc".into();
        assert!(store.spool(&bad).is_err());
    }
}
