//! The local-delivery role (DESIGN.md §1): one thread that takes queue
//! ids from a channel and delivers each message's local recipients into
//! their Maildirs. It talks to the rest of hato only through
//! [`DeliveryHandle`], so it can later move into a process of its own,
//! under the uid that owns the mailboxes.
//!
//! On start it schedules everything already in `queue/` (recovery after a
//! crash or a restart). Each agent takes every message waiting in its
//! channel (and every one due) as one batch: for each message it delivers
//! every local recipient not yet finished, writing the Maildir copy
//! (fdatasynced) and renaming it into `new/`; then it fsyncs each `new/`
//! the batch touched, once; only then does it record the recipients, or
//! remove a message whose recipients all got their copy now (see
//! `store::maildir` for the names that make this safe, and
//! `store::settle` for what a later attempt or a restart looks at first).
//! No recipient ever gets a second copy. A failed delivery (full disk,
//! broken permissions) is logged as `defer` and retried with back-off; the
//! message stays queued meanwhile. Remote recipients stay queued for
//! remote delivery. The queue file and its progress file, if any, are
//! removed once every recipient is done.
//!
//! It also runs the administrator's queue requests (`hato queue flush|
//! delete|bounce`, arriving through [`crate::control`]) between two
//! attempts, so a request never meets a message in the middle of its
//! delivery.
//!
//! Log lines: `event=deliver id= to= mailbox= file=`, `event=defer id=
//! to= reason=`, `event=dequeue id=` (all recipients done), and for the
//! administrator's requests `event=queue-flush by=admin messages=`,
//! `event=queue-delete id= by=admin`, `event=queue-bounce id= by=admin
//! failed= dsn= to=`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hato_core::config::{Config, LocalMethod};
use hato_core::policy::Destination;
use hato_core::queue::QueueEnvelope;

use crate::control::Request;
use crate::dkim::DkimKeys;
use crate::lmtp;
use crate::log;
use crate::queue_admin;
use crate::remote::{RemoteHandle, Submit};
use crate::reports::{self, Finished};
use crate::store::{maildir, Body, Settled, Store};

/// When failed deliveries are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each further one.
    pub first: Duration,
    /// The longest wait between two tries.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// One minute, doubling up to fifteen.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(60),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    fn delay(self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Starts the local-delivery thread.
#[derive(Debug)]
pub struct LocalDelivery;

impl LocalDelivery {
    /// Starts the thread with the default [`RetryPolicy`].
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(store: Arc<Store>, cfg: Arc<Config>) -> io::Result<DeliveryHandle> {
        Self::spawn_signing(store, cfg, Arc::new(DkimKeys::default()))
    }

    /// Starts local delivery and the remote-delivery role, which signs
    /// outgoing mail of our own users with `dkim`.
    ///
    /// # Errors
    /// A thread cannot be started.
    pub fn spawn_signing(
        store: Arc<Store>,
        cfg: Arc<Config>,
        dkim: Arc<DkimKeys>,
    ) -> io::Result<DeliveryHandle> {
        Self::start(store, cfg, RetryPolicy::default(), AGENTS, Some(dkim))
    }

    /// Starts local delivery alone (no remote-delivery role: remote
    /// recipients stay queued), with the given retry policy. For tests.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn_with(
        store: Arc<Store>,
        cfg: Arc<Config>,
        retry: RetryPolicy,
    ) -> io::Result<DeliveryHandle> {
        Self::start(store, cfg, retry, AGENTS, None)
    }

    /// Starts `count` agents, without the remote-delivery role (see
    /// [`LocalDelivery::spawn_with`]).
    ///
    /// # Errors
    /// A thread cannot be started.
    pub fn spawn_sharded(
        store: Arc<Store>,
        cfg: Arc<Config>,
        retry: RetryPolicy,
        count: usize,
    ) -> io::Result<DeliveryHandle> {
        Self::start(store, cfg, retry, count, None)
    }

    /// Starts `count` agents, each the only owner of the messages whose id
    /// hashes to it ([`shard_of`]): they deliver in parallel (each one's
    /// fsyncs overlap the others'), and every message still has exactly one
    /// agent, so an administrator's request for it still runs between two
    /// of its attempts. With `remote` (the DKIM keys it signs with), the
    /// remote-delivery role starts too ([`crate::remote`]); the agents hand
    /// it every message with remote recipients, and it hands back the
    /// reports it queues.
    fn start(
        store: Arc<Store>,
        cfg: Arc<Config>,
        retry: RetryPolicy,
        count: usize,
        remote: Option<Arc<DkimKeys>>,
    ) -> io::Result<DeliveryHandle> {
        let count = count.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count).map(|_| mpsc::channel()).unzip();
        let remote = if let Some(dkim) = remote {
            let intake = senders.clone();
            let submit: Submit = Arc::new(move |id: String| {
                let owner = &intake[shard_of(&id, intake.len())];
                let _ = owner.send(Command::Deliver(id));
            });
            Some(RemoteHandle::spawn(
                Arc::clone(&store),
                Arc::clone(&cfg),
                dkim,
                submit,
            )?)
        } else {
            None
        };
        let mut threads = Vec::with_capacity(count);
        for (index, rx) in receivers.into_iter().enumerate() {
            let agent = Agent {
                store: Arc::clone(&store),
                cfg: Arc::clone(&cfg),
                retry,
                pending: BTreeMap::new(),
                shard: index,
                peers: senders.clone(),
                remote: remote.clone(),
                maildir: store.maildir_writer(),
            };
            let thread = thread::Builder::new()
                .name(format!("local-delivery-{index}"))
                .spawn(move || agent.run(&rx));
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    for tx in &senders {
                        let _ = tx.send(Command::Shutdown);
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    if let Some(r) = &remote {
                        r.shutdown();
                    }
                    return Err(e);
                }
            }
        }
        recover(&store, &senders);
        Ok(DeliveryHandle {
            inner: Arc::new(HandleInner {
                senders,
                threads: Mutex::new(threads),
                remote,
            }),
        })
    }
}

