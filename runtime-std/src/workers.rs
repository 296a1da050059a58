//! The session workers of `hato`: a pool of threads that run accepted
//! connections one after another, so a connection costs no thread of its
//! own (no clone, stack mapping, signal-stack set-up and exit per
//! connection).
//!
//! [`Workers::submit`] queues a job and wakes an idle worker, or starts a
//! new one when none is idle and fewer than [`Settings::max`] run; the
//! caller bounds the jobs in flight (`hato` admits at most
//! `limits.max_connections` connections), so with `max` at that bound a
//! job never waits for a worker. A worker idle for [`Settings::idle`]
//! retires unless only [`Settings::warm`] are left, so an idle server
//! keeps a few threads and little memory. Threads are named once, when
//! they start.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// How a pool grows and shrinks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name of every worker thread.
    pub name: &'static str,
    /// The stack size of a worker thread.
    pub stack: usize,
    /// How many workers may run at most.
    pub max: usize,
    /// How many idle workers stay when the rest retire.
    pub warm: usize,
    /// How long a worker waits for a job before it retires.
    pub idle: Duration,
}

/// A pool of threads running jobs of type `T` with one function.
pub struct Workers<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Workers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Workers")
            .field("settings", &self.shared.settings)
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.queue.len())
            .finish_non_exhaustive()
    }
}

struct Shared<T> {
    settings: Settings,
    run: Box<dyn Fn(T) + Send + Sync>,
    state: Mutex<State<T>>,
    /// Wakes an idle worker: a job is queued.
    ready: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Workers alive (running a job, idle, or about to take a job).
    threads: usize,
    /// Workers waiting for a job; each looks at the queue before it
    /// retires, so a job queued while one waits is never left behind.
    idle: usize,
}

impl<T: Send + 'static> Workers<T> {
    /// A pool that runs each job with `run`; no thread starts before the
    /// first job.
    pub fn new(settings: Settings, run: impl Fn(T) + Send + Sync + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                run: Box::new(run),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                }),
                ready: Condvar::new(),
            }),
        }
    }

    /// Queues `job` for a worker: an idle one, or a new one if none is
    /// idle and fewer than `max` run; otherwise it waits for the next
    /// worker that finishes.
    ///
    /// # Errors
    /// A new thread was needed and could not start. The job still runs
    /// when another worker is alive; if none is, it has been dropped.
    pub fn submit(&self, job: T) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.queue.push_back(job);
        if st.queue.len() <= st.idle {
            // Woken after the unlock, the worker finds the lock free.
            drop(st);
            self.shared.ready.notify_one();
            return Ok(());
        }
        if st.threads >= self.shared.settings.max {
            return Ok(());
        }
        st.threads += 1;
        drop(st);
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name(self.shared.settings.name.into())
            .stack_size(self.shared.settings.stack)
            .spawn(move || work(&shared));
        let Err(e) = spawned else {
            return Ok(());
        };
        let mut st = self.shared.lock();
        st.threads -= 1;
        if st.threads == 0 {
            // No one will take them: dropped here, after the lock.
            let stranded = std::mem::take(&mut st.queue);
            drop(st);
            drop(stranded);
        }
        Err(e)
    }

    /// Returns (workers alive, of which idle).
    pub fn counts(&self) -> (usize, usize) {
        let st = self.shared.lock();
        (st.threads, st.idle)
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a worker out when its thread ends by a panic in a job.
struct Leaving<'a, T> {
    shared: &'a Shared<T>,
    retired: bool,
}

impl<T> Drop for Leaving<'_, T> {
    fn drop(&mut self) {
        if !self.retired {
            self.shared.lock().threads -= 1;
        }
    }
}

