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

use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::fsutil;

/// Shared fsync barrier of one directory.
#[derive(Debug)]
pub(crate) struct GroupSync {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
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
}

impl GroupSync {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn one_caller_gets_one_fsync() {
        let t = TestDir::new("group-sync-one");
        let g = GroupSync::new(t.path().to_path_buf());
        g.sync().unwrap();
        g.sync().unwrap();
        assert_eq!(g.counts(), (2, 2));
    }

    #[test]
    fn concurrent_callers_share_fsyncs() {
        let t = TestDir::new("group-sync-many");
        let g = Arc::new(GroupSync::new(t.path().to_path_buf()));
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
    fn a_failed_fsync_is_reported_to_the_callers_it_served() {
        let t = TestDir::new("group-sync-error");
        let g = GroupSync::new(t.path().join("missing"));
        assert!(g.sync().is_err());
        std::fs::create_dir(t.path().join("missing")).unwrap();
        g.sync().unwrap();
    }
}
