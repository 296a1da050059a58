//! Reading the queue: the ids waiting in `queue/`, a message's envelope
//! and body, removal once every recipient is done, and the summary behind
//! `hato queue list`.

use std::fs::{self, File};
use std::io::{self, BufReader, Chain, Cursor, Read};

use hato_core::policy::Destination;
use hato_core::queue::{header_len, is_valid_queue_id, QueueEnvelope};
use hato_core::time::UnixTime;

use super::{fsutil, progress, Store};
use crate::log;

/// The largest header read: 1 MiB holds thousands of recipients.
const MAX_HEADER: usize = 1 << 20;
/// How much is read at a time while looking for the end of the header:
/// enough for the whole of a typical message, whose body then needs no
/// read (and no seek) of its own.
const HEADER_CHUNK: usize = 16 * 1024;

/// The body of a queued message: the bytes read with its header, then
/// the rest of the file.
pub type Body = BufReader<Chain<Cursor<Vec<u8>>, File>>;

/// One queued message, for `hato queue list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSummary {
    /// The queue id.
    pub id: String,
    /// When it was received.
    pub received: UnixTime,
    /// The reverse-path with brackets.
    pub from: String,
    /// Message size in bytes (the body, without the envelope header).
    pub size: u64,
    /// The recipients, in envelope order: the forward-path as the client
    /// gave it, where it goes, and how far it got.
    pub recipients: Vec<(String, Destination, RecipientState)>,
}

/// How far one recipient of a queued message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Not finished: delivery goes on.
    Waiting,
    /// Delivered.
    Delivered,
    /// Failed for good; named in the message's report.
    Failed,
}

impl RecipientState {
    /// The word `hato queue list` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl Store {
    /// Returns the ids of the queued messages, oldest first (ids sort by
    /// the time they were made).
    ///
    /// # Errors
    /// `queue/` cannot be read.
    pub fn queued(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.queue)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_valid_queue_id(&name) && entry.file_type()?.is_file() {
                ids.push(name);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Reads the envelope of a queued message.
    ///
    /// # Errors
    /// `NotFound` when the message is not queued, `InvalidData` (carrying
    /// a [`hato_core::queue::QueueFileError`]) when the file is damaged.
    pub fn read_envelope(&self, id: &str) -> io::Result<QueueEnvelope> {
        self.open_message(id).map(|(env, _)| env)
    }

    /// Opens the message body of a queued message, positioned after the
    /// envelope header.
    ///
    /// # Errors
    /// As [`Store::read_envelope`].
    pub fn open_body(&self, id: &str) -> io::Result<impl Read + Send + 'static> {
        self.open_message(id).map(|(_, body)| body)
    }

    /// Opens a queued message: its envelope, and its body (buffered),
    /// which starts with what was read past the header: no seek, and for
    /// a message of a few KB no further read but the one that finds its end.
    ///
    /// # Errors
    /// As [`Store::read_envelope`].
    pub fn open_message(&self, id: &str) -> io::Result<(QueueEnvelope, Body)> {
        let (env, file, offset, read) = self.open_checked(id)?;
        let mut start = Cursor::new(read);
        start.set_position(offset);
        Ok((env, BufReader::with_capacity(64 * 1024, start.chain(file))))
    }

    /// Returns the size of a queued message (its body, without the
    /// envelope header), for the SIZE parameter of remote delivery.
    ///
    /// # Errors
    /// As [`Store::read_envelope`].
    pub fn body_len(&self, id: &str) -> io::Result<u64> {
        let (_, file, offset, _) = self.open_checked(id)?;
        Ok(file.metadata()?.len().saturating_sub(offset))
    }

    /// Opens `queue/<id>` and reads its header, which must name `id`;
    /// returns the envelope, the file, the body offset and the bytes read
    /// from the start of the file (the header and maybe more).
    fn open_checked(&self, id: &str) -> io::Result<(QueueEnvelope, File, u64, Vec<u8>)> {
        let mut file = File::open(self.queue_path(id)?)?;
        let (env, offset, read) = read_header(&mut file)?;
        if env.id != id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("queue file {id} holds the envelope of {}", env.id),
            ));
        }
        Ok((env, file, offset, read))
    }

    /// Removes a message from the queue, then its progress file, if it has
    /// one (most have none: nothing to do then). A message already gone is
    /// not an error.
    ///
    /// The progress file may go only once the removal of the message is
    /// durable: should a crash undo the removal but not that of the
    /// progress file, the message would come back without its record of
    /// what was delivered, and be delivered again. So the progress file is
    /// unlinked only after an fsync of `queue/` that started after the
    /// message was unlinked, through the shared barrier (`group_sync`),
    /// which receiving sessions' commits take anyway.
    ///
    /// In the server ([`Store::open`]) that second step runs in the
    /// background and the caller (local delivery) does not wait for the
    /// disk at all; elsewhere ([`Store::attach`]: the command line, which
    /// exits right after) it is done before returning. The unlink of the
    /// progress file needs no fsync of its own: one undone by a crash
    /// leaves a progress file without message, which [`Store::open`]
    /// removes, as it removes those that a stop left waiting.
    ///
    /// # Errors
    /// The message cannot be removed; without background, the directory
    /// cannot be synced or the progress file removed.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        fsutil::remove_if_exists(&self.queue_path(id)?)?;
        if self.forget_progress(id) {
            return Ok(()); // it never had a progress file
        }
        let progress = self.queue.join(format!("{id}{}", progress::SUFFIX));
        self.queue_sync.remove_after_sync(progress)
    }

    /// Describes every queued message, oldest first. Messages that vanish
    /// meanwhile are skipped; damaged ones are logged and skipped.
    ///
    /// # Errors
    /// `queue/` cannot be read.
    pub fn list_summary(&self) -> io::Result<Vec<QueueSummary>> {
        let mut out = Vec::new();
        for id in self.queued()? {
            match self.summary(&id) {
                Ok(s) => out.push(s),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::Line::new("error")
                    .kv("id", &id)
                    .kv("reason", format!("cannot read queue file: {e}"))
                    .emit(),
            }
        }
        Ok(out)
    }

    fn summary(&self, id: &str) -> io::Result<QueueSummary> {
        let (env, file, offset, _) = self.open_checked(id)?;
        let size = file.metadata()?.len().saturating_sub(offset);
        let done = self.delivered(id)?;
        let failed = self.failures(id)?;
        let state = |i: usize| {
            if failed.iter().any(|(f, _)| *f == i) {
                RecipientState::Failed
            } else if done.binary_search(&i).is_ok() {
                RecipientState::Delivered
            } else {
                RecipientState::Waiting
            }
        };
        Ok(QueueSummary {
            id: env.id,
            received: env.received,
            from: env.from,
            size,
            recipients: env
                .recipients
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r.original, r.destination, state(i)))
                .collect(),
        })
    }
}

