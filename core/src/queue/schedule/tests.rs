//! Scheduler unit tests: back-off, grouping, expiry, warnings, bounces,
//! per-destination back-off and concurrency, restarts.

use std::time::Duration;

use super::*;

const T0: UnixTime = UnixTime(1_800_000_000);
const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn at(secs: u64) -> UnixTime {
    UnixTime(T0.0 + secs)
}

fn msg(id: &str, rcpts: &[(usize, &str)]) -> NewMessage {
    NewMessage {
        id: id.into(),
        received: T0,
        null_sender: false,
        recipients: rcpts.iter().map(|&(i, d)| (i, d.to_owned())).collect(),
        failed: Vec::new(),
        warned: false,
    }
}

fn sched() -> Scheduler {
    Scheduler::new(Settings::default())
}

fn temp(work: &Work) -> Vec<(usize, AttemptResult)> {
    work.recipients
        .iter()
        .map(|&i| (i, AttemptResult::Temporary("451 later".into())))
        .collect()
}

fn events(s: &mut Scheduler) -> Vec<SchedEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn retries_follow_the_backoff_table() {
    let mut s = Scheduler::new(Settings {
        delay_warning: None,
        ..Settings::default()
    });
    s.add_message(T0, msg("m1", &[(0, "a.example")])).unwrap();
    let mut now = T0;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let w = s.poll_work(now).expect("due");
        assert_eq!(s.poll_work(now), None, "one attempt at a time");
        s.report(now, &w, &temp(&w));
        let next = s.next_wakeup().unwrap();
        assert_eq!(s.poll_work(UnixTime(next.0 - 1)), None, "not early");
        waits.push((next.0 - now.0) / MIN);
        now = next;
    }
    assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60]);
    assert!(events(&mut s).is_empty());
}

#[test]
fn due_recipients_of_a_message_are_grouped_per_destination() {
    let mut s = sched();
    s.add_message(
        T0,
        msg(
            "m1",
            &[(0, "a.example"), (1, "b.example"), (2, "a.example")],
        ),
    )
    .unwrap();
    let w1 = s.poll_work(T0).unwrap();
    let w2 = s.poll_work(T0).unwrap();
    assert_eq!(s.poll_work(T0), None);
    let mut works = [w1, w2];
    works.sort_by(|a, b| a.destination.cmp(&b.destination));
    assert_eq!(works[0].destination, "a.example");
    assert_eq!(works[0].recipients, [0, 2]);
    assert_eq!(works[1].recipients, [1]);
    // Recipient 0 delivered, 2 deferred: the retry carries only 2.
    s.report(
        T0,
        &works[0],
        &[
            (0, AttemptResult::Delivered),
            (2, AttemptResult::Temporary("452 full".into())),
        ],
    );
    s.report(T0, &works[1], &[(1, AttemptResult::Delivered)]);
    let w = s.poll_work(at(5 * MIN)).unwrap();
    assert_eq!(w.recipients, [2]);
    s.report(at(5 * MIN), &w, &[(2, AttemptResult::Delivered)]);
    assert_eq!(events(&mut s), [SchedEvent::Done { id: "m1".into() }]);
    assert!(s.is_empty());
}

#[test]
fn a_recipient_is_bounced_when_its_lifetime_ends() {
    let mut s = sched();
    s.add_message(T0, msg("m1", &[(0, "a.example"), (1, "b.example")]))
        .unwrap();
    let mut now = T0;
    let mut delivered_b = false;
    while let Some(t) = s.next_wakeup() {
        now = now.max(t);
        while let Some(w) = s.poll_work(now) {
            if w.destination == "b.example" && !delivered_b {
                delivered_b = true;
                s.report(now, &w, &[(1, AttemptResult::Delivered)]);
            } else {
                s.report(now, &w, &temp(&w));
            }
        }
        assert!(now <= at(5 * DAY + HOUR), "ends at the lifetime");
    }
    let ev = events(&mut s);
    let bounces: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, SchedEvent::Bounce { .. }))
        .collect();
    assert_eq!(bounces.len(), 1);
    let SchedEvent::Bounce { id, failed } = bounces[0] else {
        unreachable!()
    };
    assert_eq!(id, "m1");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 0);
    assert_eq!(failed[0].1, "delivery time expired; last error: 451 later");
    assert_eq!(ev.last(), Some(&SchedEvent::Done { id: "m1".into() }));
    assert_eq!(now, at(5 * DAY), "bounced at the expiry, not at a retry");
}

