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
//! the next one. With one session a barrier costs one fsync as before, and
//! with many the syncs of the sessions that finish DATA together collapse
//! into one or two.
//!
//! A commit announces itself ([`GroupSync::arriving`]) before it fsyncs
//! its own file; a leader about to fsync the directory first waits, at
//! most [`WINDOW`], while such commits are on their way, so that one fsync
//! serves them too. Alone, a session never waits for that window.
//!
//! This is what keeps RFC 5321 §6.1's promise cheap: a 250 is sent only
//! after the barrier covering the message's rename into `queue/`.
//!
//! A removal that must wait for a barrier but need not be waited for (the
//! progress file of a delivered message, see `Store::remove`) is handed to
//! [`GroupSync::remove_after_sync`]: a background thread (started at the
//! first such call, in the server only) waits up to [`RIDE`] for a barrier
//! that someone else takes anyway (a receiving session's commit), runs one
//! itself only when none comes, and then unlinks the files whose barrier
//! has passed. While mail arrives, removals thus cost no fsync at all.
//!
//! The directory is opened once, at the first barrier, and that handle
//! serves every later one: `fsync` acts on the directory's inode, so it
//! covers entries changed after the handle was opened. A barrier thus
//! costs one `fsync` and no `open`/`close`. A failed open is retried at
//! the next barrier.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::fsutil;
use crate::log;

/// How long a leader waits for commits that have announced themselves
/// (they are fsyncing their files) before it fsyncs the directory.
const WINDOW: Duration = Duration::from_millis(3);
/// How long the background thread waits for work before it checks
/// whether the store is still there.
const IDLE: Duration = Duration::from_secs(1);
/// How long a removal waits for someone else's barrier before the
/// background thread takes one itself: under load a commit comes every
/// millisecond or two; idle, a progress file outlives its message this long.
const RIDE: Duration = Duration::from_millis(50);
/// How long it pauses after a failed fsync before trying again.
const RETRY: Duration = Duration::from_millis(200);

/// Shared fsync barrier of one directory.
#[derive(Debug)]
pub(crate) struct GroupSync {
    dir: PathBuf,
    /// The directory, opened at the first barrier and kept.
    handle: OnceLock<File>,
    state: Mutex<State>,
    done: Condvar,
    /// Wakes the background thread: removals are waiting.
    work: Condvar,
    /// Wakes a leader in its window: a commit reached the barrier.
    arrive: Condvar,
    /// Whether removals may wait in the background (the server) or are
    /// done at once (the command line, which exits right after).
    background: bool,
    /// How long removals wait for someone else's barrier ([`RIDE`]).
    ride: Duration,
    /// How long a leader waits for announced commits ([`WINDOW`]).
    window: Duration,
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
    /// Commits announced and not yet at the barrier.
    arriving: usize,
}

/// A commit on its way to the barrier, announced before its file fsync
/// (see the module docs). Dropped without [`Arriving::sync`], it
/// withdraws.
#[derive(Debug)]
pub(crate) struct Arriving<'a> {
    barrier: &'a GroupSync,
    counted: bool,
}

impl Arriving<'_> {
    /// Waits for the barrier, as [`GroupSync::sync`].
    ///
    /// # Errors
    /// As [`GroupSync::sync`].
    pub(crate) fn sync(mut self) -> io::Result<()> {
        self.counted = false;
        self.barrier.barrier(true)
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.barrier.lock().arriving -= 1;
            self.barrier.arrive.notify_all();
        }
    }
}

impl GroupSync {
    /// A barrier for `dir`; with `background`, [`GroupSync::remove_after_sync`]
    /// returns at once and a thread does the rest.
    pub(crate) fn new(dir: PathBuf, background: bool) -> Self {
        Self {
            dir,
            handle: OnceLock::new(),
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            work: Condvar::new(),
            arrive: Condvar::new(),
            background,
            ride: RIDE,
            window: WINDOW,
        }
    }