/// One worker: takes jobs until it has been idle long enough to retire.
fn work<T>(shared: &Shared<T>) {
    let mut leaving = Leaving {
        shared,
        retired: false,
    };
    let mut st = shared.lock();
    loop {
        if let Some(job) = st.queue.pop_front() {
            drop(st);
            (shared.run)(job);
            st = shared.lock();
            continue;
        }
        let keep = st.threads <= shared.settings.warm;
        st.idle += 1;
        let timed_out = if keep {
            st = shared
                .ready
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            false
        } else {
            let (next, wait) = shared
                .ready
                .wait_timeout(st, shared.settings.idle)
                .unwrap_or_else(PoisonError::into_inner);
            st = next;
            wait.timed_out()
        };
        st.idle -= 1;
        // Retiring is decided under the same lock as `threads` changes,
        // so `submit` never counts a worker that is on its way out.
        if timed_out && st.queue.is_empty() && st.threads > shared.settings.warm {
            st.threads -= 1;
            leaving.retired = true;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;
    use crate::store::testdir::wait_until;

    fn settings(max: usize, warm: usize, idle: Duration) -> Settings {
        Settings {
            name: "test-worker",
            stack: 64 * 1024,
            max,
            warm,
            idle,
        }
    }

    #[test]
    fn sequential_jobs_reuse_one_thread() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = Workers::new(settings(8, 2, Duration::from_secs(60)), move |n: u32| {
            let name = thread::current().name().map(str::to_owned);
            let id = thread::current().id();
            let _ = tx.lock().unwrap().send((n, id, name));
        });
        let mut ids = Vec::new();
        for n in 0..20 {
            pool.submit(n).unwrap();
            let (got, id, name) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(got, n);
            assert_eq!(name.as_deref(), Some("test-worker"));
            ids.push(id);
            // Wait until the worker is idle again, so the next job finds it.
            wait_until("worker idle", || pool.counts() == (1, 1));
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "a thread per job");
    }

    #[test]
    fn concurrent_jobs_grow_the_pool_up_to_max_and_all_run() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let pool = {
            let (gate, done, running, peak) = (
                Arc::clone(&gate),
                Arc::clone(&done),
                Arc::clone(&running),
                Arc::clone(&peak),
            );
            Workers::new(settings(4, 1, Duration::from_secs(60)), move |_: u32| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let (open, cv) = &*gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            })
        };
        for n in 0..10 {
            pool.submit(n).unwrap();
        }
        wait_until("four running", || running.load(Ordering::SeqCst) == 4);
        assert_eq!(pool.counts().0, 4, "more threads than max");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        wait_until("all done", || done.load(Ordering::SeqCst) == 10);
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn idle_workers_retire_down_to_the_warm_ones() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let started = Arc::new(AtomicUsize::new(0));
        let pool = {
            let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
            Workers::new(settings(6, 2, Duration::from_millis(50)), move |_: u32| {
                started.fetch_add(1, Ordering::SeqCst);
                let (open, cv) = &*gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
            })
        };
        for n in 0..6 {
            pool.submit(n).unwrap();
        }
        wait_until("six started", || started.load(Ordering::SeqCst) == 6);
        assert_eq!(pool.counts(), (6, 0));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        wait_until("retired to two", || pool.counts() == (2, 2));
        // The warm ones stay, and still take work.
        thread::sleep(Duration::from_millis(200));
        assert_eq!(pool.counts(), (2, 2));
        pool.submit(7).unwrap();
        wait_until("seventh ran", || started.load(Ordering::SeqCst) == 7);
        wait_until("idle again", || pool.counts() == (2, 2));
    }

    #[test]
    fn a_panicking_job_does_not_leave_a_ghost_worker() {
        let ran = Arc::new(AtomicUsize::new(0));
        let pool = {
            let ran = Arc::clone(&ran);
            Workers::new(settings(2, 2, Duration::from_secs(60)), move |n: u32| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(n != 0, "job 0 panics (expected in this test)");
            })
        };
        pool.submit(0).unwrap();
        wait_until("the panicking worker is gone", || {
            ran.load(Ordering::SeqCst) == 1 && pool.counts().0 == 0
        });
        pool.submit(1).unwrap();
        wait_until("a new worker ran the next job", || {
            ran.load(Ordering::SeqCst) == 2
        });
    }
}
