//! The remote-delivery role (DESIGN.md §1, RFC 5321 §5.1 and §4.5.4.1):
//! one thread owning the pure [`Scheduler`] of `hato_core::queue`, and one
//! short-lived thread per attempt (one connection, one transaction).
//!
//! Messages arrive by queue id from local delivery, which hands over
//! every message with recipients on other servers (at reception and, at
//! start, from its one recovery scan): the scheduler is rebuilt from the
//! spool, with only the recipients not yet finished. Each attempt records
//! its recipients' outcomes in the progress file before the scheduler
//! hears of them (see [`attempt`]), so after a crash a delivered recipient
//! is not sent again, and a failed one is in the bounce.
//!
//! The scheduler's events become files: failed recipients it gives up on
//! (expiry) are recorded like the others; a delay warning is queued once
//! and recorded (`warned`); when a message has no open recipient, the
//! message is finished by [`crate::reports::finish`], which sends the one
//! failure report and removes it. Reports are handed back to local
//! delivery like any newly queued message.
//!
//! The administrator's requests reach it through [`RemoteHandle`]: before
//! a message is deleted or bounced, the role forgets it and lets the
//! request go on only once no attempt for it runs (so a recipient is never
//! both delivered and reported failed), and a flush makes everything due.
//!
//! Log lines: `event=deliver id= to= relay= reply= tls=`, `event=defer id=
//! to= relay= reason=`, `event=bounce id= to= reason=` (failed for good),
//! `event=connect-failed id= relay= reason=` and `event=host-skipped id=
//! relay= reason=` (the next host is tried), `event=tls-failed id= relay=`
//! (STARTTLS failed; the host is tried again in plaintext), and
//! `event=report` from the reports.

mod attempt;
mod pool;
mod resolve;
mod wire;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hato_core::config::Config;
use hato_core::policy::Destination;
use hato_core::queue::{route, AttemptResult, NewMessage, SchedEvent, Scheduler, Settings, Work};
use hato_core::time::UnixTime;

use crate::dkim::DkimKeys;
use crate::log;
use crate::reports::{self, Finished};
use crate::store::{RecordedFailure, Store};

use attempt::Shared;
use pool::Pool;
use resolve::LazyDns;

/// How long a stopping role waits for the attempts still running.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The longest [`RemoteHandle::forget`] waits for a running attempt: the
/// longest an attempt can take (connect, then the RFC 5321 waits).
const FORGET_WAIT: Duration = Duration::from_secs(30 * 60);

/// Where the role hands queue ids it created or finished with (reports
/// to deliver): local delivery's intake.
pub type Submit = Arc<dyn Fn(String) + Send + Sync>;

/// What the role thread is told.
enum Msg {
    /// A queued message may have remote recipients.
    Add(String),
    /// The administrator is about to delete or bounce it: forget it, and
    /// answer once no attempt for it runs any more.
    Forget(String, Sender<()>),
    /// Make everything due now; answers how many messages wait.
    Flush(Sender<usize>),
    /// An attempt ended.
    Finished(Work, Vec<(usize, AttemptResult)>),
    /// Stop.
    Stop,
}

/// The way to the role thread; stops it when [`RemoteHandle::shutdown`]
/// is called or the last clone is dropped.
#[derive(Clone)]
pub struct RemoteHandle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Mutex<Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHandle").finish_non_exhaustive()
    }
}

impl RemoteHandle {
    /// Starts the role.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(
        store: Arc<Store>,
        cfg: Arc<Config>,
        dkim: Arc<DkimKeys>,
        submit: Submit,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            dns: LazyDns::new(cfg.delivery.dns_servers.clone()),
            store,
            cfg,
            pool: Pool::default(),
            tls: OnceLock::new(),
            dkim,
        });
        let role = Role {
            sched: Scheduler::new(Settings::from_config(&shared.cfg.delivery)),
            shared,
            tx: tx.clone(),
            submit,
            running: 0,
            in_flight: HashMap::new(),
            waiting: HashMap::new(),
            seeds: AtomicU64::new(seed()),
        };
        let thread = thread::Builder::new()
            .name("remote-delivery".into())
            .spawn(move || role.run(&rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Mutex::new(tx),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Hands over a queued message; its remote recipients not yet finished
    /// are scheduled (a message already scheduled is left as it is).
    pub fn submit(&self, id: String) {
        self.send(Msg::Add(id));
    }

    /// Forgets a message the administrator is about to delete or bounce,
    /// and waits until no attempt for it runs (its outcomes are then in the
    /// progress file), so the request never races an attempt. Waits at
    /// most as long as an attempt can take.
    pub fn forget(&self, id: String) {
        let (tx, rx) = mpsc::channel();
        self.send(Msg::Forget(id, tx));
        let _ = rx.recv_timeout(FORGET_WAIT);
    }

    /// Makes every waiting recipient due now; returns how many messages
    /// wait for remote delivery.
    ///
    /// # Errors
    /// The role is not running.
    pub fn flush(&self) -> Result<usize, String> {
        let (tx, rx) = mpsc::channel();
        self.send(Msg::Flush(tx));
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "remote delivery is not running".to_owned())
    }

    /// Stops the role (after the attempts running, for at most a few
    /// seconds) and waits for it. Later calls do nothing.
    pub fn shutdown(&self) {
        self.send(Msg::Stop);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            if t.join().is_err() {
                log::Line::new("error")
                    .kv("reason", "remote delivery thread panicked")
                    .emit();
            }
        }
    }

    fn send(&self, msg: Msg) {
        let tx = self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = tx.send(msg);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = tx.send(Msg::Stop);
    }
}