/// Hands every message a previous run left in the queue to its agent,
/// from one scan (so the `recover` line counts the whole queue once, and
/// no agent can finish a message before another has counted it).
fn recover(store: &Store, agents: &[Sender<Command>]) {
    match store.queued() {
        Ok(ids) => {
            if !ids.is_empty() {
                log::Line::new("recover").kv("queued", ids.len()).emit();
            }
            for id in ids {
                let _ = agents[shard_of(&id, agents.len())].send(Command::Deliver(id));
            }
        }
        Err(e) => log::Line::new("error")
            .kv("reason", format!("cannot read the queue: {e}"))
            .emit(),
    }
}

/// How many local-delivery agents run. Delivery waits on fsync, not on the
/// CPU, so even a 2-core machine gains from overlapping several.
pub const AGENTS: usize = 4;

/// Returns the agent (of `count`) that owns queue id `id`: FNV-1a, stable
/// across runs, so recovery after a restart finds the same owner.
pub fn shard_of(id: &str, count: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % count.max(1) as u64).unwrap_or(0)
}

/// What the delivery thread is told.
#[derive(Debug)]
enum Command {
    /// A message was committed to the queue.
    Deliver(String),
    /// An administrator's request about one message, and where its answer goes.
    Control(Request, Sender<Result<String, String>>),
    /// Make every queued message of this agent due now; answers how many.
    Flush(Sender<Result<usize, String>>),
    /// Finish the message in hand and stop.
    Shutdown,
}

/// The way to the delivery thread. Clones share the thread; it stops on
/// [`DeliveryHandle::shutdown`] or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct DeliveryHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    senders: Vec<Sender<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    remote: Option<RemoteHandle>,
}

impl DeliveryHandle {
    /// Hands a committed message to local delivery.
    pub fn submit(&self, queue_id: String) {
        if self
            .inner
            .owner(&queue_id)
            .send(Command::Deliver(queue_id))
            .is_err()
        {
            // Stopped: the message stays queued and is found on the next start.
            log::Line::new("error")
                .kv("reason", "local delivery is not running")
                .emit();
        }
    }

    /// Runs an administrator's request on the delivery thread, between
    /// two attempts, and returns its answer.
    ///
    /// # Errors
    /// The request failed (the text says why), or delivery is not running.
    pub fn control(&self, req: Request) -> Result<String, String> {
        let stopped = || "local delivery is not running (the server is stopping)".to_owned();
        let id = match &req {
            Request::Flush => return self.flush(),
            Request::Delete(id) | Request::Bounce(id) => id.clone(),
        };
        let (tx, rx) = mpsc::channel();
        self.inner
            .owner(&id)
            .send(Command::Control(req, tx))
            .map_err(|_| stopped())?;
        rx.recv()
            .map_err(|_| "local delivery stopped before answering".to_owned())?
    }

