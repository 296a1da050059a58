//! Delivery progress of a queued message: `queue/<id>.done` lists the
//! indexes (positions in the envelope's `rcpt` lines, from 0) of the
//! recipients that are finished, one decimal number per line. After a
//! crash the delivery agents skip what is listed. The file says nothing
//! about the destination, so local and remote delivery share it. A line
//! that is cut short by a crash or that is not a number is ignored (its
//! recipient is delivered again: a duplicate is better than a loss).
//! Later versions may add words after the number, separated by a space;
//! readers take the first word.
//!
//! How durable a line must be depends on who else can tell:
//! - a remote or LMTP delivery's line is fsynced right after the
//!   delivery ([`Store::mark_delivered`]): nothing else records it;
//! - a Maildir delivery's line is not fsynced
//!   ([`Store::mark_delivered_lazily`]) and is often not written at all
//!   (a message whose recipients all got their copy in one attempt leaves
//!   the queue without one): the Maildir file's name is derived from the
//!   queue id and the recipient's index (see `maildir`), and the rename
//!   into `new/` is fsynced before the line is written or the message
//!   removed, so after a crash the file itself says the recipient is done
//!   (see `settle`). Exactly once, not "at worst twice".
//!
//! Versions before that wrote an intent line, `intent <index> <name>`,
//! fsynced before the rename of the Maildir file `<name>` (then a random
//! name) into `new/`. They are still read ([`Store::progress`]), so that a
//! queue left by an older version is delivered exactly once too.
//! (Readers that know only done lines skip them: their first word is not
//! a number.)
//!
//! A recipient that failed for good (a remote server's or an LMTP
//! server's 5yz, an expired lifetime) is finished too: `<index> failed
//! <server> <reason>` (`-` for no server), fsynced. [`Store::delivered`]
//! lists it among the finished (its first word is the index), and
//! [`Store::failures`] returns it with its reason for the one report.
//!
//! The file is created by its first line, not with the message: most
//! messages never need one. A durable first line fsyncs the file and
//! `queue/` (the name must survive too); a lazy one does neither, and a
//! later durable line of the same message then fsyncs `queue/` as well.
//! The store remembers, in memory, the messages it queued that have no
//! progress file yet, so delivery's first look at a message just received
//! costs no system call. The queue file is removed before its progress
//! file, with an fsync of `queue/` between them (see [`Store::remove`]); a
//! progress file whose queue file is gone is removed by [`Store::open`].

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use super::{check_id, Store};

/// The most of a progress file that is read: tens of thousands of lines,
/// far more than any message's recipients make.
const MAX_PROGRESS: u64 = 1 << 20;

/// The suffix of progress files: `queue/<id>.done`.
pub(crate) const SUFFIX: &str = ".done";

/// What the store knows of progress files without looking at the disk.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Messages queued by this process that have no progress file (ids are
    /// never reused, and the file is created only by a line, through this
    /// store).
    absent: HashSet<String>,
    /// Messages whose progress file was created and whose name may not be
    /// durable yet (a lazy first line, or a durable one still waiting for
    /// its fsync of `queue/`).
    unsynced: HashSet<String>,
}

/// Notes in `known` that `id`, just queued, has no progress file.
pub(crate) fn note_absent(known: &Mutex<Known>, id: &str) {
    known
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .absent
        .insert(id.to_owned());
}

/// A message's progress file, read once: the finished recipients and the
/// intents of older versions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Indexes of finished recipients, sorted, without repeats.
    pub done: Vec<usize>,
    /// (recipient index, Maildir file name) of each `intent` line, in the
    /// order written.
    pub intents: Vec<(usize, String)>,
}

impl Store {
    fn known(&self) -> MutexGuard<'_, Known> {
        self.progress_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `id`, just queued by this process, has no progress file.
    #[cfg(test)]
    pub(crate) fn note_without_progress(&self, id: &str) {
        note_absent(&self.progress_known, id);
    }

    /// Forgets `id` (it leaves the queue); returns whether it was known to
    /// have no progress file.
    pub(crate) fn forget_progress(&self, id: &str) -> bool {
        let mut known = self.known();
        known.unsynced.remove(id);
        known.absent.remove(id)
    }

    /// Tells whether `id` is known to have no progress file: queued by
    /// this process, and nothing recorded since.
    pub fn has_no_progress(&self, id: &str) -> bool {
        self.known().absent.contains(id)
    }

    fn progress_path(&self, id: &str) -> io::Result<PathBuf> {
        check_id(id)?;
        Ok(self.queue.join(format!("{id}{SUFFIX}")))
    }

