//! Deterministic simulation of the delivery scheduler (DESIGN.md §6.5):
//! thousands of messages to hundreds of destinations with seeded faults
//! (hosts down for a while, dead hosts, flapping hosts, 4xx, 5xx), a
//! restart from the "spool" in the middle, and a week of virtual time run
//! in well under a second. Invariants checked on every step:
//!
//! - concurrency per destination and in total never exceeds the limits;
//! - a destination that failed is not tried again before its back-off;
//! - a recipient is never handed out after it was delivered or failed;
//! - at most one bounce per message, none for a null-sender message (its
//!   failures go to the postmaster), at most one delay warning, never
//!   before 4 hours and never to the null sender;
//! - every message ends (Done) within its lifetime plus one attempt, and
//!   at the end every recipient is delivered or bounced, never both.

use std::collections::{BTreeMap, BTreeSet};

use crate::dns::Rng;
use crate::time::UnixTime;

use super::retry::after;
use super::{AttemptResult, NewMessage, SchedEvent, Scheduler, Settings, Work};

const T0: u64 = 1_800_000_000;
const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// The longest attempt.
const MAX_ATTEMPT: u64 = 120;

/// How a destination behaves.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Up; a few 4xx and 5xx.
    Healthy,
    /// Down (connection refused) from `from` for `len` seconds.
    DownFor { from: u64, len: u64 },
    /// Down every other period of `period` seconds.
    Flapping { period: u64 },
    /// Never answers.
    Dead,
    /// Many 4xx (greylisting, full mailboxes).
    Grey,
}

impl Fault {
    fn down(self, t: u64) -> bool {
        match self {
            Self::Healthy | Self::Grey => false,
            Self::DownFor { from, len } => t >= from && t < from + len,
            Self::Flapping { period } => (t / period) % 2 == 1,
            Self::Dead => true,
        }
    }
}

#[derive(Debug)]
struct SimMsg {
    id: String,
    received: u64,
    null_sender: bool,
    rcpts: Vec<String>,
    delivered: BTreeSet<usize>,
    failed: BTreeMap<usize, String>,
    bounces: usize,
    warned: bool,
    done: Option<u64>,
}

struct Sim {
    rng: Rng,
    settings: Settings,
    sched: Scheduler,
    faults: Vec<Fault>,
    msgs: Vec<SimMsg>,
    by_id: BTreeMap<String, usize>,
    /// Attempts running: (end, serial) → work.
    inflight: BTreeMap<(u64, u64), Work>,
    serial: u64,
    active: BTreeMap<String, usize>,
    /// The model of destination back-off: consecutive failures, blocked until.
    host: BTreeMap<String, (u32, u64)>,
    attempts: u64,
}

impl Sim {
    fn new(seed: u64, messages: usize, dests: usize) -> Self {
        let mut rng = Rng::new(seed);
        let faults = (0..dests)
            .map(|_| match rng.below(20) {
                0..=10 => Fault::Healthy,
                11..=13 => Fault::DownFor {
                    from: T0 + rng.below(2 * DAY as usize) as u64,
                    len: 10 * MIN + rng.below(2 * DAY as usize) as u64,
                },
                14..=15 => Fault::Flapping {
                    period: 10 * MIN + rng.below(3 * HOUR as usize) as u64,
                },
                16 => Fault::Dead,
                _ => Fault::Grey,
            })
            .collect();
        let mut msgs: Vec<SimMsg> = (0..messages)
            .map(|i| {
                let n = 1 + rng.below(3);
                SimMsg {
                    id: format!("m{i}"),
                    received: T0 + rng.below(DAY as usize) as u64,
                    null_sender: rng.below(20) == 0,
                    rcpts: (0..n).map(|_| format!("d{}", rng.below(dests))).collect(),
                    delivered: BTreeSet::new(),
                    failed: BTreeMap::new(),
                    bounces: 0,
                    warned: false,
                    done: None,
                }
            })
            .collect();
        msgs.sort_by_key(|m| m.received);
        let by_id = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let settings = Settings::default();
        Self {
            rng,
            sched: Scheduler::new(settings.clone()),
            settings,
            faults,
            msgs,
            by_id,
            inflight: BTreeMap::new(),
            serial: 0,
            active: BTreeMap::new(),
            host: BTreeMap::new(),
            attempts: 0,
        }
    }

