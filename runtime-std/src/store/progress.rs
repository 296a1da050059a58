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
//! A recipient that failed for good (an LMTP server's 5yz) is finished
//! too, but not delivered: `<index> failed <reason>`, fsynced. Delivery
//! skips it; [`Store::delivered`] does not list it (so `hato queue bounce`
//! reports it), and [`Store::failures`] returns it with its reason, for
//! the bounce.
//!
//! The queue file is removed before its progress file; a progress file
//! whose queue file is gone is removed by [`Store::open`].

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use super::{check_id, fsutil, Store};

/// The suffix of progress files: `queue/<id>.done`.
pub(crate) const SUFFIX: &str = ".done";

/// The word after the index of a recipient that failed for good.
const FAILED: &str = "failed";

impl Store {
    fn progress_path(&self, id: &str) -> io::Result<PathBuf> {
        check_id(id)?;
        Ok(self.queue.join(format!("{id}{SUFFIX}")))
    }

    /// Returns the indexes of the recipients of `id` already delivered,
    /// sorted, without repeats.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn delivered(&self, id: &str) -> io::Result<Vec<usize>> {
        let text = match fs::read(self.progress_path(id)?) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut done: Vec<usize> = text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| {
                let line = std::str::from_utf8(line).ok()?;
                let mut words = line.split([' ', '\n']);
                let idx = words.next()?.parse().ok()?;
                (words.next() != Some(FAILED)).then_some(idx)
            })
            .collect();
        done.sort_unstable();
        done.dedup();
        Ok(done)
    }

    /// Returns the recipients of `id` that failed for good, with the
    /// reason recorded, in the order written.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn failures(&self, id: &str) -> io::Result<Vec<(usize, String)>> {
        let text = match fs::read(self.progress_path(id)?) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| {
                let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
                let (idx, rest) = line.split_once(' ')?;
                let (word, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                if word != FAILED {
                    return None;
                }
                Some((idx.parse().ok()?, reason.to_owned()))
            })
            .collect())
    }

    /// Records, durably, that recipient `idx` of `id` failed for good
    /// because of `reason` (line breaks and control characters become
    /// spaces): it is finished and must be bounced, not retried.
    ///
    /// # Errors
    /// The file cannot be written or synced; the recipient then stays open.
    pub fn mark_failed(&self, id: &str, idx: usize, reason: &str) -> io::Result<()> {
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.append_progress(id, &format!("{idx} {FAILED} {reason}\n"), true)
    }

    /// Returns the intents recorded for `id`: (recipient index, Maildir
    /// file name), in the order written.
    ///
    /// # Errors
    /// The progress file exists but cannot be read.
    pub fn intents(&self, id: &str) -> io::Result<Vec<(usize, String)>> {
        let text = match fs::read(self.progress_path(id)?) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
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

    fn append_progress(&self, id: &str, line: &str, durable: bool) -> io::Result<()> {
        let path = self.progress_path(id)?;
        let mut opts = OpenOptions::new();
        opts.append(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let (mut file, created) = match opts.clone().create_new(true).open(&path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (opts.open(&path)?, false),
            Err(e) => return Err(e),
        };
        file.write_all(line.as_bytes())?;
        if !durable && !created {
            return Ok(());
        }
        file.sync_data()?;
        if created {
            fsutil::sync_dir(&self.queue)?;
        }
        Ok(())
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
    fn failures_are_finished_but_not_delivered() {
        let t = TestDir::new("progress-failed");
        let store = Store::open(t.path()).unwrap();
        let id = store.new_queue_id();
        store.mark_delivered(&id, 0).unwrap();
        store
            .mark_failed(
                &id,
                2,
                "550 5.1.1 <x@example.org> no such user\r\n(in reply)",
            )
            .unwrap();
        store.mark_failed(&id, 3, "").unwrap();
        assert_eq!(store.delivered(&id).unwrap(), vec![0]);
        assert_eq!(
            store.failures(&id).unwrap(),
            vec![
                (
                    2,
                    "550 5.1.1 <x@example.org> no such user  (in reply)".to_owned()
                ),
                (3, String::new())
            ]
        );
        let text = fs::read_to_string(store.progress_path(&id).unwrap()).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
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
