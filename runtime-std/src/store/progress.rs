//! Delivery progress of a queued message: `queue/<id>.done` lists the
//! indexes (positions in the envelope's `rcpt` lines, from 0) of the
//! recipients that are finished, one decimal number per line, each line
//! appended and fsynced right after its delivery. After a crash the
//! delivery agents skip what is listed, so no recipient gets a message
//! twice (at worst the one being delivered at the moment of the crash).
//! The file says nothing about the destination, so local and remote
//! delivery share it. A line that is cut short by a crash or that is not a
//! number is ignored (its recipient is delivered again: a duplicate is
//! better than a loss). Later versions may add words after the number,
//! separated by a space; readers take the first word.
//!
//! Local delivery also writes an intent line, `intent <index> <name>`,
//! fsynced *before* it renames the Maildir file `<name>` into `new/`. After
//! a crash between that rename and the done line, the recipient counts as
//! delivered if `<name>` is in its Maildir: exactly once, not "at worst
//! twice". (Readers that know only done lines skip intent lines, whose
//! first word is not a number.)
//!
//! A recipient that failed for good (a remote server's or an LMTP
//! server's 5yz, an expired lifetime) is finished too: `<index> failed
//! <server> <reason>` (`-` for no server), fsynced. [`Store::delivered`]
//! lists it among the finished (its first word is the index), and
//! [`Store::failures`] returns it with its reason for the one report.
//!
//! The progress file is created, empty, when the message is queued (see
//! `spool`), under the same fsync of `queue/` as the message itself, so
//! appending to it never needs an fsync of `queue/`. (A message queued by
//! an older version has none; the first line then creates it and fsyncs
//! `queue/`.) The queue file is removed before its progress file, with an
//! fsync of `queue/` between them (see [`Store::remove`]); a progress file
//! whose queue file is gone is removed by [`Store::open`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use super::{check_id, Store};

/// The most of a progress file that is read: tens of thousands of lines,
/// far more than any message's recipients make.
const MAX_PROGRESS: u64 = 1 << 20;

/// The suffix of progress files: `queue/<id>.done`.
pub(crate) const SUFFIX: &str = ".done";

impl Store {
    fn progress_path(&self, id: &str) -> io::Result<PathBuf> {
        check_id(id)?;
        Ok(self.queue.join(format!("{id}{SUFFIX}")))
    }

    /// Reads the progress file of `id` (at most [`MAX_PROGRESS`] bytes);
    /// `None` when there is none. Through `Take`, which skips the stat and
    /// seek that `fs::read` makes for a size hint: the file is small and
    /// usually empty, and this runs for every delivery attempt.
    fn read_progress(&self, id: &str) -> io::Result<Option<Vec<u8>>> {
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
        let Some(text) = self.read_progress(id)? else {
            return Ok(Vec::new());
        };
        let mut done: Vec<usize> = text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| {
                let line = std::str::from_utf8(line).ok()?;
                line.split([' ', '\n']).next()?.parse().ok()
            })
            .collect();
        done.sort_unstable();
        done.dedup();
        Ok(done)
    }

    /// Returns the intents recorded for `id`: (recipient index, Maildir
    /// file name), in the order written.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn intents(&self, id: &str) -> io::Result<Vec<(usize, String)>> {
        let Some(text) = self.read_progress(id)? else {
            return Ok(Vec::new());
        };
        Ok(text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| {
                let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
                let mut words = line.split(' ');
                if words.next()? != "intent" {
                    return None;
                }
                let idx = words.next()?.parse().ok()?;
                let name = words.next()?.to_owned();
                words.next().is_none().then_some((idx, name))
            })
            .collect())
    }

    /// Records, durably, that recipient `idx` of `id` is about to be
    /// delivered as Maildir file `name` (see the module docs).
    ///
    /// # Errors
    /// The file cannot be written or synced; the delivery must not go on.
    pub fn record_intent(&self, id: &str, idx: usize, name: &str) -> io::Result<()> {
        if name.is_empty() || name.contains([' ', '\n']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad Maildir name",
            ));
        }
        self.append_progress(id, &format!("intent {idx} {name}\n"), true)
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

    /// Records that recipient `idx` of `id` is finished when an fsynced
    /// intent already names its Maildir file: the line is appended but not
    /// fsynced. Should a crash lose it, recovery finds the intent's file and
    /// records the recipient again (`recovered=yes`); it is never delivered
    /// twice. Saves one fsync per delivered recipient.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn mark_delivered_after_intent(&self, id: &str, idx: usize) -> io::Result<()> {
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
        // The file is normally there since the message was queued.
        let (mut file, created) = match opts.open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
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
        if !durable && !created {
            return Ok(());
        }
        file.sync_data()?;
        if created {
            self.queue_sync.sync()?;
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
    fn intents_are_read_back_and_are_not_done_marks() {
        let t = TestDir::new("intents");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        store
            .record_intent(&id, 1, "1700000000.M1P2Q3.host")
            .unwrap();
        store.mark_delivered(&id, 0).unwrap();
        let path = store.progress_path(&id).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"intent 2 torn").unwrap(); // cut short by a crash
        assert_eq!(store.delivered(&id).unwrap(), vec![0]);
        assert_eq!(
            store.intents(&id).unwrap(),
            vec![(1, "1700000000.M1P2Q3.host".to_owned())]
        );
        assert!(store.record_intent(&id, 3, "a b").is_err());
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
        assert!(store.intents(&id).unwrap().is_empty());
    }
}