    /// Asks every agent to make its queued messages due now.
    fn flush(&self) -> Result<String, String> {
        let mut answers = Vec::new();
        for agent in &self.inner.senders {
            let (tx, rx) = mpsc::channel();
            agent
                .send(Command::Flush(tx))
                .map_err(|_| "local delivery is not running (the server is stopping)".to_owned())?;
            answers.push(rx);
        }
        let mut total = 0;
        for rx in answers {
            total += rx
                .recv()
                .map_err(|_| "local delivery stopped before answering".to_owned())??;
        }
        let remote = match &self.inner.remote {
            Some(r) => Some(r.flush()?),
            None => None,
        };
        log::Line::new("queue-flush")
            .kv("by", "admin")
            .kv("messages", total)
            .opt("remote", remote)
            .emit();
        Ok(match remote {
            Some(n) => {
                format!("{total} queued messages are due now ({n} waiting for remote delivery)")
            }
            None => format!("{total} queued messages are due now"),
        })
    }

    /// Stops the thread after the message in hand and waits for it.
    /// Later calls (and submits) do nothing.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

impl HandleInner {
    fn owner(&self, id: &str) -> &Sender<Command> {
        &self.senders[shard_of(id, self.senders.len())]
    }

    fn stop(&self) {
        for tx in &self.senders {
            let _ = tx.send(Command::Shutdown);
        }
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            if thread.join().is_err() {
                log::Line::new("error")
                    .kv("reason", "local delivery thread panicked")
                    .emit();
            }
        }
        if let Some(r) = &self.remote {
            r.shutdown();
        }
    }
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the thread knows about a message still queued.
#[derive(Debug, Default)]
struct Pending {
    /// When to try its local recipients; `None`: nothing local left.
    due: Option<Instant>,
    /// Failed tries in a row.
    failures: u32,
    /// Whether the remote recipients were handed to remote delivery (or,
    /// without it, logged) already.
    remote_handed: bool,
    /// Whether this agent has tried it: a later attempt must settle what
    /// an earlier one did (see `store::settle`).
    tried: bool,
}

struct Agent {
    store: Arc<Store>,
    cfg: Arc<Config>,
    retry: RetryPolicy,
    pending: BTreeMap<String, Pending>,
    /// This agent's index among `peers`.
    shard: usize,
    /// Every agent's channel, this one's included: a message from another
    /// shard (a bounce report this agent queued) goes to its owner.
    peers: Vec<Sender<Command>>,
    /// The remote-delivery role, if it runs.
    remote: Option<RemoteHandle>,
    /// Writes the Maildir copies, and remembers the mailboxes it made sure of.
    maildir: maildir::Writer,
}

impl Agent {
    fn run(mut self, rx: &Receiver<Command>) {
        loop {
            let first = match self.next_due() {
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            // Everything already waiting joins this round: one batch.
            let mut cmd = first;
            loop {
                match cmd {
                    Ok(Command::Deliver(id)) => self.schedule(id, Instant::now()),
                    Ok(Command::Control(req, answer)) => {
                        let _ = answer.send(self.control(req));
                    }
                    Ok(Command::Flush(answer)) => {
                        let _ = answer.send(self.flush());
                    }
                    Ok(Command::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {}
                }
                match rx.try_recv() {
                    Ok(next) => cmd = Ok(next),
                    Err(_) => break,
                }
            }
            let due = self.take_due(BATCH);
            if !due.is_empty() {
                self.attempt_batch(&due);
            }
        }
    }

    /// Runs an administrator's request; logs and describes what it did.
    fn control(&mut self, req: Request) -> Result<String, String> {
        let not_found = |id: &str, e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                format!("no message {id} in the queue")
            } else {
                format!("{id}: {e}")
            }
        };
        match req {
            Request::Flush => self
                .flush()
                .map(|n| format!("{n} queued messages are due now")),
            Request::Delete(id) => {
                if let Some(r) = &self.remote {
                    r.forget(id.clone());
                }
                if let Err(e) = queue_admin::delete(&self.store, &id) {
                    self.resubmit(&id);
                    return Err(not_found(&id, e));
                }
                self.pending.remove(&id);
                log::Line::new("queue-delete")
                    .kv("id", &id)
                    .kv("by", "admin")
                    .emit();
                Ok(format!("deleted {id}"))
            }
            Request::Bounce(id) => {
                if let Some(r) = &self.remote {
                    r.forget(id.clone());
                }
                let out = match queue_admin::bounce(&self.store, &self.cfg, &id, log::unix_now()) {
                    Ok(out) => out,
                    Err(e) => {
                        self.resubmit(&id);
                        return Err(not_found(&id, e));
                    }
                };
                self.pending.remove(&id);
                let (dsn, to) = match &out.report {
                    Some((dsn, to, _)) => (Some(dsn.as_str()), Some(to.as_str())),
                    None => (None, None),
                };
                log::Line::new("queue-bounce")
                    .kv("id", &id)
                    .kv("by", "admin")
                    .kv("failed", out.failed)
                    .opt("dsn", dsn)
                    .opt("to", to)
                    .opt("reason", out.no_report)
                    .emit();
                Ok(match out.report {
                    Some((dsn, to, _)) => {
                        self.schedule(dsn.clone(), Instant::now());
                        format!(
                            "bounced {id}: {} recipients failed; report {dsn} queued for <{to}>",
                            out.failed
                        )
                    }
                    None => format!(
                        "bounced {id}: {} recipients failed; no report ({})",
                        out.failed,
                        out.no_report.unwrap_or("none needed")
                    ),
                })
            }
        }
    }

