//! Group commit of a directory's fsync: many threads that each renamed,
//! created or removed an entry in the same directory (`queue/`) share one
//! fsync barrier instead of paying one each.
//!
//! A caller that needs its change durable calls [`GroupSync::sync`] *after*
//! making the change. It returns once an fsync of the directory that
//! *started* after the call has finished; such an fsync covers the change
//! (POSIX `fsync` of a directory makes every entry change made before it
//! durable). One caller at a time runs the fsync (the leader); the others
//! wait, and everyone who arrived while an fsync was running is served by
//! the next one. There is no timer: with one session a barrier costs one
//! fsync as before, and with many the syncs of the sessions that finish
//! DATA together collapse into one or two. At most two fsyncs of waiting
//! stand between a caller and its answer.
//!
//! This is what keeps RFC 5321 §6.1's promise cheap: a 250 is sent only
//! after the barrier covering the message's rename into `queue/`.
//!
//! A removal that must wait for a barrier but need not be waited for (the
//! progress file of a delivered message, see `Store::remove`) is handed to
//! [`GroupSync::remove_after_sync`]: a background thread (started at the
//! first such call, in the server only) takes the next barrier, shared with
//! everyone else's, and then unlinks the files whose barrier it was.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use super::fsutil;
use crate::log;

/// How long the background thread waits for work before it checks
/// whether the store is still there.
const IDLE: Duration = Duration::from_secs(1);
/// How long it pauses after a failed fsync before trying again.
const RETRY: Duration = Duration::from_millis(200);

/// Shared fsync barrier of one directory.
#[derive(Debug)]
pub(crate) struct GroupSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
    /// Wakes the background thread: removals are waiting.
    work: Condvar,
    /// Whether removals may wait in the background (the server) or are
    /// done at once (the command line, which exits right after).
    background: bool,
}

#[derive(Debug, Default)]
struct State {
    /// How many fsyncs have been started (the number of the latest one).
    started: u64,
    /// The number of the latest fsync that has finished.
    finished: u64,
    /// The number of the latest fsync that succeeded.
    succeeded: u64,
    /// Whether an fsync is running now.
    running: bool,
    /// The error of the latest failed fsync, for the callers it served.
    last_error: Option<(io::ErrorKind, String)>,
    /// How many fsyncs ran, and how many callers they served (statistics
    /// for tests and the log).
    syncs: u64,
    callers: u64,
    /// Files to unlink once an fsync numbered at least this has succeeded.
    deferred: Vec<(u64, PathBuf)>,
    /// Whether the background thread runs.
    remover: bool,
}

impl GroupSync {
    /// A barrier for `dir`; with `background`, [`GroupSync::remove_after_sync`]
    /// returns at once and a thread does the rest.
    pub(crate) fn new(dir: PathBuf, background: bool) -> Self {
        Self {
            dir,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            work: Condvar::new(),
            background,
        }
    }

    /// Waits until an fsync of the directory that started after this call
    /// has finished (running it if no one else is).
    ///
    /// # Errors
    /// Every fsync that could have covered the caller's change failed.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let mut st = self.lock();
        st.callers += 1;
        // Any fsync numbered `need` or later starts after this point.
        let need = st.started + 1;
        loop {
            if st.finished >= need {
                if st.succeeded >= need {
                    return Ok(());
                }
                let (kind, msg) = st
                    .last_error
                    .clone()
                    .unwrap_or((io::ErrorKind::Other, "fsync failed".to_owned()));
                return Err(io::Error::new(kind, msg));
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.running = true;
            st.started += 1;
            st.syncs += 1;
            let number = st.started;
            drop(st);
            let result = fsutil::sync_dir(&self.dir);
            st = self.lock();
            st.running = false;
            st.finished = number;
            match result {
                Ok(()) => st.succeeded = number,
                Err(e) => st.last_error = Some((e.kind(), e.to_string())),
            }
            self.done.notify_all();
        }
    }

    /// Unlinks `path` once an fsync of the directory that started after
    /// this call has succeeded, so that whatever the caller changed in the
    /// directory before is durable first. In the background when the
    /// barrier was made so (the server); otherwise now, before returning.
    ///
    /// # Errors
    /// Only when done at once: the fsync or the unlink failed.
    pub(crate) fn remove_after_sync(self: &Arc<Self>, path: PathBuf) -> io::Result<()> {
        if !self.background {
            self.sync()?;
            return fsutil::remove_if_exists(&path);
        }
        let mut st = self.lock();
        let need = st.started + 1;
        st.deferred.push((need, path));
        if !st.remover {
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("queue-remover".into())
                .stack_size(64 * 1024)
                .spawn(move || remover(&weak));
            match spawned {
                Ok(_) => st.remover = true,
                Err(e) => {
                    // No thread: do it here and now.
                    drop(st);
                    log::Line::new("error")
                        .kv("what", "queue-remover")
                        .kv("error", e)
                        .emit();
                    return self.flush();
                }
            }
        }
        self.work.notify_one();
        Ok(())
    }

