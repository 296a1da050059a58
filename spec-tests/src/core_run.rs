//! Drives the sans-IO session the way a front end does, on a virtual clock,
//! and runs transcripts against it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hato_core::config::Config;
use hato_core::directory::Directory;
use hato_core::policy::ListenerKind;
use hato_core::smtp::server::{Event, Peer, Session, Verdict};
use hato_core::time::{Timer, UnixTime};

use crate::render::{count_replies, Conversation};
use crate::transcript::{Step, Transcript};

/// The queue id the core driver hands out; the wire ids are normalized to it.
pub const QUEUE_ID: &str = "<ID>";

/// The client's address as the core sees it (loopback, like the TCP client).
pub const CLIENT: &str = "127.0.0.1:40000";

/// A front end without sockets: feeds bytes, answers verdicts at once,
/// collects replies, bodies and events. Time is virtual.
#[derive(Debug)]
pub struct Driver {
    /// The session under test.
    pub session: Session,
    /// The virtual clock.
    pub now: Instant,
    /// Input offered but not yet consumed.
    pub pending: Vec<u8>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The bodies of the queued messages, in order, without the Received
    /// header the session puts first.
    pub bodies: Vec<Vec<u8>>,
    /// The Received headers of the queued messages, in order.
    pub received: Vec<Vec<u8>>,
    /// Misuse errors of the driver (must stay empty).
    pub errors: Vec<String>,
    out: Vec<u8>,
    header: Vec<u8>,
    body: Vec<u8>,
    chunk: Vec<u8>,
}

impl Driver {
    /// Starts a session from `remote` on `listener` and drains the greeting.
    pub fn new(
        cfg: Arc<Config>,
        dir: Arc<Directory>,
        listener: ListenerKind,
        remote: std::net::SocketAddr,
    ) -> Self {
        let now = Instant::now();
        let local = match listener {
            ListenerKind::Smtp => ([127, 0, 0, 1], 2525),
            ListenerKind::Submission => ([127, 0, 0, 1], 2587),
            ListenerKind::Submissions => ([127, 0, 0, 1], 2465),
        };
        let peer = Peer {
            remote,
            local: local.into(),
            listener,
        };
        // The binaries always have a certificate (generated when none is
        // configured), so they offer STARTTLS on these listeners.
        let mut session = Session::new(cfg, dir, peer, now);
        if listener != ListenerKind::Submissions {
            session.offer_starttls();
        }
        let mut d = Self {
            session,
            now,
            pending: Vec::new(),
            events: Vec::new(),
            bodies: Vec::new(),
            received: Vec::new(),
            errors: Vec::new(),
            out: Vec::new(),
            header: Vec::new(),
            body: Vec::new(),
            chunk: Vec::new(),
        };
        d.drain();
        d.sit_out_pauses();
        d
    }

    /// Returns and clears what the session transmitted so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Offers `input` after whatever is still pending, as one read: calls
    /// `handle_input` and drains until everything is consumed, the session
    /// closes, or it takes nothing more.
    pub fn feed(&mut self, input: &[u8]) {
        self.pending.extend_from_slice(input);
        loop {
            let used = self.session.handle_input(self.now, &self.pending);
            self.pending.drain(..used.min(self.pending.len()));
            let progressed = self.drain() | self.sit_out_pauses();
            if self.pending.is_empty() || self.session.is_closed() || (used == 0 && !progressed) {
                break;
            }
        }
    }

    /// Waits, in virtual time, for the pauses a client sits out for its
    /// reply: the greet pause and a reply held by the bad-recipient
    /// throttle (a client over TCP just waits for them too). Returns
    /// whether one fired. Command and data timeouts are only reached with
    /// an explicit `W:` step.
    pub fn sit_out_pauses(&mut self) -> bool {
        let mut fired = false;
        for _ in 0..100 {
            match self.session.poll_timeout() {
                Some((deadline, Timer::Greet | Timer::Throttle)) => {
                    self.now = self.now.max(deadline);
                    self.session.handle_timeout(self.now);
                    self.drain();
                    fired = true;
                }
                _ => break,
            }
        }
        fired
    }