    /// Waits until an fsync of the directory that started after this call
    /// has finished (running it if no one else is).
    ///
    /// # Errors
    /// Every fsync that could have covered the caller's change failed.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.barrier(false)
    }

    /// Announces a commit that will call [`Arriving::sync`] soon.
    pub(crate) fn arriving(&self) -> Arriving<'_> {
        self.lock().arriving += 1;
        Arriving {
            barrier: self,
            counted: true,
        }
    }

    fn barrier(&self, announced: bool) -> io::Result<()> {
        let mut st = self.lock();
        if announced {
            st.arriving = st.arriving.saturating_sub(1);
            self.arrive.notify_all();
        }
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
            // The window: commits on their way join this fsync. Whoever
            // arrives meanwhile sees `running` and waits for `need`, which
            // is this fsync's number, since `started` moves on only below.
            let window_end = Instant::now() + self.window;
            while st.arriving > 0 {
                let left = window_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .arrive
                    .wait_timeout(st, left)
                    .map_or_else(|e| e.into_inner().0, |(st, _)| st);
            }
            st.started += 1;
            st.syncs += 1;
            let number = st.started;
            drop(st);
            let result = self.sync_dir();
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

    /// Fsyncs the directory through the handle kept for it (opened now
    /// if this is the first barrier). Only the leader calls this.
    fn sync_dir(&self) -> io::Result<()> {
        if let Some(dir) = self.handle.get() {
            return fsutil::sync_handle(dir);
        }
        let dir = fsutil::open_dir(&self.dir)?;
        fsutil::sync_handle(self.handle.get_or_init(|| dir))
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

    /// Waits up to `limit` for a barrier, taken by someone else, that
    /// covers every deferred removal.
    fn wait_for_barrier(&self, limit: Duration) {
        let st = self.lock();
        let need = st.deferred.iter().map(|(need, _)| *need).max().unwrap_or(0);
        let _ = self
            .done
            .wait_timeout_while(st, limit, |st| st.succeeded < need)
            .unwrap_or_else(PoisonError::into_inner);
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
        if !g.wait_for_work(IDLE) {
            continue;
        }
        g.wait_for_barrier(g.ride);
        g.reap();
        if g.flush().is_err() {
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while files.iter().any(|f| f.exists()) {
            assert!(Instant::now() < deadline, "not removed");
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
    fn a_leader_waits_for_announced_commits() {
        let t = TestDir::new("group-sync-window");
        let mut g = GroupSync::new(t.path().to_path_buf(), false);
        g.window = Duration::from_secs(30);
        let g = Arc::new(g);
        let arrived = Arc::new(Barrier::new(2));
        let commit = {
            let (g, arrived) = (Arc::clone(&g), Arc::clone(&arrived));
            std::thread::spawn(move || {
                let on_its_way = g.arriving();
                arrived.wait();
                // Its file fsync takes until the leader is in its window.
                while !g.lock().running {
                    std::thread::sleep(Duration::from_millis(1));
                }
                on_its_way.sync().unwrap();
            })
        };
        arrived.wait();
        g.sync().unwrap(); // leads, and waits for the announced commit
        commit.join().unwrap();
        assert_eq!(g.counts(), (1, 2), "one fsync for both");
        // A withdrawn announcement does not hold a leader up.
        drop(g.arriving());
        assert_eq!(g.lock().arriving, 0);
        g.sync().unwrap();
        assert_eq!(g.counts(), (2, 3));
    }

    #[test]
    fn removals_ride_on_other_callers_barriers() {
        let t = TestDir::new("group-sync-ride");
        let mut g = GroupSync::new(t.path().to_path_buf(), true);
        g.ride = Duration::from_secs(30);
        let g = Arc::new(g);
        let f = t.path().join("z.done");
        std::fs::write(&f, b"").unwrap();
        g.remove_after_sync(f.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(f.exists(), "removed before any fsync");
        g.sync().unwrap(); // a commit's barrier
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.exists() {
            assert!(Instant::now() < deadline, "not removed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(g.counts().0, 1, "the removal took an fsync of its own");
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
    fn the_directory_is_opened_once_and_kept() {
        let t = TestDir::new("group-sync-handle");
        let (dir, moved) = (t.path().join("q"), t.path().join("q-moved"));
        std::fs::create_dir(&dir).unwrap();
        let g = GroupSync::new(dir.clone(), false);
        g.sync().unwrap();
        // Opening by path again would fail now; the kept handle does not.
        std::fs::rename(&dir, &moved).unwrap();
        g.sync().unwrap();
        assert_eq!(g.counts(), (2, 2));
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