    /// Hands a message back to remote delivery after a request about it
    /// failed (the message stays queued).
    fn resubmit(&self, id: &str) {
        if let Some(r) = &self.remote {
            r.submit(id.to_owned());
        }
    }

    /// Makes every queued message of this agent's shard due now.
    fn flush(&mut self) -> Result<usize, String> {
        let ids = self
            .store
            .queued()
            .map_err(|e| format!("cannot read the queue: {e}"))?;
        let now = Instant::now();
        let mut n = 0;
        let mine: Vec<String> = ids.into_iter().filter(|id| self.owns(id)).collect();
        for id in mine {
            let entry = self.pending.entry(id).or_default();
            entry.due = Some(now);
            entry.failures = 0;
            n += 1;
        }
        Ok(n)
    }

    fn owns(&self, id: &str) -> bool {
        shard_of(id, self.peers.len()) == self.shard
    }

    /// Schedules `id` here, or hands it to the agent that owns it.
    fn schedule(&mut self, id: String, at: Instant) {
        if !self.owns(&id) {
            let owner = &self.peers[shard_of(&id, self.peers.len())];
            let _ = owner.send(Command::Deliver(id));
            return;
        }
        self.pending.entry(id).or_default().due = Some(at);
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.due).min()
    }

    /// Returns the messages whose time has come, due first (oldest id
    /// among equals), at most `max`.
    fn take_due(&mut self, max: usize) -> Vec<String> {
        let now = Instant::now();
        let mut due: Vec<(Instant, &String)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| p.due.filter(|&d| d <= now).map(|d| (d, id)))
            .collect();
        due.sort();
        due.into_iter()
            .take(max)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Delivers a batch of messages: each one's Maildir files are written,
    /// fsynced and renamed into `new/`; then each `new/` directory the
    /// batch touched is fsynced once; only then are the deliveries
    /// recorded (or the messages removed). A rename is durable before
    /// anything relies on it, and messages that arrive together share the
    /// fsync of their mailbox's `new/`.
    fn attempt_batch(&mut self, ids: &[String]) {
        let attempts: Vec<Attempt> = ids.iter().filter_map(|id| self.begin(id)).collect();
        let mut dirs: Vec<&Path> = attempts
            .iter()
            .flat_map(|a| a.copies.iter().filter_map(|c| c.path.parent()))
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        let failed: Vec<(PathBuf, String)> = dirs
            .into_iter()
            .filter_map(|dir| {
                let e = self.store.sync_maildir_new(dir).err()?;
                Some((dir.to_path_buf(), e.to_string()))
            })
            .collect();
        for attempt in attempts {
            self.finish(attempt, &failed);
        }
    }