    /// Reads the progress file of `id` (at most [`MAX_PROGRESS`] bytes);
    /// `None` when there is none. Through `Take`, which skips the stat and
    /// seek that `fs::read` makes for a size hint: the file is small and
    /// usually empty, and this runs for every delivery attempt.
    fn read_progress(&self, id: &str) -> io::Result<Option<Vec<u8>>> {
        if self.has_no_progress(id) {
            return Ok(None);
        }
        let file = match File::open(self.progress_path(id)?) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = Vec::new();
        file.take(MAX_PROGRESS).read_to_end(&mut text)?;
        Ok(Some(text))
    }

    /// Returns the indexes of the recipients of `id` already delivered,
    /// sorted, without repeats.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn delivered(&self, id: &str) -> io::Result<Vec<usize>> {
        Ok(self.progress(id)?.done)
    }

    /// Reads the progress file of `id` once: the finished recipients and
    /// the intents that older versions recorded.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn progress(&self, id: &str) -> io::Result<Progress> {
        let Some(text) = self.read_progress(id)? else {
            return Ok(Progress::default());
        };
        let mut progress = Progress::default();
        let lines = text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| std::str::from_utf8(line).ok());
        for line in lines {
            let mut words = line.trim_end_matches('\n').split(' ');
            let first = words.next().unwrap_or_default();
            if let Ok(idx) = first.parse() {
                progress.done.push(idx);
            } else if first == "intent" {
                let intent = (|| {
                    let idx = words.next()?.parse().ok()?;
                    let name = words.next()?.to_owned();
                    words.next().is_none().then_some((idx, name))
                })();
                progress.intents.extend(intent);
            }
        }
        progress.done.sort_unstable();
        progress.done.dedup();
        Ok(progress)
    }

    /// Records that recipient `idx` of `id` is finished, durably: appends
    /// the line and fsyncs the file (and `queue/` when the file is new).
    ///
    /// # Errors
    /// The file cannot be written or synced; the recipient then counts as
    /// not delivered.
    pub fn mark_delivered(&self, id: &str, idx: usize) -> io::Result<()> {
        self.append_progress(id, &format!("{idx}\n"), true)
    }

    /// Records that recipient `idx` of `id` is finished, without fsync:
    /// for a Maildir delivery whose rename into `new/` is durable already,
    /// so that recovery finds its file should a crash lose the line (see
    /// the module docs). Saves one fsync per delivered recipient.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn mark_delivered_lazily(&self, id: &str, idx: usize) -> io::Result<()> {
        self.append_progress(id, &format!("{idx}\n"), false)
    }

    /// Records, durably, that recipient `idx` of `id` failed for good:
    /// `<idx> failed <mta> <reason>` (`-` when no remote server answered).
    /// The first word makes it a finished recipient for every reader; the
    /// bounce names it with its reason (see [`Store::failures`]).
    ///
    /// # Errors
    /// The file cannot be written or synced.
    pub fn mark_failed(&self, id: &str, idx: usize, failure: &RecordedFailure) -> io::Result<()> {
        let mta = failure.mta.as_deref().map_or("-".to_owned(), one_word);
        let reason = one_line(&failure.reason);
        self.append_progress(id, &format!("{idx} failed {mta} {reason}\n"), true)
    }

    /// Returns the recipients of `id` recorded as failed, with why, in
    /// index order (the first record of each).
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn failures(&self, id: &str) -> io::Result<Vec<(usize, RecordedFailure)>> {
        let Some(text) = self.read_progress(id)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(usize, RecordedFailure)> = text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| {
                let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
                let mut words = line.splitn(4, ' ');
                let idx = words.next()?.parse().ok()?;
                if words.next()? != "failed" {
                    return None;
                }
                let mta = match words.next()? {
                    "-" => None,
                    m => Some(m.to_owned()),
                };
                let reason = words.next().unwrap_or_default().to_owned();
                Some((idx, RecordedFailure { mta, reason }))
            })
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out.dedup_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// Records that the sender of `id` was told of its delay (once).
    ///
    /// # Errors
    /// The file cannot be written or synced.
    pub fn mark_warned(&self, id: &str) -> io::Result<()> {
        self.append_progress(id, "warned\n", true)
    }

    /// Tells whether the delay warning of `id` was sent.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn warned(&self, id: &str) -> io::Result<bool> {
        Ok(self
            .read_progress(id)?
            .is_some_and(|text| text.split(|&b| b == b'\n').any(|l| l == b"warned")))
    }

    fn append_progress(&self, id: &str, line: &str, durable: bool) -> io::Result<()> {
        let path = self.progress_path(id)?;
        let mut opts = OpenOptions::new();
        opts.append(true);
        #[cfg(unix)]
        opts.mode(0o600);
        // Known absent: create it. Otherwise it is usually there (a line
        // before this one, or a message from before a restart).
        let absent = self.known().absent.remove(id);
        let opened = if absent {
            Err(io::ErrorKind::NotFound.into())
        } else {
            opts.open(&path)
        };
        let (mut file, created) = match opened {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Before the file exists: a durable writer that opens it
                // from now on learns that its name may not be durable.
                self.known().unsynced.insert(id.to_owned());
                match opts.clone().create_new(true).open(&path) {
                    Ok(f) => (f, true),
                    // Created meanwhile by another writer.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        (opts.open(&path)?, false)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        file.write_all(line.as_bytes())?;
        if !durable {
            return Ok(());
        }
        file.sync_data()?;
        // The name is durable once an fsync of queue/ started after the
        // file was created: the creator's own, or ours when the creator
        // did not take one (a lazy line) or has not finished it.
        if created || self.known().unsynced.contains(id) {
            self.queue_sync.sync()?;
            self.known().unsynced.remove(id);
        }
        Ok(())
    }
}

/// A recipient that failed for good, as the progress file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFailure {
    /// The remote server that refused (its name), if one answered; the
    /// reason then starts with its reply (`550 5.1.1 ...`).
    pub mta: Option<String>,
    /// Why, on one line.
    pub reason: String,
}