#[test]
fn delay_warning_comes_once_after_four_hours() {
    let mut s = sched();
    s.add_message(T0, msg("m1", &[(0, "a.example"), (1, "a.example")]))
        .unwrap();
    let mut now = T0;
    let mut warnings = Vec::new();
    while now < at(10 * HOUR) {
        while let Some(w) = s.poll_work(now) {
            s.report(now, &w, &temp(&w));
        }
        for e in events(&mut s) {
            warnings.push((now, e));
        }
        now = s.next_wakeup().unwrap();
    }
    assert_eq!(
        warnings,
        [(
            at(4 * HOUR),
            SchedEvent::DelayWarning {
                id: "m1".into(),
                recipients: vec![0, 1]
            }
        )]
    );
}

#[test]
fn no_warning_for_null_sender_or_delivered_mail_or_when_disabled() {
    let mut s = sched();
    let mut bounce = msg("b1", &[(0, "a.example")]);
    bounce.null_sender = true;
    s.add_message(T0, bounce).unwrap();
    s.add_message(T0, msg("m2", &[(0, "c.example")])).unwrap();
    let w1 = s.poll_work(T0).unwrap();
    let w2 = s.poll_work(T0).unwrap();
    for w in [w1, w2] {
        if w.id == "b1" {
            s.report(T0, &w, &temp(&w));
        } else {
            s.report(T0, &w, &[(0, AttemptResult::Delivered)]);
        }
    }
    let _ = s.poll_work(at(5 * HOUR));
    assert_eq!(events(&mut s), [SchedEvent::Done { id: "m2".into() }]);

    let mut s = Scheduler::new(Settings {
        delay_warning: None,
        ..Settings::default()
    });
    s.add_message(T0, msg("m3", &[(0, "a.example")])).unwrap();
    let w = s.poll_work(T0).unwrap();
    s.report(T0, &w, &temp(&w));
    let _ = s.poll_work(at(5 * HOUR));
    assert!(events(&mut s).is_empty());
}

#[test]
fn null_sender_failures_go_to_the_postmaster() {
    let mut s = sched();
    let mut m = msg("b1", &[(0, "a.example")]);
    m.null_sender = true;
    s.add_message(T0, m).unwrap();
    let w = s.poll_work(T0).unwrap();
    s.report(T0, &w, &[(0, AttemptResult::Permanent("550 no".into()))]);
    assert_eq!(
        events(&mut s),
        [
            SchedEvent::ToPostmaster {
                id: "b1".into(),
                failed: vec![(0, "550 no".into())]
            },
            SchedEvent::Done { id: "b1".into() }
        ]
    );
}

#[test]
fn one_bounce_lists_every_failed_recipient_at_the_end() {
    let mut s = sched();
    s.add_message(
        T0,
        msg(
            "m1",
            &[(0, "a.example"), (1, "b.example"), (2, "c.example")],
        ),
    )
    .unwrap();
    let works: Vec<Work> = std::iter::from_fn(|| s.poll_work(T0)).collect();
    for w in &works {
        let r = match w.destination.as_str() {
            "a.example" => AttemptResult::Permanent("550 unknown".into()),
            "b.example" => AttemptResult::Delivered,
            _ => AttemptResult::Temporary("451 later".into()),
        };
        s.report(T0, w, &[(w.recipients[0], r)]);
    }
    assert!(events(&mut s).is_empty(), "no bounce while c is open");
    let w = s.poll_work(at(5 * MIN)).unwrap();
    s.report(
        at(5 * MIN),
        &w,
        &[(2, AttemptResult::Permanent("554 spam".into()))],
    );
    assert_eq!(
        events(&mut s),
        [
            SchedEvent::Bounce {
                id: "m1".into(),
                failed: vec![(0, "550 unknown".into()), (2, "554 spam".into())]
            },
            SchedEvent::Done { id: "m1".into() }
        ]
    );
}