    /// The first half of an attempt: reads the message, settles what an
    /// earlier attempt did, delivers to LMTP, and writes and renames the
    /// Maildir copies. `None` when there is nothing more to do now.
    fn begin(&mut self, id: &str) -> Option<Attempt> {
        let (env, body) = match self.store.open_message(id) {
            Ok(message) => message,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Removed meanwhile (`hato queue delete`).
                self.pending.remove(id);
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // Left in place for the administrator; retrying cannot help.
                log::Line::new("error")
                    .kv("id", id)
                    .kv("reason", format!("damaged queue file, not delivered: {e}"))
                    .emit();
                self.pending.remove(id);
                return None;
            }
            Err(e) => {
                self.failed(id, &format!("cannot read queue file: {e}"));
                return None;
            }
        };
        let entry = self.pending.entry(id.to_owned()).or_default();
        let first_here = !std::mem::replace(&mut entry.tried, true);
        // Finished recipients: delivered, or failed for good (an LMTP 5yz,
        // or remote delivery's); the failed ones are in the final report.
        // A message this process just queued, on its first attempt, has
        // none, and no copy anywhere: nothing to read.
        let settled = if first_here && self.store.has_no_progress(id) {
            Settled::default()
        } else {
            match self.store.settle(&env, Some(&self.cfg.hostname)) {
                Ok(settled) => settled,
                Err(e) => {
                    let why = format!("cannot read its progress file or Maildirs: {e}");
                    self.failed(id, &why);
                    return None;
                }
            }
        };
        let finished = settled.finished();
        let mut attempt = Attempt {
            recorded: settled.recorded,
            copies: settled
                .found
                .into_iter()
                .map(|(idx, path)| Copy {
                    idx,
                    path,
                    recovered: true,
                })
                .collect(),
            local_failed: false,
            remote: Vec::new(),
            lmtp: false,
            env,
        };
        let cfg = Arc::clone(&self.cfg);
        let lmtp = match &cfg.delivery.local {
            LocalMethod::Lmtp(target) => Some(target),
            LocalMethod::Maildir => None,
        };
        let mut lmtp_batch = Vec::new();
        let mut body = Some(body);
        for (idx, rcpt) in attempt.env.recipients.iter().enumerate() {
            if finished.binary_search(&idx).is_ok() {
                continue;
            }
            match &rcpt.destination {
                Destination::Local(address) if lmtp.is_some() => {
                    lmtp_batch.push((idx, address.clone()));
                }
                Destination::Local(address) => {
                    let body = match body.take() {
                        Some(body) => Ok(body),
                        None => self.store.open_message(id).map(|(_, body)| body),
                    };
                    let copied = body
                        .map_err(|e| format!("cannot read queue file: {e}"))
                        .and_then(|body| self.copy_to_maildir(&attempt.env, idx, address, body));
                    match copied {
                        Ok(path) => attempt.copies.push(Copy {
                            idx,
                            path,
                            recovered: false,
                        }),
                        Err(why) => {
                            log::Line::new("defer")
                                .kv("id", id)
                                .kv("to", &rcpt.original)
                                .kv("reason", &why)
                                .emit();
                            attempt.local_failed = true;
                        }
                    }
                }
                Destination::Remote(_) => attempt.remote.push(rcpt.original.clone()),
            }
        }
        if let Some(target) = lmtp.filter(|_| !lmtp_batch.is_empty()) {
            attempt.lmtp = true;
            attempt.local_failed |= lmtp::deliver_queued(
                &self.store,
                &cfg.hostname,
                target,
                &attempt.env,
                &lmtp_batch,
            );
        }
        Some(attempt)
    }

    /// Writes, fsyncs and renames into `new/` the copy for recipient `idx`
    /// (not durable until `new/` is fsynced); returns its path.
    fn copy_to_maildir(
        &mut self,
        env: &QueueEnvelope,
        idx: usize,
        address: &str,
        body: Body,
    ) -> Result<PathBuf, String> {
        let name = maildir::file_name(&env.id, idx, env.received.0, &self.cfg.hostname);
        let failed = |e: io::Error| format!("maildir delivery to {address} failed: {e}");
        let prepared = self
            .maildir
            .prepare(address, &name, &env.from, body)
            .map_err(failed)?;
        let new = self.maildir.publish(prepared).map_err(failed)?;
        Ok(new.join(name))
    }

    /// The second half of an attempt, once the batch's `new/` directories
    /// are fsynced (`sync_failed`: those that were not): records and logs
    /// the deliveries, hands remote recipients on, and removes the message
    /// or schedules its next attempt.
    fn finish(&mut self, mut a: Attempt, sync_failed: &[(PathBuf, String)]) {
        let id = a.env.id.clone();
        let mut durable = Vec::with_capacity(a.copies.len());
        for copy in std::mem::take(&mut a.copies) {
            let dir = copy.path.parent().unwrap_or(Path::new(""));
            match sync_failed.iter().find(|(d, _)| d == dir) {
                Some((_, e)) => {
                    log::Line::new("defer")
                        .kv("id", &id)
                        .kv("to", original(&a.env.recipients, copy.idx))
                        .kv("reason", format!("cannot sync {}: {e}", dir.display()))
                        .emit();
                    a.local_failed = true;
                }
                None => durable.push(copy),
            }
        }
        // The common case: every recipient a Maildir, none recorded
        // before, all copies durable now. Nothing can have failed (only
        // remote and LMTP delivery fail for good) and no other role holds
        // the message, so it goes without a line in a progress file and
        // without reading its files again for the report check: should a
        // crash undo the removal, the copies' names say they are done.
        let all_now = a.recorded.is_empty()
            && !a.lmtp
            && !a.local_failed
            && a.env.recipients.iter().all(is_local);
        for copy in &durable {
            let recorded = if all_now {
                Ok(())
            } else {
                self.store.mark_delivered_lazily(&id, copy.idx)
            };
            let file = file_name(&copy.path);
            match recorded {
                Ok(()) => self.log_delivered(&a.env, copy, &file),
                // The next attempt finds the file and records it.
                Err(e) => {
                    log::Line::new("defer")
                        .kv("id", &id)
                        .kv("to", original(&a.env.recipients, copy.idx))
                        .kv(
                            "reason",
                            format!("delivered ({file}) but cannot record it yet: {e}"),
                        )
                        .emit();
                    a.local_failed = true;
                }
            }
        }
        let entry = self.pending.entry(id.clone()).or_default();
        if !a.remote.is_empty() && !entry.remote_handed {
            entry.remote_handed = true;
            match &self.remote {
                Some(r) => r.submit(id.clone()),
                None => log::Line::new("defer")
                    .kv("id", &id)
                    .kv("to", a.remote.join(","))
                    .kv("reason", "remote delivery is not running")
                    .emit(),
            }
        }
        if a.local_failed {
            return self.retry_later(&id);
        }
        if !a.remote.is_empty() {
            // Remote delivery finishes the message.
            entry.due = None;
            entry.failures = 0;
            return;
        }
        if all_now {
            return match self.store.remove(&id) {
                Ok(()) => {
                    reports::log_dequeued(&id, false);
                    self.pending.remove(&id);
                }
                Err(e) => self.failed(&id, &format!("cannot remove delivered message: {e}")),
            };
        }
        match reports::finish(&self.store, &self.cfg, &id, log::unix_now()) {
            Ok(Finished::Done { report, .. }) => {
                self.pending.remove(&id);
                if let Some((dsn, _, _)) = report {
                    self.schedule(dsn, Instant::now());
                }
            }
            Ok(Finished::Gone) => {
                self.pending.remove(&id);
            }
            Ok(Finished::NotYet) => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.due = None;
                }
            }
            Err(e) => self.failed(&id, &format!("cannot finish the delivered message: {e}")),
        }
    }

    /// Logs a delivery (`recovered=yes`: a copy an earlier attempt or
    /// run made, found in the Maildir).
    fn log_delivered(&self, env: &QueueEnvelope, copy: &Copy, file: &str) {
        let address = match env.recipients.get(copy.idx).map(|r| &r.destination) {
            Some(Destination::Local(address)) => address.as_str(),
            _ => "",
        };
        let how = copy.recovered.then_some("recovered");
        log_maildir_delivery(
            &env.id,
            original(&env.recipients, copy.idx),
            address,
            file,
            how,
        );
    }

    fn failed(&mut self, id: &str, why: &str) {
        log::Line::new("defer")
            .kv("id", id)
            .kv("reason", why)
            .emit();
        self.retry_later(id);
    }

    fn retry_later(&mut self, id: &str) {
        let entry = self.pending.entry(id.to_owned()).or_default();
        entry.failures = entry.failures.saturating_add(1);
        entry.due = Some(Instant::now() + self.retry.delay(entry.failures));
    }
}