struct Role {
    sched: Scheduler,
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    submit: Submit,
    /// Attempts running.
    running: usize,
    /// Attempts running, per message.
    in_flight: HashMap<String, usize>,
    /// Who waits for a message's attempts to end ([`Msg::Forget`]).
    waiting: HashMap<String, Vec<Sender<()>>>,
    seeds: AtomicU64,
}

impl Role {
    fn run(mut self, rx: &Receiver<Msg>) {
        loop {
            let now = wall_now();
            while let Some(work) = self.sched.poll_work(now) {
                self.start(work);
            }
            while let Some(ev) = self.sched.poll_event() {
                self.on_event(ev);
            }
            self.close_idle(false);
            let msg = match self.wait() {
                Some(wait) => rx.recv_timeout(wait),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Add(id)) => self.add(id),
                Ok(Msg::Forget(id, answer)) => {
                    self.sched.remove_message(&id);
                    if self.in_flight.contains_key(&id) {
                        self.waiting.entry(id).or_default().push(answer);
                    } else {
                        let _ = answer.send(());
                    }
                }
                Ok(Msg::Flush(answer)) => {
                    self.sched.flush(wall_now());
                    let _ = answer.send(self.sched.len());
                }
                Ok(Msg::Finished(work, results)) => self.finished(&work, &results),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.stop(rx);
    }

    /// How long to sleep: until the scheduler's next wakeup, or until the
    /// oldest parked connection is due to close.
    fn wait(&self) -> Option<Duration> {
        let sched = self.sched.next_wakeup().map(|at| {
            let at = UNIX_EPOCH + Duration::from_secs(at.0);
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
        let pool = (!self.shared.pool.is_empty()).then_some(pool::IDLE_FOR);
        match (sched, pool) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Schedules the open remote recipients of `id`.
    fn add(&mut self, id: String) {
        let store = &self.shared.store;
        let env = match store.read_envelope(&id) {
            Ok(env) => env,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                log::Line::new("error")
                    .kv("id", &id)
                    .kv(
                        "reason",
                        format!("remote delivery cannot read the queue file: {e}"),
                    )
                    .emit();
                return;
            }
        };
        let (finished, warned) = match (store.delivered(&id), store.warned(&id)) {
            (Ok(f), Ok(w)) => (f, w),
            (Err(e), _) | (_, Err(e)) => {
                log::Line::new("error")
                    .kv("id", &id)
                    .kv(
                        "reason",
                        format!("remote delivery cannot read the progress file: {e}"),
                    )
                    .emit();
                return;
            }
        };
        let recipients: Vec<(usize, String)> = env
            .recipients
            .iter()
            .enumerate()
            .filter(|(i, _)| finished.binary_search(i).is_err())
            .filter_map(|(i, r)| match &r.destination {
                Destination::Remote(a) => {
                    Some((i, route(&self.shared.cfg.delivery, a).destination))
                }
                Destination::Local(_) => None,
            })
            .collect();
        if recipients.is_empty() {
            return;
        }
        let m = NewMessage {
            id,
            received: env.received,
            null_sender: env.from == "<>",
            recipients,
            failed: Vec::new(),
            warned,
        };
        // Already scheduled: nothing to do.
        let _ = self.sched.add_message(wall_now(), m);
    }

    /// Starts an attempt on a thread of its own.
    fn start(&mut self, work: Work) {
        let id = work.id.clone();
        let shared = Arc::clone(&self.shared);
        let tx = self.tx.clone();
        let seed = self
            .seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let spawned = thread::Builder::new()
            .name("remote-attempt".into())
            .spawn(move || {
                let results = attempt::run(&shared, &work, seed);
                let _ = tx.send(Msg::Finished(work, results));
            });
        match spawned {
            Ok(_) => {
                self.running += 1;
                *self.in_flight.entry(id).or_default() += 1;
            }
            Err(e) => log::Line::new("error")
                .kv("reason", format!("cannot start a delivery attempt: {e}"))
                .emit(),
        }
    }

    /// An attempt ended: the scheduler hears of it, and whoever waits for
    /// the message's attempts to end is told.
    fn finished(&mut self, work: &Work, results: &[(usize, AttemptResult)]) {
        self.running = self.running.saturating_sub(1);
        self.sched.report(wall_now(), work, results);
        if let Some(n) = self.in_flight.get_mut(&work.id) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&work.id);
                for w in self.waiting.remove(&work.id).unwrap_or_default() {
                    let _ = w.send(());
                }
            }
        }
    }