#[test]
fn a_failed_host_waits_its_backoff_for_every_message() {
    let mut s = sched();
    s.add_message(T0, msg("m1", &[(0, "down.example")]))
        .unwrap();
    let w = s.poll_work(T0).unwrap();
    s.add_message(T0, msg("m2", &[(0, "down.example")]))
        .unwrap();
    s.add_message(T0, msg("m3", &[(0, "up.example")])).unwrap();
    s.report(
        T0,
        &w,
        &[(0, AttemptResult::HostFailed("connection refused".into()))],
    );
    let w = s.poll_work(T0).unwrap();
    assert_eq!(w.id, "m3", "m2 waits for down.example's back-off");
    assert_eq!(s.poll_work(at(5 * MIN - 1)), None);
    assert_eq!(s.next_wakeup(), Some(at(5 * MIN)));
    let w = s.poll_work(at(5 * MIN)).unwrap();
    assert_eq!(w.destination, "down.example");
    s.report(
        at(5 * MIN),
        &w,
        &[(0, AttemptResult::HostFailed("timeout".into()))],
    );
    // Second consecutive failure: 10 minutes.
    assert_eq!(s.poll_work(at(15 * MIN - 1)), None);
    let w = s.poll_work(at(15 * MIN)).unwrap();
    s.report(
        at(15 * MIN),
        &w,
        &[(w.recipients[0], AttemptResult::Delivered)],
    );
    // Success resets the destination: the other message goes at once.
    assert!(s.poll_work(at(15 * MIN)).is_some());
}

#[test]
fn concurrency_is_bounded_per_destination_and_globally() {
    let mut s = Scheduler::new(Settings {
        per_destination: 2,
        global: 3,
        ..Settings::default()
    });
    for i in 0..4 {
        s.add_message(T0, msg(&format!("a{i}"), &[(0, "a.example")]))
            .unwrap();
        s.add_message(T0, msg(&format!("b{i}"), &[(0, "b.example")]))
            .unwrap();
    }
    let works: Vec<Work> = std::iter::from_fn(|| s.poll_work(T0)).collect();
    assert_eq!(works.len(), 3);
    assert_eq!(s.active(), 3);
    assert_eq!(
        s.next_wakeup(),
        Some(at(4 * HOUR)),
        "only warnings and expiries while full"
    );
    for dest in ["a.example", "b.example"] {
        assert!(works.iter().filter(|w| w.destination == dest).count() <= 2);
    }
    s.report(T0, &works[0], &[(0, AttemptResult::Delivered)]);
    assert!(s.poll_work(T0).is_some());
    assert_eq!(s.poll_work(T0), None);
}

#[test]
fn a_rebuilt_message_keeps_earlier_failures_and_warnings() {
    let mut s = sched();
    let mut m = msg("m1", &[(2, "a.example")]);
    m.failed = vec![(0, "550 gone".into())];
    m.warned = true;
    m.received = UnixTime(T0.0 - 4 * DAY);
    s.add_message(T0, m).unwrap();
    assert_eq!(s.add_message(T0, msg("m1", &[])), Err(AlreadyQueued));
    let w = s.poll_work(T0).unwrap();
    assert_eq!(w.recipients, [2], "due at once after a restart");
    s.report(T0, &w, &temp(&w));
    let mut now = T0;
    while let Some(t) = s.next_wakeup() {
        now = t;
        while let Some(w) = s.poll_work(now) {
            s.report(now, &w, &temp(&w));
        }
    }
    assert_eq!(now, at(DAY), "the lifetime counts from reception");
    let ev = events(&mut s);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, SchedEvent::DelayWarning { .. })));
    let SchedEvent::Bounce { failed, .. } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0], (0, "550 gone".into()));
}

#[test]
fn a_message_with_nothing_left_finishes_at_once() {
    let mut s = sched();
    let mut m = msg("m1", &[]);
    m.failed = vec![(1, "550 x".into())];
    s.add_message(T0, m).unwrap();
    assert_eq!(events(&mut s).len(), 2);
    assert!(s.is_empty());
}

#[test]
fn removed_messages_are_forgotten_and_their_attempts_ignored() {
    let mut s = sched();
    s.add_message(T0, msg("m1", &[(0, "a.example")])).unwrap();
    s.add_message(T0, msg("m2", &[(0, "a.example")])).unwrap();
    let w = s.poll_work(T0).unwrap();
    assert!(s.remove_message(&w.id));
    assert!(!s.remove_message(&w.id));
    s.report(T0, &w, &[(0, AttemptResult::Delivered)]);
    assert_eq!(s.active(), 0);
    let other = s.poll_work(T0).unwrap();
    assert_ne!(other.id, w.id);
    assert!(events(&mut s).is_empty());
}

#[test]
fn flush_makes_everything_due_now() {
    let mut s = sched();
    s.add_message(T0, msg("m1", &[(0, "a.example")])).unwrap();
    let w = s.poll_work(T0).unwrap();
    s.report(T0, &w, &[(0, AttemptResult::HostFailed("refused".into()))]);
    assert_eq!(s.poll_work(at(MIN)), None);
    s.flush(at(MIN));
    assert_eq!(s.next_wakeup(), Some(at(MIN)));
    assert!(s.poll_work(at(MIN)).is_some());
    let _ = Duration::ZERO;
}