    /// Takes a barrier if removals wait for one, then unlinks every file
    /// whose barrier has passed. The server calls it when it stops.
    ///
    /// # Errors
    /// The fsync failed (the files stay listed for the next try).
    pub(crate) fn flush(&self) -> io::Result<()> {
        if self.lock().deferred.is_empty() {
            return Ok(());
        }
        let synced = self.sync();
        self.reap();
        synced
    }

    /// Unlinks the deferred files whose barrier has succeeded.
    fn reap(&self) {
        let ready: Vec<PathBuf> = {
            let mut st = self.lock();
            let succeeded = st.succeeded;
            let (ready, waiting) = std::mem::take(&mut st.deferred)
                .into_iter()
                .partition(|(need, _)| *need <= succeeded);
            st.deferred = waiting;
            ready.into_iter().map(|(_, path)| path).collect()
        };
        for path in ready {
            if let Err(e) = fsutil::remove_if_exists(&path) {
                // Left for the next start, which removes progress files
                // without message.
                log::Line::new("error")
                    .kv("what", "queue-remover")
                    .kv("file", path.display())
                    .kv("reason", format!("cannot remove: {e}"))
                    .emit();
            }
        }
    }

    /// Waits up to `limit` for deferred removals; tells whether there are.
    fn wait_for_work(&self, limit: Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .work
            .wait_timeout_while(st, limit, |st| st.deferred.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        !st.deferred.is_empty()
    }

    /// Returns (fsyncs run, callers served) so far.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.syncs, st.callers)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The background thread of [`GroupSync::remove_after_sync`]: takes the
/// shared barrier whenever removals wait, then unlinks them. Ends once the
/// barrier (the store) is gone.
fn remover(barrier: &Weak<GroupSync>) {
    loop {
        let Some(g) = barrier.upgrade() else {
            return;
        };
        if g.wait_for_work(IDLE) && g.flush().is_err() {
            std::thread::sleep(RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn one_caller_gets_one_fsync() {
        let t = TestDir::new("group-sync-one");
        let g = GroupSync::new(t.path().to_path_buf(), false);
        g.sync().unwrap();
        g.sync().unwrap();
        assert_eq!(g.counts(), (2, 2));
    }

    #[test]
    fn concurrent_callers_share_fsyncs() {
        let t = TestDir::new("group-sync-many");
        let g = Arc::new(GroupSync::new(t.path().to_path_buf(), false));
        let threads = 16;
        let rounds = 20;
        let start = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (g, start, dir) = (Arc::clone(&g), Arc::clone(&start), t.path().to_owned());
                std::thread::spawn(move || {
                    start.wait();
                    for r in 0..rounds {
                        std::fs::write(dir.join(format!("f{i}-{r}")), b"x").unwrap();
                        g.sync().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (syncs, callers) = g.counts();
        assert_eq!(callers, (threads * rounds) as u64);
        assert!(
            syncs < callers,
            "{syncs} fsyncs for {callers} callers: none shared"
        );
        assert!(syncs >= 1);
    }

    #[test]
    fn removals_wait_for_a_barrier_in_the_background() {
        let t = TestDir::new("group-sync-remove");
        let g = Arc::new(GroupSync::new(t.path().to_path_buf(), true));
        let files: Vec<_> = (0..50)
            .map(|i| t.path().join(format!("{i}.done")))
            .collect();
        for f in &files {
            std::fs::write(f, b"").unwrap();
            g.remove_after_sync(f.clone()).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while files.iter().any(|f| f.exists()) {
            assert!(std::time::Instant::now() < deadline, "not removed");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (syncs, _) = g.counts();
        assert!((1..50).contains(&syncs), "{syncs} fsyncs for 50 removals");
        // Without background, the removal is done before returning.
        let now = GroupSync::new(t.path().to_path_buf(), false);
        let f = t.path().join("x.done");
        std::fs::write(&f, b"").unwrap();
        Arc::new(now).remove_after_sync(f.clone()).unwrap();
        assert!(!f.exists());
    }

    #[test]
    fn flush_removes_what_waits() {
        let t = TestDir::new("group-sync-flush");
        let g = Arc::new(GroupSync::new(t.path().to_path_buf(), true));
        let f = t.path().join("y.done");
        std::fs::write(&f, b"").unwrap();
        g.remove_after_sync(f.clone()).unwrap();
        g.flush().unwrap();
        assert!(!f.exists());
        assert!(g.lock().deferred.is_empty());
    }

    #[test]
    fn a_failed_fsync_is_reported_to_the_callers_it_served() {
        let t = TestDir::new("group-sync-error");
        let g = GroupSync::new(t.path().join("missing"), false);
        assert!(g.sync().is_err());
        std::fs::create_dir(t.path().join("missing")).unwrap();
        g.sync().unwrap();
    }
}