/// How many messages an agent takes into one batch at most.
const BATCH: usize = 64;

/// A message between the two halves of its attempt.
struct Attempt {
    env: QueueEnvelope,
    /// Recipients its progress file lists.
    recorded: Vec<usize>,
    /// Maildir copies waiting for the fsync of their directory.
    copies: Vec<Copy>,
    /// Whether a local recipient must be tried again.
    local_failed: bool,
    /// Its remote recipients still open (as the client gave them).
    remote: Vec<String>,
    /// Whether local recipients went to LMTP.
    lmtp: bool,
}

/// A Maildir copy of a message for recipient `idx`.
struct Copy {
    idx: usize,
    path: PathBuf,
    /// Found from an earlier attempt or run, not written now.
    recovered: bool,
}

/// The forward-path of recipient `idx` as the client gave it.
pub(crate) fn original(recipients: &[hato_core::queue::QueuedRecipient], idx: usize) -> &str {
    recipients.get(idx).map_or("", |r| r.original.as_str())
}

/// Logs one copy written into a Maildir (`event=deliver`), by this role
/// or by direct delivery; `how` names a `KEY=yes` flag (`recovered`,
/// `direct`).
pub(crate) fn log_maildir_delivery(
    id: &str,
    to: &str,
    mailbox: &str,
    file: &str,
    how: Option<&str>,
) {
    let line = log::Line::new("deliver")
        .kv("id", id)
        .kv("to", to)
        .kv("mailbox", mailbox)
        .kv("file", file);
    match how {
        Some(flag) => line.kv(flag, "yes"),
        None => line,
    }
    .emit();
}

