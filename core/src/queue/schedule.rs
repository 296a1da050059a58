//! The delivery scheduler: which recipients are due, grouped into attempts
//! per destination, retry back-off, expiry, delay warnings and when to
//! bounce (RFC 5321 §4.5.4.1 retry strategy, §6.1 reliable delivery,
//! §6.2 "never send a bounce to a bounce").
//!
//! Pure and in virtual time: the time is a wall-clock [`UnixTime`] handed
//! in, since due times are persisted. The front end:
//!
//! 1. adds each queued message with [`Scheduler::add_message`];
//! 2. takes [`Work`] with [`Scheduler::poll_work`] until it returns `None`,
//!    runs each attempt (one connection, one transaction) and hands the
//!    per-recipient results back with [`Scheduler::report`];
//! 3. drains [`Scheduler::poll_event`] (bounces, warnings, finished
//!    messages) and records them in the spool;
//! 4. sleeps until [`Scheduler::next_wakeup`] or until an attempt ends.
//!
//! Expiry and delay warnings fire inside `poll_work`, so call it at the
//! wakeup time even when no attempt can start.
//!
//! # Restarts
//! Nothing here is persisted. At start the front end rebuilds the
//! scheduler from the spool: each message with its reception time, and
//! only the recipients not yet delivered (those are never tried again).
//! Attempt counts start from zero, so every open recipient is tried at
//! once; the lifetime still counts from `received`. Recipients that failed
//! permanently before the restart are passed in `failed` so the one bounce
//! of the message names them; `warned` says whether the delay warning was
//! already sent.
//!
//! # Bounces
//! A message's failed recipients are reported together, in one
//! [`SchedEvent::Bounce`], once every recipient is delivered or failed;
//! then [`SchedEvent::Done`]. A message from the null sender `<>` never
//! bounces: its failures go to the postmaster ([`SchedEvent::ToPostmaster`]),
//! and it gets no delay warning.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::time::UnixTime;

use super::retry::{after, Settings};

/// A message handed to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The queue id.
    pub id: String,
    /// When it was received (the lifetime counts from here).
    pub received: UnixTime,
    /// The envelope sender is `<>` (a bounce): never bounce it.
    pub null_sender: bool,
    /// Recipients still to deliver: (index in the envelope, destination).
    /// The destination is the key that attempts are grouped and limited by
    /// (the domain, or the route's host).
    pub recipients: Vec<(usize, String)>,
    /// Recipients that failed permanently before a restart, with reasons.
    pub failed: Vec<(usize, String)>,
    /// The delay warning was sent before a restart.
    pub warned: bool,
}

/// One delivery attempt: one connection to `destination` carrying
/// `recipients` of message `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// The queue id.
    pub id: String,
    /// The destination.
    pub destination: String,
    /// Envelope indexes of the recipients, ascending.
    pub recipients: Vec<usize>,
}

/// What became of one recipient in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Delivered.
    Delivered,
    /// A temporary failure for this recipient (4yz); retried after its back-off.
    Temporary(String),
    /// A permanent failure (5yz): bounced.
    Permanent(String),
    /// The destination could not be reached (connection refused, timeout,
    /// 421 greeting): retried after its back-off, and the destination is
    /// not tried again before its own back-off, for any message.
    HostFailed(String),
}

/// Something the front end must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedEvent {
    /// Send one bounce (RFC 3464 DSN) to the sender for these recipients.
    Bounce {
        /// The queue id.
        id: String,
        /// Envelope index and reason of each failed recipient.
        failed: Vec<(usize, String)>,
    },
    /// A message from the null sender failed: tell the postmaster.
    ToPostmaster {
        /// The queue id.
        id: String,
        /// Envelope index and reason of each failed recipient.
        failed: Vec<(usize, String)>,
    },
    /// Tell the sender these recipients are delayed (once per message).
    DelayWarning {
        /// The queue id.
        id: String,
        /// Envelope indexes still undelivered.
        recipients: Vec<usize>,
    },
    /// Every recipient is delivered or failed: the queue file can go.
    Done {
        /// The queue id.
        id: String,
    },
}