    fn on_event(&mut self, ev: SchedEvent) {
        let store = &self.shared.store;
        let cfg = &self.shared.cfg;
        match ev {
            SchedEvent::Bounce { id, failed } | SchedEvent::ToPostmaster { id, failed } => {
                // Attempts record their own failures; these are the ones
                // the scheduler gave up on (expiry).
                let known = store.failures(&id).unwrap_or_default();
                for (idx, reason) in failed {
                    if known.iter().any(|(k, _)| *k == idx) {
                        continue;
                    }
                    let reason = if reason.starts_with("delivery time expired") {
                        format!("4.4.7 {reason}")
                    } else {
                        reason
                    };
                    let f = RecordedFailure { mta: None, reason };
                    match store.mark_failed(&id, idx, &f) {
                        Ok(()) => log::Line::new("bounce")
                            .kv("id", &id)
                            .kv("index", idx)
                            .kv("reason", &f.reason)
                            .emit(),
                        Err(e) => log::Line::new("error")
                            .kv("id", &id)
                            .kv("reason", format!("cannot record a failed recipient: {e}"))
                            .emit(),
                    }
                }
            }
            SchedEvent::DelayWarning { id, recipients } => {
                let until = match store.read_envelope(&id) {
                    Ok(env) => UnixTime(
                        env.received
                            .0
                            .saturating_add(cfg.delivery.max_lifetime.as_secs()),
                    ),
                    Err(_) => return,
                };
                match reports::warn_delay(store, cfg, &id, &recipients, until, wall_now()) {
                    Ok(report) => {
                        if let Err(e) = store.mark_warned(&id) {
                            log::Line::new("error")
                                .kv("id", &id)
                                .kv("reason", format!("cannot record the delay warning: {e}"))
                                .emit();
                        }
                        if let Some((dsn, _, _)) = report {
                            (self.submit)(dsn);
                        }
                    }
                    Err(e) => log::Line::new("error")
                        .kv("id", &id)
                        .kv("reason", format!("cannot queue the delay warning: {e}"))
                        .emit(),
                }
            }
            SchedEvent::Done { id } => match reports::finish(store, cfg, &id, wall_now()) {
                Ok(Finished::Done {
                    report: Some((dsn, _, _)),
                    ..
                }) => (self.submit)(dsn),
                Ok(_) => {}
                Err(e) => log::Line::new("error")
                    .kv("id", &id)
                    .kv("reason", format!("cannot finish the message: {e}"))
                    .emit(),
            },
        }
    }

    /// Closes parked connections that waited long enough (all when `all`).
    fn close_idle(&self, all: bool) {
        let idle = self.shared.pool.expire(all);
        if idle.is_empty() {
            return;
        }
        // QUIT waits for the server's reply: not on this thread.
        let _ = thread::Builder::new()
            .name("remote-quit".into())
            .spawn(move || {
                for wire in idle {
                    wire.quit();
                }
            });
    }

    /// Waits a little for the attempts still running, so that their
    /// results are recorded; closes the parked connections.
    fn stop(mut self, rx: &Receiver<Msg>) {
        let deadline = Instant::now() + STOP_WAIT;
        while self.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Msg::Finished(work, results)) => self.finished(&work, &results),
                Ok(Msg::Forget(_, answer)) => {
                    let _ = answer.send(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        for wire in self.shared.pool.expire(true) {
            wire.quit();
        }
    }
}

/// The wall clock, as the scheduler counts time.
fn wall_now() -> UnixTime {
    UnixTime(log::unix_now().0)
}

/// A seed for MX shuffling from the clock: not a secret, only spread.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