    fn new_message(&self, i: usize) -> NewMessage {
        let m = &self.msgs[i];
        NewMessage {
            id: m.id.clone(),
            received: UnixTime(m.received),
            null_sender: m.null_sender,
            recipients: m
                .rcpts
                .iter()
                .enumerate()
                .filter(|(r, _)| !m.delivered.contains(r) && !m.failed.contains_key(r))
                .map(|(r, d)| (r, d.clone()))
                .collect(),
            failed: m.failed.iter().map(|(&r, e)| (r, e.clone())).collect(),
            warned: m.warned,
        }
    }

    fn start_work(&mut self, now: u64) {
        while let Some(w) = self.sched.poll_work(UnixTime(now)) {
            let active = self.active.entry(w.destination.clone()).or_default();
            *active += 1;
            assert!(
                *active <= self.settings.per_destination,
                "per-destination limit"
            );
            let total: usize = self.active.values().sum();
            assert!(total <= self.settings.global, "global limit");
            let (_, blocked) = self.host.get(&w.destination).copied().unwrap_or((0, 0));
            assert!(
                now >= blocked,
                "{} retried before its back-off",
                w.destination
            );
            let m = &self.msgs[self.by_id[&w.id]];
            assert!(m.done.is_none());
            assert!(!w.recipients.is_empty());
            for r in &w.recipients {
                assert_eq!(m.rcpts[*r], w.destination, "grouped by destination");
                assert!(!m.delivered.contains(r) && !m.failed.contains_key(r));
            }
            let end = now + 1 + self.rng.below(MAX_ATTEMPT as usize) as u64;
            self.serial += 1;
            self.attempts += 1;
            self.inflight.insert((end, self.serial), w);
        }
    }

    fn finish_work(&mut self, end: u64, w: &Work) {
        let d: usize = w.destination[1..].parse().unwrap_or(0);
        let fault = self.faults[d];
        let results: Vec<(usize, AttemptResult)> = if fault.down(end) {
            w.recipients
                .iter()
                .map(|&r| (r, AttemptResult::HostFailed("connection refused".into())))
                .collect()
        } else {
            let (temp, perm) = match fault {
                Fault::Grey => (40, 2),
                _ => (3, 2),
            };
            w.recipients
                .iter()
                .map(|&r| {
                    let roll = self.rng.below(100);
                    let res = if roll < temp {
                        AttemptResult::Temporary("451 4.7.1 try again".into())
                    } else if roll < temp + perm {
                        AttemptResult::Permanent("550 5.1.1 no such user".into())
                    } else {
                        AttemptResult::Delivered
                    };
                    (r, res)
                })
                .collect()
        };
        if let Some(n) = self.active.get_mut(&w.destination) {
            *n -= 1;
        }
        let host = self.host.entry(w.destination.clone()).or_default();
        if fault.down(end) {
            host.0 += 1;
            host.1 = after(UnixTime(end), self.settings.backoff_after(host.0)).0;
        } else {
            *host = (0, 0);
        }
        let i = self.by_id[&w.id];
        for (r, res) in &results {
            if *res == AttemptResult::Delivered {
                assert!(self.msgs[i].delivered.insert(*r), "delivered twice");
            }
        }
        self.sched.report(UnixTime(end), w, &results);
    }

    fn events(&mut self, now: u64) {
        while let Some(e) = self.sched.poll_event() {
            let (id, failed, postmaster) = match &e {
                SchedEvent::Bounce { id, failed } => (id, Some(failed), false),
                SchedEvent::ToPostmaster { id, failed } => (id, Some(failed), true),
                SchedEvent::DelayWarning { id, recipients } => {
                    let m = &mut self.msgs[self.by_id[id]];
                    assert!(!m.warned && !m.null_sender, "one warning, not to <>");
                    assert!(now >= m.received + 4 * HOUR);
                    assert!(recipients.iter().all(|r| !m.delivered.contains(r)));
                    m.warned = true;
                    continue;
                }
                SchedEvent::Done { id } => {
                    let m = &mut self.msgs[self.by_id[id]];
                    assert!(m.done.is_none(), "Done once");
                    assert!(now <= m.received + 5 * DAY + MAX_ATTEMPT, "within lifetime");
                    assert_eq!(m.delivered.len() + m.failed.len(), m.rcpts.len());
                    m.done = Some(now);
                    continue;
                }
            };
            let m = &mut self.msgs[self.by_id[id]];
            assert_eq!(postmaster, m.null_sender, "never bounce a bounce");
            m.bounces += 1;
            assert_eq!(m.bounces, 1, "one bounce per message");
            for (r, reason) in failed.into_iter().flatten() {
                assert!(!m.delivered.contains(r), "delivered and bounced");
                if reason.starts_with("delivery time expired") {
                    assert!(now >= m.received + 5 * DAY, "expired early");
                }
                m.failed.insert(*r, reason.clone());
            }
        }
    }