/// `s` on one line: control characters become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` as one word: control characters and spaces become `_`.
fn one_word(s: &str) -> String {
    let w: String = s
        .chars()
        .map(|c| if c.is_control() || c == ' ' { '_' } else { c })
        .collect();
    if w.is_empty() || w == "-" {
        "_".to_owned()
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn marks_survive_reopening_and_torn_lines_are_ignored() {
        let t = TestDir::new("progress");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        assert_eq!(store.delivered(&id).unwrap(), Vec::<usize>::new());
        store.mark_delivered(&id, 2).unwrap();
        store.mark_delivered(&id, 0).unwrap();
        store.mark_delivered(&id, 2).unwrap();
        let path = store.progress_path(&id).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"junk\n7 remote\n1").unwrap(); // "1" was cut short
        let store = Store::attach(t.path()).unwrap();
        assert_eq!(store.delivered(&id).unwrap(), vec![0, 2, 7]);
    }

    #[test]
    fn intents_of_older_versions_are_read_back_and_are_not_done_marks() {
        let t = TestDir::new("intents");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        let path = store.progress_path(&id).unwrap();
        fs::write(&path, b"intent 1 1700000000.M1P2Q3.host\n").unwrap();
        store.mark_delivered(&id, 0).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // Too many words, then one cut short by a crash.
        f.write_all(b"intent 4 a b\nintent 2 torn").unwrap();
        assert_eq!(
            store.progress(&id).unwrap(),
            Progress {
                done: vec![0],
                intents: vec![(1, "1700000000.M1P2Q3.host".to_owned())],
            }
        );
        assert_eq!(store.delivered(&id).unwrap(), vec![0]);
    }

    #[test]
    fn a_message_known_without_progress_file_is_not_looked_up() {
        let t = TestDir::new("progress-known");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        store.note_without_progress(&id);
        assert!(store.has_no_progress(&id));
        // Not read: the store knows (a file there would be another
        // process's doing, which cannot happen for an id of ours).
        let path = store.progress_path(&id).unwrap();
        fs::write(&path, b"5\n").unwrap();
        assert_eq!(store.delivered(&id).unwrap(), Vec::<usize>::new());
        fs::remove_file(&path).unwrap();
        // The first line creates the file, and from then on it is read.
        store.mark_delivered_lazily(&id, 1).unwrap();
        assert!(!store.has_no_progress(&id));
        assert_eq!(fs::read(&path).unwrap(), b"1\n");
        store.mark_delivered(&id, 0).unwrap();
        assert_eq!(store.delivered(&id).unwrap(), vec![0, 1]);
        // The durable line took the fsync of queue/ the lazy one skipped.
        assert!(store.known().unsynced.is_empty());
        assert!(!store.forget_progress(&id));
    }
}

#[cfg(test)]
mod failure_tests {
    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn failures_and_the_warning_are_recorded_and_count_as_finished() {
        let t = TestDir::new("failures");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        assert!(!store.warned(&id).unwrap());
        let remote = RecordedFailure {
            mta: Some("mx1.partner.example".into()),
            reason: "550 5.1.1 no such\r\nuser".into(),
        };
        store.mark_failed(&id, 3, &remote).unwrap();
        let local = RecordedFailure {
            mta: None,
            reason: "null MX".into(),
        };
        store.mark_failed(&id, 1, &local).unwrap();
        store.mark_warned(&id).unwrap();
        store.mark_delivered(&id, 0).unwrap();
        assert_eq!(store.delivered(&id).unwrap(), vec![0, 1, 3]);
        let f = store.failures(&id).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], (1, local));
        assert_eq!(f[1].1.reason, "550 5.1.1 no such  user");
        assert_eq!(f[1].1.mta.as_deref(), Some("mx1.partner.example"));
        assert!(store.warned(&id).unwrap());
        assert!(store.progress(&id).unwrap().intents.is_empty());
    }
}