fn is_local(r: &hato_core::queue::QueuedRecipient) -> bool {
    matches!(r.destination, Destination::Local(_))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::store::testdir::{envelope, wait_until, TestDir};

    fn setup(name: &str) -> (TestDir, Arc<Store>, Arc<Config>) {
        let t = TestDir::new(name);
        let store = Arc::new(Store::open(t.path()).unwrap());
        let cfg = Arc::new(Config::defaults("mail.example.org"));
        (t, store, cfg)
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
        }
    }

    fn queue(store: &Store, to: &[Destination]) -> String {
        let env = envelope(store, to);
        let mut w = store.spool(&env).unwrap();
        w.write(b"Subject: test\r\n\r\nhello\r\n").unwrap();
        w.commit().unwrap();
        env.id
    }

    fn local(a: &str) -> Destination {
        Destination::Local(a.into())
    }

    /// A restart after a crash: opens the data directory again, starts
    /// local delivery, waits until it has emptied the queue by itself.
    fn restart_until_empty(store: &Store, cfg: Arc<Config>) -> Arc<Store> {
        let store = Arc::new(Store::open(store.data_dir()).unwrap());
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        drop(handle);
        store
    }

    fn new_mail(store: &Store, domain: &str, user: &str) -> Vec<PathBuf> {
        let dir = store.mailbox_root().join(domain).join(user).join("new");
        fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn delivers_to_two_local_mailboxes_and_removes_the_queue_file() {
        let (_t, store, cfg) = setup("deliver-two");
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        let id = queue(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        handle.submit(id.clone());
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        handle.shutdown();
        for user in ["bob", "carol"] {
            let mail = new_mail(&store, "example.org", user);
            assert_eq!(mail.len(), 1, "{user}");
            let text = fs::read_to_string(&mail[0]).unwrap();
            assert!(text.starts_with("Return-Path: <alice@example.net>\n"));
            assert!(text.ends_with("\nSubject: test\n\nhello\n"), "{text}");
        }
        // The progress file goes after an fsync of queue/, in the background.
        let progress = store.queue_dir().join(format!("{id}.done"));
        wait_until("the progress file is removed", || !progress.exists());
    }

    #[test]
    fn keeps_a_message_with_a_remote_recipient_queued() {
        let (_t, store, cfg) = setup("deliver-remote");
        let id = queue(
            &store,
            &[
                local("bob@example.org"),
                Destination::Remote("dave@partner.example".into()),
            ],
        );
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        handle.submit(id.clone());
        wait_until("bob has mail", || {
            new_mail(&store, "example.org", "bob").len() == 1
        });
        wait_until("bob is recorded", || store.delivered(&id).unwrap() == [0]);
        handle.submit(id.clone());
        handle.shutdown();
        assert_eq!(store.queued().unwrap(), vec![id.clone()]);
        assert_eq!(store.delivered(&id).unwrap(), vec![0]);
        assert_eq!(new_mail(&store, "example.org", "bob").len(), 1);
    }

    #[test]
    fn after_a_crash_a_delivered_recipient_is_not_delivered_twice() {
        let (_t, store, cfg) = setup("deliver-crash");
        let id = queue(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        // The crash: bob was delivered and recorded, carol not yet.
        store.mark_delivered(&id, 0).unwrap();
        // No submit: the restarted agent finds the message by itself.
        let store = restart_until_empty(&store, cfg);
        assert!(new_mail(&store, "example.org", "bob").is_empty());
        assert_eq!(new_mail(&store, "example.org", "carol").len(), 1);
    }

    #[test]
    fn a_copy_that_reached_the_maildir_before_a_crash_is_not_made_again() {
        let (_t, store, cfg) = setup("deliver-found");
        let id = queue(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        // The crash: bob's copy was renamed into new/ (and new/ fsynced),
        // but no line says so and the message was not removed.
        let env = store.read_envelope(&id).unwrap();
        let name = maildir::file_name(&id, 0, env.received.0, &cfg.hostname);
        maildir::deliver(
            store.mailbox_root(),
            "bob@example.org",
            &name,
            "<>",
            &b"x"[..],
        )
        .unwrap();
        let store = restart_until_empty(&store, cfg);
        let bob = new_mail(&store, "example.org", "bob");
        assert_eq!(bob.len(), 1);
        assert_eq!(file_name(&bob[0]), name);
        assert_eq!(new_mail(&store, "example.org", "carol").len(), 1);
    }

    #[test]
    fn an_intent_of_an_older_version_still_counts_after_an_upgrade() {
        let (_t, store, cfg) = setup("deliver-upgrade");
        let id = queue(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        // An older version recorded bob's intent and renamed his copy (a
        // random name) into new/, then stopped before the done line.
        let old = "1700000000.M1P2Q3.mail.example.org";
        maildir::deliver(
            store.mailbox_root(),
            "bob@example.org",
            old,
            "<>",
            &b"x"[..],
        )
        .unwrap();
        let progress = store.queue_dir().join(format!("{id}.done"));
        fs::write(&progress, format!("intent 0 {old}\n")).unwrap();
        let store = restart_until_empty(&store, cfg);
        let bob = new_mail(&store, "example.org", "bob");
        assert_eq!(bob.len(), 1);
        assert_eq!(file_name(&bob[0]), old);
        assert_eq!(new_mail(&store, "example.org", "carol").len(), 1);
    }

    #[test]
    fn a_recipient_marked_before_the_first_attempt_is_skipped() {
        // Duplicate suppression marks a recipient done between the commit
        // and the hand-over; the first attempt must see it.
        let (_t, store, cfg) = setup("deliver-premarked");
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        let id = queue(
            &store,
            &[local("bob@example.org"), local("carol@example.org")],
        );
        assert!(store.has_no_progress(&id));
        store.mark_delivered(&id, 0).unwrap();
        handle.submit(id.clone());
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        handle.shutdown();
        assert!(new_mail(&store, "example.org", "bob").is_empty());
        assert_eq!(new_mail(&store, "example.org", "carol").len(), 1);
    }

    #[test]
    fn a_message_delivered_in_one_go_leaves_no_progress_file() {
        let (_t, store, cfg) = setup("deliver-no-progress");
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        let id = queue(&store, &[local("bob@example.org")]);
        handle.submit(id.clone());
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        handle.shutdown();
        assert!(!store.queue_dir().join(format!("{id}.done")).exists());
        assert!(!store.has_no_progress(&id), "forgotten once removed");
        let bob = new_mail(&store, "example.org", "bob");
        assert_eq!(bob.len(), 1);
        assert!(file_name(&bob[0]).contains(&format!(".{id}_0.")));
    }

    #[test]
    fn a_failed_delivery_is_retried_and_the_mail_kept_meanwhile() {
        let (_t, store, cfg) = setup("deliver-retry");
        // bob's Maildir cannot be created: a file is in the way.
        let domain = store.mailbox_root().join("example.org");
        fs::create_dir_all(&domain).unwrap();
        fs::write(domain.join("bob"), b"in the way").unwrap();
        let id = queue(
            &store,
            &[local("carol@example.org"), local("bob@example.org")],
        );
        let handle = LocalDelivery::spawn_with(Arc::clone(&store), cfg, fast()).unwrap();
        handle.submit(id.clone());
        wait_until("carol is recorded", || store.delivered(&id).unwrap() == [0]);
        thread::sleep(Duration::from_millis(120));
        assert_eq!(store.queued().unwrap(), vec![id.clone()]);
        fs::remove_file(domain.join("bob")).unwrap();
        wait_until("the queue is empty", || store.queued().unwrap().is_empty());
        handle.shutdown();
        assert_eq!(new_mail(&store, "example.org", "bob").len(), 1);
        assert_eq!(new_mail(&store, "example.org", "carol").len(), 1);
    }

    #[test]
    fn shutdown_stops_the_thread_and_later_calls_are_harmless() {
        let (_t, store, cfg) = setup("deliver-shutdown");
        let handle = LocalDelivery::spawn(Arc::clone(&store), cfg).unwrap();
        let clone = handle.clone();
        handle.shutdown();
        clone.submit("0AAAA".into());
        clone.shutdown();
        drop(handle);
        drop(clone);
    }

    #[test]
    fn handles_and_the_store_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<DeliveryHandle>();
        shared::<Store>();
        shared::<crate::store::UsersCache>();
        fn sent<T: Send>() {}
        sent::<crate::store::SpoolWriter>();
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(
            shard_of("1J0VVKUU6VM00R0N", 4),
            shard_of("1J0VVKUU6VM00R0N", 4)
        );
        assert_eq!(shard_of("anything", 1), 0);
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            counts[shard_of(&format!("1J{n:014}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn many_messages_across_shards_are_each_delivered_once() {
        let (_t, store, cfg) = setup("shards");
        let handle = LocalDelivery::spawn_sharded(Arc::clone(&store), cfg, fast(), AGENTS).unwrap();
        let ids: Vec<String> = (0..40)
            .map(|_| queue(&store, &[local("alice@example.test")]))
            .collect();
        for id in &ids {
            handle.submit(id.clone());
        }
        wait_until("all delivered", || {
            new_mail(&store, "example.test", "alice").len() == 40
                && store.queued().unwrap().is_empty()
        });
        handle.shutdown();
        assert_eq!(new_mail(&store, "example.test", "alice").len(), 40);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_maximum() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1), Duration::from_secs(60));
        assert_eq!(p.delay(2), Duration::from_secs(120));
        assert_eq!(p.delay(5), Duration::from_secs(900));
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(900));
    }
}