/// Reads and decodes the header at the start of `file`, in chunks of
/// [`HEADER_CHUNK`] until it is complete; returns the envelope, the body
/// offset and every byte read.
fn read_header(file: &mut File) -> io::Result<(QueueEnvelope, u64, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        let len = buf.len();
        let searched_from = len.saturating_sub(1);
        buf.resize(len + HEADER_CHUNK, 0);
        let read = loop {
            match file.read(buf.get_mut(len..).unwrap_or_default()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = read?;
        buf.truncate(len + n);
        let complete = buf.get(searched_from..).and_then(header_len).is_some();
        if complete || n == 0 || buf.len() > MAX_HEADER {
            break;
        }
    }
    let (env, offset) =
        QueueEnvelope::decode(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((env, offset as u64, buf))
}

#[cfg(test)]
mod tests {
    use hato_core::queue::QueuedRecipient;

    use super::super::testdir::{envelope, TestDir};
    use super::*;

    #[test]
    fn queued_lists_oldest_first_and_ignores_other_files() {
        let t = TestDir::new("queued");
        let store = Store::open(t.path()).unwrap();
        let dest = [Destination::Local("bob@example.org".into())];
        let first = envelope(&store, &dest);
        let second = envelope(&store, &dest);
        store.spool(&second).unwrap().commit().unwrap();
        store.spool(&first).unwrap().commit().unwrap();
        store.mark_delivered(&first.id, 0).unwrap();
        fs::write(store.queue.join("notes.txt"), b"x").unwrap();
        assert_eq!(
            store.queued().unwrap(),
            vec![first.id.clone(), second.id.clone()]
        );
        store.remove(&first.id).unwrap();
        assert_eq!(store.queued().unwrap(), vec![second.id.clone()]);
        store.flush_removals().unwrap();
        assert_eq!(store.delivered(&first.id).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn damaged_queue_files_are_invalid_data() {
        let t = TestDir::new("damaged");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        fs::write(store.queue.join(&id), b"hato-queue 1\nid: X").unwrap();
        let err = store.read_envelope(&id).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidData));
        assert_eq!(
            store.read_envelope("0MISSING").err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        // The envelope of another message under this name is refused too.
        let other = envelope(&store, &[Destination::Local("bob@example.org".into())]);
        fs::write(store.queue.join(&id), other.encode()).unwrap();
        assert!(store.read_envelope(&id).is_err());
        assert!(store.list_summary().unwrap().is_empty());
    }

    #[test]
    fn list_summary_shows_size_and_progress() {
        let t = TestDir::new("summary");
        let store = Store::open(t.path()).unwrap();
        let mut env = envelope(
            &store,
            &[
                Destination::Local("bob@example.org".into()),
                Destination::Remote("dave@partner.example".into()),
            ],
        );
        env.recipients[0] = QueuedRecipient {
            original: "<Bob@Example.org>".into(),
            destination: Destination::Local("bob@example.org".into()),
        };
        let mut w = store.spool(&env).unwrap();
        w.write(b"Subject: x\r\n\r\n12345\r\n").unwrap();
        w.commit().unwrap();
        store.mark_delivered(&env.id, 0).unwrap();
        let list = store.list_summary().unwrap();
        assert_eq!(
            list,
            vec![QueueSummary {
                id: env.id.clone(),
                received: env.received,
                from: "<alice@example.net>".into(),
                size: 21,
                recipients: vec![
                    (
                        "<Bob@Example.org>".into(),
                        Destination::Local("bob@example.org".into()),
                        RecipientState::Delivered
                    ),
                    (
                        "<dave@partner.example>".into(),
                        Destination::Remote("dave@partner.example".into()),
                        RecipientState::Waiting
                    ),
                ],
            }]
        );
        let failure = super::super::RecordedFailure {
            mta: None,
            reason: "5.1.10 null MX".into(),
        };
        store.mark_failed(&env.id, 1, &failure).unwrap();
        let list = store.list_summary().unwrap();
        assert_eq!(list[0].recipients[1].2, RecipientState::Failed);
        assert_eq!(list[0].recipients[1].2.as_str(), "failed");
    }
}
