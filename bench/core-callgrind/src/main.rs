//! One SMTP transaction through the sans-IO core, for callgrind.
//!
//! `bench/run core` runs this binary under `valgrind --tool=callgrind`
//! with `--toggle-collect` on [`transaction`], so the reported instruction
//! count covers exactly one session: greeting, EHLO, MAIL, RCPT, DATA, a
//! 10 KB message fed in 16 KiB reads (the front ends' read buffer), QUIT.
//! The clock is fixed and verdicts are answered as a front end would, so
//! the count is the same on every run: a change in it is a change in the
//! core's work, not noise.
//!
//! Usage: `hato-core-callgrind [SIZE_BYTES [TRANSACTIONS]]` (defaults
//! 10240 and 1). Each transaction is a fresh session; the toggle counts
//! all of them.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use hato_core::config::Config;
use hato_core::directory::Directory;
use hato_core::policy::ListenerKind;
use hato_core::smtp::server::{Event, Peer, Session, Verdict, BODY_CHUNK};
use hato_core::time::UnixTime;

/// The front ends' socket read size (`READ_BUFFER` in both serve loops).
const READ: usize = 16 * 1024;

/// What the benchmark client sends, one read per element: commands one
/// at a time (smtp-source does not pipeline), the message in reads of
/// [`READ`] bytes.
struct Script {
    reads: Vec<Vec<u8>>,
}

impl Script {
    /// A transaction carrying a message of about `size` bytes of body, in
    /// lines of 78 characters like smtp-source's payload.
    fn new(size: usize) -> Self {
        let mut msg = Vec::with_capacity(size + 512);
        msg.extend_from_slice(
            b"From: <bench@sender.example>\r\nTo: <bench@example.test>\r\n\
              Date: Tue, 24 Nov 2026 06:35:17 +0000\r\n\
              Message-Id: <1.bench@sender.example>\r\nSubject: bench\r\n\r\n",
        );
        let line = [b'x'; 78];
        let mut body = 0;
        while body < size {
            let n = line.len().min(size - body);
            msg.extend_from_slice(&line[..n]);
            msg.extend_from_slice(b"\r\n");
            body += n + 2;
        }
        msg.extend_from_slice(b".\r\n");
        let mut reads: Vec<Vec<u8>> = [
            &b"EHLO client.example\r\n"[..],
            b"MAIL FROM:<bench@sender.example>\r\n",
            b"RCPT TO:<bench@example.test>\r\n",
            b"DATA\r\n",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        reads.extend(msg.chunks(READ).map(<[u8]>::to_vec));
        reads.push(b"QUIT\r\n".to_vec());
        Self { reads }
    }
}

/// What one transaction produced, checked so that the work is not
/// optimised away and the transaction really succeeded.
#[derive(Debug, Default)]
struct Outcome {
    replies: usize,
    body: usize,
    queued: bool,
    closed: bool,
}

/// Runs one session through the script. Never inlined: callgrind's
/// `--toggle-collect=*transaction*` counts exactly this call.
#[inline(never)]
fn transaction(cfg: &Arc<Config>, dir: &Arc<Directory>, script: &Script, now: Instant) -> Outcome {
    let peer = Peer {
        remote: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        local: std::net::SocketAddr::from(([127, 0, 0, 1], 2525)),
        listener: ListenerKind::Smtp,
    };
    let mut session = Session::new(Arc::clone(cfg), Arc::clone(dir), peer, now);
    let mut out = Vec::with_capacity(1024);
    let mut body = Vec::new();
    let mut outcome = Outcome::default();
    drain(&mut session, now, &mut out, &mut body, &mut outcome);
    for read in &script.reads {
        let mut rest = &read[..];
        // Bounded: every round either consumes input or the session is
        // stuck, which a correct core never is.
        for _ in 0..1024 {
            if rest.is_empty() || session.is_closed() {
                break;
            }
            let n = session.handle_input(now, rest);
            rest = &rest[n..];
            drain(&mut session, now, &mut out, &mut body, &mut outcome);
        }
    }
    outcome.closed = session.is_closed();
    outcome
}

/// Polls the session as a front end does: transmit, events (with
/// verdicts) and the body before each, until nothing is left.
fn drain(
    session: &mut Session,
    now: Instant,
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    outcome: &mut Outcome,
) {
    loop {
        let _ = session.poll_transmit(out);
        outcome.replies += out.iter().filter(|&&b| b == b'\n').count();
        out.clear();
        // As both front ends do: message data is taken at BODY_CHUNK or
        // with the event that follows it (the end of data).
        let event = session.poll_event();
        if event.is_some() || session.body_len() >= BODY_CHUNK {
            session.take_body(body);
            outcome.body += body.len();
            body.clear();
        }
        let Some(event) = event else {
            break;
        };
        let verdict = match event {
            Event::DataStart => Verdict::DataAccepted {
                queue_id: "1J0VVKUU6VM00R0N".to_owned(),
                date: UnixTime(1_795_502_117),
            },
            Event::DataEnd { .. } => {
                outcome.queued = true;
                Verdict::Queued
            }
            Event::Ask(_) => Verdict::Answer(Ok(())),
            _ => continue,
        };
        if session.handle_verdict(now, verdict).is_err() {
            break;
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let size = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10 * 1024);
    let count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = Arc::new(Config::defaults("mail.example.test"));
    let dir = match Directory::parse("bench@example.test:!\n") {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("hato-core-callgrind: users: {e}");
            return ExitCode::FAILURE;
        }
    };
    let script = Script::new(size);
    // One fixed instant: no clock reads inside the measured code.
    let now = Instant::now();
    let mut last = Outcome::default();
    for _ in 0..count {
        last = std::hint::black_box(transaction(&cfg, &dir, &script, now));
    }
    if !(last.queued && last.closed) || last.body < size {
        eprintln!("hato-core-callgrind: transaction did not complete: {last:?}");
        return ExitCode::FAILURE;
    }
    println!(
        "transactions={count} size={size} replies={} body_bytes={}",
        last.replies, last.body
    );
    ExitCode::SUCCESS
}