/// `add_message` was given a queue id the scheduler already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyQueued;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RState {
    Pending(UnixTime),
    InFlight,
    Delivered,
    Failed,
}

#[derive(Debug)]
struct Rcpt {
    index: usize,
    dest: usize,
    state: RState,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Msg {
    id: String,
    null_sender: bool,
    warned: bool,
    expires: UnixTime,
    rcpts: Vec<Rcpt>,
    failed: Vec<(usize, String)>,
}

#[derive(Debug)]
struct Dest {
    name: String,
    /// Due recipients: (due, message, position in its `rcpts`).
    pending: BTreeSet<(UnixTime, u64, usize)>,
    active: usize,
    /// Consecutive attempts that ended in `HostFailed`.
    failures: u32,
    /// Not tried before this time.
    retry_at: UnixTime,
    /// The destination's entry in `ready`.
    key: Option<UnixTime>,
}

/// A deadline of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    Warn,
    Expire,
}

/// The delivery scheduler.
#[derive(Debug)]
pub struct Scheduler {
    settings: Settings,
    msgs: BTreeMap<u64, Msg>,
    ids: BTreeMap<String, u64>,
    dests: Vec<Dest>,
    dest_ids: BTreeMap<String, usize>,
    /// Destinations that could take an attempt, by the time they can.
    ready: BTreeSet<(UnixTime, usize)>,
    deadlines: BTreeSet<(UnixTime, u64, Deadline)>,
    active: usize,
    next_seq: u64,
    events: VecDeque<SchedEvent>,
}