    /// A crash: running attempts are lost, the scheduler is rebuilt from
    /// what the spool knows.
    fn restart(&mut self, now: u64) {
        self.inflight.clear();
        self.active.clear();
        self.host.clear();
        self.sched = Scheduler::new(self.settings.clone());
        let live: Vec<usize> = (0..self.msgs.len())
            .filter(|&i| self.msgs[i].received <= now && self.msgs[i].done.is_none())
            .collect();
        for i in live {
            // The spool knows the delivered recipients and the warning;
            // failures are only known from the bounce, which comes last.
            let m = self.new_message(i);
            self.sched.add_message(UnixTime(now), m).unwrap();
        }
    }

    fn run(&mut self, restart_at: u64) {
        let mut now = T0;
        let mut next_msg = 0;
        let mut restarted = false;
        let end = T0 + 8 * DAY;
        loop {
            while next_msg < self.msgs.len() && self.msgs[next_msg].received <= now {
                let m = self.new_message(next_msg);
                self.sched.add_message(UnixTime(now), m).unwrap();
                next_msg += 1;
            }
            if !restarted && now >= restart_at {
                restarted = true;
                self.restart(now);
            }
            self.start_work(now);
            self.events(now);
            if let Some(t) = self.sched.next_wakeup() {
                assert!(t.0 > now, "poll_work left due work behind");
            }
            let candidates = [
                self.msgs.get(next_msg).map(|m| m.received),
                self.inflight.keys().next().map(|&(t, _)| t),
                self.sched.next_wakeup().map(|t| t.0),
                (!restarted).then_some(restart_at),
            ];
            let Some(next) = candidates.into_iter().flatten().min() else {
                break;
            };
            assert!(next <= end, "the queue drains within its lifetime");
            now = next;
            while let Some((&(t, s), _)) = self.inflight.iter().next() {
                if t > now {
                    break;
                }
                if let Some(w) = self.inflight.remove(&(t, s)) {
                    self.finish_work(t, &w);
                    self.events(t);
                }
            }
        }
        assert!(self.sched.is_empty());
        for m in &self.msgs {
            assert!(m.done.is_some(), "{} never finished", m.id);
            for r in 0..m.rcpts.len() {
                assert!(
                    m.delivered.contains(&r) != m.failed.contains_key(&r),
                    "{} rcpt {r}: delivered xor bounced",
                    m.id
                );
            }
            if m.failed.is_empty() {
                assert_eq!(m.bounces, 0);
            }
        }
    }
}

#[test]
fn thousands_of_messages_over_a_week_keep_every_invariant() {
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(seed, 3000, 300);
        sim.run(T0 + 2 * DAY + 7);
        let delivered: usize = sim.msgs.iter().map(|m| m.delivered.len()).sum();
        let failed: usize = sim.msgs.iter().map(|m| m.failed.len()).sum();
        let expired = sim
            .msgs
            .iter()
            .flat_map(|m| m.failed.values())
            .filter(|r| r.starts_with("delivery time expired"))
            .count();
        let warned = sim.msgs.iter().filter(|m| m.warned).count();
        // The faults must actually have been exercised.
        assert!(delivered > 4000, "seed {seed}: {delivered} delivered");
        assert!(
            failed > 100 && expired > 50,
            "seed {seed}: {failed} failed, {expired} expired"
        );
        assert!(warned > 50, "seed {seed}: {warned} warned");
        assert!(
            sim.attempts > 10_000,
            "seed {seed}: {} attempts",
            sim.attempts
        );
    }
}

#[test]
fn the_simulation_replays_exactly_from_its_seed() {
    let summary = |seed| {
        let mut sim = Sim::new(seed, 300, 30);
        sim.run(T0 + DAY);
        (
            sim.attempts,
            sim.msgs
                .iter()
                .map(|m| (m.delivered.len(), m.failed.len(), m.done))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(summary(9), summary(9));
    assert_ne!(summary(9), summary(10));
}