    /// Advances the clock by `d`, firing every timer that falls due.
    pub fn wait(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..1000 {
            match self.session.poll_timeout() {
                Some((deadline, _)) if deadline <= target => {
                    self.now = self.now.max(deadline);
                    self.session.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        self.errors
            .push("poll_timeout keeps returning an expired deadline".into());
        self.now = target;
    }

    /// Tells the session the client closed its side, and drains.
    pub fn eof(&mut self) {
        self.session.handle_eof(self.now);
        self.drain();
    }

    /// Polls transmit, body and events until all are empty, answering
    /// `DataStart`, `DataEnd` and every question (allowed). Returns whether anything happened.
    pub fn drain(&mut self) -> bool {
        let mut progressed = false;
        loop {
            let mut any = self.session.poll_transmit(&mut self.out) > 0;
            self.session.take_body(&mut self.chunk);
            if !self.chunk.is_empty() {
                self.body.extend_from_slice(&self.chunk);
                self.chunk.clear();
                any = true;
            }
            while let Some(event) = self.session.poll_event() {
                any = true;
                let verdict = match &event {
                    Event::DataStart => Some(Verdict::DataAccepted {
                        queue_id: QUEUE_ID.into(),
                        date: UnixTime(0),
                    }),
                    Event::DataEnd { .. } => {
                        self.bodies.push(std::mem::take(&mut self.body));
                        self.received.push(std::mem::take(&mut self.header));
                        Some(Verdict::Queued)
                    }
                    Event::DataDiscarded => {
                        self.body.clear();
                        self.header.clear();
                        None
                    }
                    // Shared state starts empty for every transcript, so
                    // the front ends allow what the transcripts do.
                    Event::Ask(_) => Some(Verdict::Answer(Ok(()))),
                    _ => None,
                };
                let accepted = matches!(event, Event::DataStart);
                self.events.push(event);
                if let Some(v) = verdict {
                    if let Err(e) = self.session.handle_verdict(self.now, v) {
                        self.errors.push(format!("handle_verdict: {e}"));
                    } else if accepted {
                        // Before any data is read, the body holds exactly the
                        // Received header the session writes first.
                        self.header.clear();
                        self.session.take_body(&mut self.header);
                    }
                }
            }
            if !any {
                return progressed;
            }
            progressed = true;
        }
    }
}

/// What the core did with a transcript.
#[derive(Debug, Clone)]
pub struct CoreRun {
    /// The rendered conversation (the snapshot).
    pub conversation: String,
    /// Complete replies per stage: `[0]` the greeting, `[i + 1]` step `i`.
    pub replies: Vec<usize>,
    /// The stage after which the session was closed, if it closed itself.
    pub closed_after: Option<usize>,
    /// The queued messages' bodies, without their Received headers.
    pub bodies: Vec<Vec<u8>>,
    /// The queued messages' Received headers.
    pub received: Vec<Vec<u8>>,
    /// Every event.
    pub events: Vec<Event>,
    /// Driver misuse (must be empty).
    pub errors: Vec<String>,
}

/// Runs `t` against the core.
///
/// # Errors
/// The configuration or users file could not be loaded.
pub fn run_core(t: &Transcript) -> Result<CoreRun, String> {
    let cfg = crate::setup::core_config(t)?;
    let dir = crate::setup::core_directory()?;
    let remote = CLIENT
        .parse()
        .map_err(|e| format!("bad client address: {e}"))?;
    let mut d = Driver::new(cfg, dir, t.listener, remote);
    let mut conv = Conversation::default();
    let mut replies = Vec::with_capacity(t.steps.len() + 1);
    let mut closed_after = None;

    let out = d.take_output();
    replies.push(count_replies(&out));
    conv.server(&out);
    if d.session.is_closed() {
        conv.note("closed");
        closed_after = Some(0);
    }
    for (i, step) in t.steps.iter().enumerate() {
        match step {
            Step::Send { bytes, shown } => {
                conv.client(shown);
                if closed_after.is_none() {
                    d.feed(bytes);
                }
            }
            Step::Wait { duration, shown } => {
                conv.wait(shown);
                if closed_after.is_none() {
                    d.wait(*duration);
                }
            }
        }
        let out = d.take_output();
        replies.push(count_replies(&out));
        conv.server(&out);
        if closed_after.is_none() && d.session.is_closed() {
            conv.note("closed");
            closed_after = Some(i + 1);
        } else if closed_after.is_none() && !d.pending.is_empty() {
            conv.note(&format!("stuck: {} bytes not consumed", d.pending.len()));
        }
    }
    if closed_after.is_none() {
        conv.note("client hangs up");
        d.eof();
        conv.server(&d.take_output());
    }
    Ok(CoreRun {
        conversation: conv.into_string(),
        replies,
        closed_after,
        bodies: d.bodies,
        received: d.received,
        events: d.events,
        errors: d.errors,
    })
}