impl Scheduler {
    /// Returns an empty scheduler.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            msgs: BTreeMap::new(),
            ids: BTreeMap::new(),
            dests: Vec::new(),
            dest_ids: BTreeMap::new(),
            ready: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            active: 0,
            next_seq: 0,
            events: VecDeque::new(),
        }
    }

    /// Returns the settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Adds a message; its recipients are due at once.
    ///
    /// # Errors
    /// [`AlreadyQueued`] when the id is known; nothing changes.
    pub fn add_message(&mut self, now: UnixTime, m: NewMessage) -> Result<(), AlreadyQueued> {
        if self.ids.contains_key(&m.id) {
            return Err(AlreadyQueued);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = after(m.received, self.settings.max_lifetime);
        let mut rcpts = Vec::with_capacity(m.recipients.len());
        for (pos, (index, dest)) in m.recipients.into_iter().enumerate() {
            let d = self.dest_id(dest);
            self.dests[d].pending.insert((now, seq, pos));
            self.refresh(d);
            rcpts.push(Rcpt {
                index,
                dest: d,
                state: RState::Pending(now),
                attempts: 0,
                last_error: None,
            });
        }
        self.deadlines.insert((expires, seq, Deadline::Expire));
        if let Some(w) = self.settings.delay_warning {
            if !m.null_sender && !m.warned {
                self.deadlines
                    .insert((after(m.received, w), seq, Deadline::Warn));
            }
        }
        self.ids.insert(m.id.clone(), seq);
        self.msgs.insert(
            seq,
            Msg {
                id: m.id,
                null_sender: m.null_sender,
                warned: m.warned,
                expires,
                rcpts,
                failed: m.failed,
            },
        );
        self.check_complete(seq);
        Ok(())
    }

    /// Forgets a message (`hato queue delete`); returns whether it was known.
    /// An attempt running for it is still reported, and then ignored.
    pub fn remove_message(&mut self, id: &str) -> bool {
        let Some(seq) = self.ids.remove(id) else {
            return false;
        };
        let Some(msg) = self.msgs.remove(&seq) else {
            return false;
        };
        for (pos, r) in msg.rcpts.iter().enumerate() {
            if let RState::Pending(due) = r.state {
                self.dests[r.dest].pending.remove(&(due, seq, pos));
                self.refresh(r.dest);
            }
        }
        true
    }

    /// Makes every waiting recipient due now and forgets destinations'
    /// back-off (`hato queue flush`).
    pub fn flush(&mut self, now: UnixTime) {
        for d in 0..self.dests.len() {
            let old = std::mem::take(&mut self.dests[d].pending);
            self.dests[d].pending = old.into_iter().map(|(_, s, p)| (now, s, p)).collect();
            self.dests[d].retry_at = UnixTime(0);
            self.dests[d].failures = 0;
            self.refresh(d);
        }
        for msg in self.msgs.values_mut() {
            for r in &mut msg.rcpts {
                if let RState::Pending(_) = r.state {
                    r.state = RState::Pending(now);
                }
            }
        }
    }

    /// Returns the next attempt to start, if one may start now. Fires
    /// expiry and delay warnings first.
    #[must_use]
    pub fn poll_work(&mut self, now: UnixTime) -> Option<Work> {
        self.tick(now);
        if self.active >= self.settings.global {
            return None;
        }
        let &(at, d) = self.ready.first()?;
        if at > now {
            return None;
        }
        let &(_, seq, _) = self.dests[d].pending.first()?;
        let msg = self.msgs.get_mut(&seq)?;
        let mut recipients = Vec::new();
        for (pos, r) in msg.rcpts.iter_mut().enumerate() {
            match r.state {
                RState::Pending(due) if r.dest == d && due <= now => {
                    self.dests[d].pending.remove(&(due, seq, pos));
                    r.state = RState::InFlight;
                    recipients.push(r.index);
                }
                _ => {}
            }
        }
        recipients.sort_unstable();
        let work = Work {
            id: msg.id.clone(),
            destination: self.dests[d].name.clone(),
            recipients,
        };
        self.dests[d].active += 1;
        self.active += 1;
        self.refresh(d);
        Some(work)
    }

    /// Takes the results of an attempt: `(envelope index, result)` per
    /// recipient of `work`; a recipient missing from `results` counts as
    /// a temporary failure.
    pub fn report(&mut self, now: UnixTime, work: &Work, results: &[(usize, AttemptResult)]) {
        let Some(&d) = self.dest_ids.get(&work.destination) else {
            return;
        };
        self.active = self.active.saturating_sub(1);
        let dest = &mut self.dests[d];
        dest.active = dest.active.saturating_sub(1);
        let host_failed = results
            .iter()
            .any(|(_, r)| matches!(r, AttemptResult::HostFailed(_)));
        if host_failed {
            dest.failures = dest.failures.saturating_add(1);
            dest.retry_at = after(now, self.settings.backoff_after(dest.failures));
        } else if !results.is_empty() {
            dest.failures = 0;
            dest.retry_at = UnixTime(0);
        }
        if let Some(&seq) = self.ids.get(&work.id) {
            self.apply(now, seq, d, work, results);
            self.check_complete(seq);
        }
        self.refresh(d);
    }

    fn apply(
        &mut self,
        now: UnixTime,
        seq: u64,
        d: usize,
        work: &Work,
        results: &[(usize, AttemptResult)],
    ) {
        let Some(msg) = self.msgs.get_mut(&seq) else {
            return;
        };
        for (pos, r) in msg.rcpts.iter_mut().enumerate() {
            if r.state != RState::InFlight || r.dest != d || !work.recipients.contains(&r.index) {
                continue;
            }
            let result = results
                .iter()
                .find(|(i, _)| *i == r.index)
                .map_or(AttemptResult::Temporary("no result".into()), |(_, x)| {
                    x.clone()
                });
            match result {
                AttemptResult::Delivered => r.state = RState::Delivered,
                AttemptResult::Permanent(reason) => {
                    r.state = RState::Failed;
                    msg.failed.push((r.index, reason));
                }
                AttemptResult::Temporary(reason) | AttemptResult::HostFailed(reason) => {
                    r.attempts = r.attempts.saturating_add(1);
                    if now >= msg.expires {
                        r.state = RState::Failed;
                        msg.failed.push((r.index, expired(Some(&reason))));
                    } else {
                        let due = after(now, self.settings.backoff_after(r.attempts));
                        r.state = RState::Pending(due);
                        self.dests[d].pending.insert((due, seq, pos));
                    }
                    r.last_error = Some(reason);
                }
            }
        }
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SchedEvent> {
        self.events.pop_front()
    }

    /// Returns when `poll_work` next has something to do (an attempt, an
    /// expiry or a warning), not counting attempts that end before.
    #[must_use]
    pub fn next_wakeup(&self) -> Option<UnixTime> {
        let deadline = self.deadlines.first().map(|&(t, _, _)| t);
        let work = if self.active < self.settings.global {
            self.ready.first().map(|&(t, _)| t)
        } else {
            None
        };
        match (deadline, work) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns how many messages the scheduler holds.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Tells whether the scheduler holds no message.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Returns how many attempts run.
    pub fn active(&self) -> usize {
        self.active
    }

    fn dest_id(&mut self, name: String) -> usize {
        if let Some(&d) = self.dest_ids.get(&name) {
            return d;
        }
        let d = self.dests.len();
        self.dest_ids.insert(name.clone(), d);
        self.dests.push(Dest {
            name,
            pending: BTreeSet::new(),
            active: 0,
            failures: 0,
            retry_at: UnixTime(0),
            key: None,
        });
        d
    }

    /// Recomputes when destination `d` can take an attempt.
    fn refresh(&mut self, d: usize) {
        let dest = &mut self.dests[d];
        let key = match dest.pending.first() {
            Some(&(due, _, _)) if dest.active < self.settings.per_destination => {
                Some(due.max(dest.retry_at))
            }
            _ => None,
        };
        if key == dest.key {
            return;
        }
        if let Some(old) = dest.key {
            self.ready.remove(&(old, d));
        }
        if let Some(new) = key {
            self.ready.insert((new, d));
        }
        dest.key = key;
    }

    /// Fires the message deadlines due at `now`.
    fn tick(&mut self, now: UnixTime) {
        while let Some(&(t, seq, kind)) = self.deadlines.first() {
            if t > now {
                return;
            }
            self.deadlines.remove(&(t, seq, kind));
            let Some(msg) = self.msgs.get_mut(&seq) else {
                continue;
            };
            match kind {
                Deadline::Warn => {
                    let open: Vec<usize> = msg
                        .rcpts
                        .iter()
                        .filter(|r| matches!(r.state, RState::Pending(_) | RState::InFlight))
                        .map(|r| r.index)
                        .collect();
                    if !msg.warned && !msg.null_sender && !open.is_empty() {
                        msg.warned = true;
                        self.events.push_back(SchedEvent::DelayWarning {
                            id: msg.id.clone(),
                            recipients: open,
                        });
                    }
                }
                Deadline::Expire => {
                    let mut touched = Vec::new();
                    for (pos, r) in msg.rcpts.iter_mut().enumerate() {
                        if let RState::Pending(due) = r.state {
                            self.dests[r.dest].pending.remove(&(due, seq, pos));
                            touched.push(r.dest);
                            r.state = RState::Failed;
                            msg.failed.push((r.index, expired(r.last_error.as_deref())));
                        }
                    }
                    for d in touched {
                        self.refresh(d);
                    }
                    self.check_complete(seq);
                }
            }
        }
    }

    /// Ends message `seq` when every recipient is delivered or failed.
    fn check_complete(&mut self, seq: u64) {
        let finished = self.msgs.get(&seq).is_some_and(|m| {
            m.rcpts
                .iter()
                .all(|r| matches!(r.state, RState::Delivered | RState::Failed))
        });
        if !finished {
            return;
        }
        let Some(mut msg) = self.msgs.remove(&seq) else {
            return;
        };
        self.ids.remove(&msg.id);
        if !msg.failed.is_empty() {
            msg.failed.sort();
            let failed = std::mem::take(&mut msg.failed);
            let id = msg.id.clone();
            self.events.push_back(if msg.null_sender {
                SchedEvent::ToPostmaster { id, failed }
            } else {
                SchedEvent::Bounce { id, failed }
            });
        }
        self.events.push_back(SchedEvent::Done { id: msg.id });
    }
}

/// The bounce reason of a recipient whose lifetime ran out.
fn expired(last_error: Option<&str>) -> String {
    match last_error {
        Some(e) => format!("delivery time expired; last error: {e}"),
        None => "delivery time expired".into(),
    }
}

#[cfg(test)]
mod tests;
