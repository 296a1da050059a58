//! kill -9 while clients send (RFC 5321 §6.1, RFC 1047): once hato has
//! answered 250 after the end of data it owns the message, so a crash at
//! any moment must lose no message that got its 250, deliver none twice,
//! and leave nothing half-written in a mailbox or in the queue.
//!
//! Two scenarios, each run against `hato` and `hato-smol`, a few rounds
//! each:
//!
//! * **load**: six clients send messages of 1 KB to 300 KB in a loop; the
//!   server is killed with SIGKILL mid-stream (after about 1.5 s or 30
//!   messages answered 250, whichever comes first).
//! * **burst**: one client sends 50 small messages one after the other;
//!   the server is killed right after the last 250, while local delivery
//!   is still at work.
//!
//! Then a new server process starts on the same data directory; once the
//! queue is empty and the Maildir quiet, every message answered 250 must be
//! in alice's Maildir exactly once, and a message whose 250 was lost in the
//! crash at most once (RFC 1047). Each delivered file must hold exactly
//! the message sent: every body line names its message, so a partial or
//! mixed-up file is caught.
//!
//! `HATO_CRASH_ROUNDS=N` runs N rounds per scenario and binary (default 4);
//! a one-line summary per round goes to stderr (`--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;
use hato_spec_tests::client::SmtpClient;
use hato_spec_tests::maildir::{crlf_to_lf, header, split_delivered};
use hato_spec_tests::server::{log_value, Binary, DataDir, Server};
use hato_spec_tests::transcript::escape;

const ALICE: &str = "alice@example.test";
const SENDER: &str = "crash@client.example";

/// Load scenario: concurrent clients.
const CLIENTS: usize = 6;
/// Load scenario: the kill comes after this long...
const LOAD_TIME: Duration = Duration::from_millis(1500);
/// ... or once this many messages were answered 250.
const LOAD_ACKS: usize = 30;
/// Burst scenario: messages sent before the kill.
const BURST: usize = 50;

/// Delivery has settled when the queue is empty and no new file has
/// appeared for this long...
const QUIET: Duration = Duration::from_millis(1000);
/// ... which must happen within this time after the restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

fn rounds() -> usize {
    std::env::var("HATO_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

/// A 64-bit FNV-1a hash: the size of a message derives from its token.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The message named `token`, CRLF line endings, of about `size` bytes:
/// headers, then lines `<token> line N`, every 37th starting with a dot
/// (so dot-stuffing is exercised too).
fn message(token: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{SENDER}>\r\nTo: <{ALICE}>\r\nSubject: crash test {token}\r\n\
         Message-ID: <{token}@crash.example>\r\n\r\n"
    )
    .into_bytes();
    let mut n = 0;
    while m.len() < size {
        let dot = if n % 37 == 5 { "." } else { "" };
        m.extend_from_slice(format!("{dot}{token} line {n}\r\n").as_bytes());
        n += 1;
    }
    m
}

/// The size of the message `token` in the load scenario: 1 KB to 300 KB.
fn load_size(token: &str) -> usize {
    1024 + usize::try_from(fnv(token) % (299 * 1024)).unwrap()
}

/// The size of the message `token` in the burst scenario: 200 B to 2 KB.
fn burst_size(token: &str) -> usize {
    200 + usize::try_from(fnv(token) % 1848).unwrap()
}

/// What the clients did.
#[derive(Debug, Default)]
struct Sent {
    /// Every message whose DATA was begun, token → expected Maildir
    /// content (the message with LF line endings).
    attempted: BTreeMap<String, Vec<u8>>,
    /// Messages answered 250 after the end of data, token → queue id.
    acked: BTreeMap<String, String>,
    /// Failures seen before the kill (there must be none).
    errors: Vec<String>,
}

/// One crash round's findings.
#[derive(Debug, Default)]
struct Round {
    label: String,
    attempted: usize,
    acked: usize,
    queued_at_restart: usize,
    incoming_at_restart: usize,
    delivered_before_restart: usize,
    delivered: usize,
    lost_250_delivered: usize,
    tmp_leftovers: usize,
    duplicates: usize,
    settle: Duration,
    problems: Vec<String>,
}

impl Round {
    fn summary(&self) -> String {
        format!(
            "{}: {} attempted, {} got 250; at the kill: {} in queue/, {} in incoming/, \
             {} in the Maildir; after restart: {} delivered ({} without a 250), \
             {} duplicates, {} tmp/ leftovers, settled in {:?}; {} problems",
            self.label,
            self.attempted,
            self.acked,
            self.queued_at_restart,
            self.incoming_at_restart,
            self.delivered_before_restart,
            self.delivered,
            self.lost_250_delivered,
            self.duplicates,
            self.tmp_leftovers,
            self.settle,
            self.problems.len()
        )
    }
}

/// Load scenario: `CLIENTS` threads send until the server is killed.
fn load(server: &mut Server, round: usize) -> Sent {
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let sent = Arc::new(Mutex::new(Sent::default()));
    let acks = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (sent, acks, killed) = (sent.clone(), acks.clone(), killed.clone());
            std::thread::spawn(move || {
                if let Err(e) = load_client(addr, round, c, &sent, &acks, &killed) {
                    // After the kill, failing is what a client must do.
                    if !killed.load(Ordering::SeqCst) {
                        sent.lock().unwrap().errors.push(format!("client {c}: {e}"));
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < LOAD_TIME && acks.load(Ordering::SeqCst) < LOAD_ACKS {
        std::thread::sleep(Duration::from_millis(2));
    }
    killed.store(true, Ordering::SeqCst);
    server.kill().unwrap();
    for c in clients {
        c.join().unwrap();
    }
    Arc::try_unwrap(sent).unwrap().into_inner().unwrap()
}

/// One load client: connections of one to four messages each, until the
/// server is killed or something fails.
fn load_client(
    addr: std::net::SocketAddr,
    round: usize,
    c: usize,
    sent: &Mutex<Sent>,
    acks: &AtomicUsize,
    killed: &AtomicBool,
) -> Result<(), String> {
    let mut seq = 0;
    while !killed.load(Ordering::SeqCst) {
        let mut client = SmtpClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
        client
            .ehlo("client.example")
            .map_err(|e| format!("EHLO: {e}"))?;
        let per_connection = 1 + (fnv(&format!("{round}.{c}.{seq}")) % 4);
        for _ in 0..per_connection {
            let token = format!("r{round}.c{c}.m{seq}");
            seq += 1;
            let msg = message(&token, load_size(&token));
            sent.lock()
                .unwrap()
                .attempted
                .insert(token.clone(), crlf_to_lf(&msg));
            let reply = client
                .send_mail(SENDER, &[ALICE], &msg)
                .map_err(|e| format!("{token}: {e}"))?;
            let id = reply
                .queue_id()
                .ok_or_else(|| format!("{token}: no queue id in {reply}"))?;
            sent.lock().unwrap().acked.insert(token, id.to_owned());
            acks.fetch_add(1, Ordering::SeqCst);
            if killed.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        client.quit().map_err(|e| format!("QUIT: {e}"))?;
    }
    Ok(())
}

/// Burst scenario: one client, `BURST` messages, kill after the last 250.
fn burst(server: &mut Server, round: usize) -> Sent {
    let addr = server.addr(ListenerKind::Smtp).unwrap();
    let mut sent = Sent::default();
    let mut client = SmtpClient::connect(addr).unwrap();
    client.ehlo("client.example").unwrap();
    for m in 0..BURST {
        let token = format!("b{round}.m{m}");
        let msg = message(&token, burst_size(&token));
        sent.attempted.insert(token.clone(), crlf_to_lf(&msg));
        match client.send_mail(SENDER, &[ALICE], &msg) {
            Ok(reply) => {
                let id = reply.queue_id().unwrap_or_default().to_owned();
                if id.is_empty() {
                    sent.errors.push(format!("{token}: no queue id in {reply}"));
                }
                sent.acked.insert(token, id);
            }
            Err(e) => {
                sent.errors.push(format!("{token}: {e}"));
                break;
            }
        }
    }
    server.kill().unwrap();
    sent
}

fn count_dir(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// Runs one round: start, send (`scenario`), kill, restart, settle, check.
fn crash_round(
    binary: Binary,
    label: String,
    round: usize,
    scenario: fn(&mut Server, usize) -> Sent,
) -> Round {
    let mut r = Round {
        label,
        ..Round::default()
    };
    let data = DataDir::new(&format!("crash-{}-{round}", binary.name())).unwrap();
    let mut first = Server::start_with(binary, data.clone(), &[]).unwrap();
    let sent = scenario(&mut first, round);
    r.attempted = sent.attempted.len();
    r.acked = sent.acked.len();
    for e in &sent.errors {
        r.problems.push(format!("before the kill: {e}"));
    }
    if sent.acked.is_empty() {
        r.problems
            .push("no message was answered 250 before the kill".into());
    }

    // What the crash left.
    let first_delivered: BTreeSet<String> = first
        .events("deliver")
        .iter()
        .filter_map(|l| log_value(l, "id").map(str::to_owned))
        .collect();
    let queue_files = data.queue_files().unwrap();
    // The progress files' contents at the kill, for reports.
    let progress: BTreeMap<String, String> = queue_files
        .iter()
        .filter(|f| f.ends_with(".done"))
        .map(|f| {
            let text = std::fs::read(data.queue_dir().join(f)).unwrap_or_default();
            (f.clone(), escape(&text))
        })
        .collect();
    r.queued_at_restart = queue_files.iter().filter(|f| !f.contains('.')).count();
    r.incoming_at_restart = data.incoming_files().unwrap().len();
    let before_restart: BTreeSet<String> = data
        .delivered(ALICE)
        .unwrap()
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    r.delivered_before_restart = before_restart.len();

    let second = Server::start_with(binary, data.clone(), &[]).unwrap();
    let incoming = data.incoming_files().unwrap();
    if !incoming.is_empty() {
        r.problems.push(format!(
            "queue/incoming/ not emptied at the restart: {incoming:?}"
        ));
    }

    // Settle: queue empty and no new file for QUIET.
    let start = Instant::now();
    let mut last_count = usize::MAX;
    let mut last_change = Instant::now();
    loop {
        let count = data.delivered(ALICE).unwrap().len();
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        }
        let queue = data.queue_files().unwrap();
        if queue.is_empty() && last_change.elapsed() >= QUIET {
            break;
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            r.problems.push(format!(
                "delivery did not settle within {SETTLE_TIMEOUT:?}: queue/ holds {queue:?}\n\
                 --- log after the restart ---\n{}",
                second.log_text()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    r.settle = start.elapsed().saturating_sub(QUIET);

    // The restarted server's log: recovery and one deliver line per new file.
    let recovered: usize = second
        .events("recover")
        .first()
        .and_then(|l| log_value(l, "queued")?.parse().ok())
        .unwrap_or(0);
    if recovered != r.queued_at_restart {
        r.problems.push(format!(
            "the restarted server recovered {recovered} messages, queue/ held {}",
            r.queued_at_restart
        ));
    }
    let files = data.delivered(ALICE).unwrap();
    // A `recovered=yes` line settles a copy that reached the Maildir just
    // before the kill (renamed into new/, not yet recorded nor the message
    // removed; found by its name): it must name a file that was there
    // already, and adds none.
    let (recovered_lines, fresh): (Vec<String>, Vec<String>) = second
        .events("deliver")
        .into_iter()
        .partition(|l| log_value(l, "recovered") == Some("yes"));
    for line in &recovered_lines {
        let file = log_value(line, "file").unwrap_or_default();
        if !before_restart.contains(file) {
            r.problems.push(format!(
                "recovered delivery names {file}, which was not in the Maildir before the restart"
            ));
        }
    }
    let new_deliveries = fresh.len();
    if files.len() != r.delivered_before_restart + new_deliveries {
        r.problems.push(format!(
            "{} files in the Maildir: {} before the restart + {} deliver lines after it",
            files.len(),
            r.delivered_before_restart,
            new_deliveries
        ));
    }
    r.tmp_leftovers = count_dir(&data.maildir_new(ALICE).with_file_name("tmp"));

    // Every delivered file: complete, uncorrupted, and of a message sent.
    let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let d = match split_delivered(&bytes) {
            Ok(d) => d,
            Err(e) => {
                r.problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        let token = header(d.message, "Message-ID").and_then(|v| {
            v.strip_prefix('<')?
                .strip_suffix("@crash.example>")
                .map(str::to_owned)
        });
        let Some(token) = token else {
            r.problems.push(format!(
                "{file}: no Message-ID of ours: {}",
                escape(&d.message[..d.message.len().min(200)])
            ));
            continue;
        };
        match sent.attempted.get(&token) {
            None => r.problems.push(format!("{file}: {token} was never sent")),
            Some(want) if want.as_slice() != d.message => {
                let at = want
                    .iter()
                    .zip(d.message)
                    .position(|(a, b)| a != b)
                    .unwrap_or(want.len().min(d.message.len()));
                r.problems.push(format!(
                    "{file}: {token} is corrupt: {} bytes, expected {}, first difference at {at}",
                    d.message.len(),
                    want.len()
                ));
            }
            Some(_) => {}
        }
        if let Some(id) = sent.acked.get(&token) {
            if !d.received.contains(&format!(" id {id}")) {
                r.problems.push(format!(
                    "{file}: {token} was queued as {id}, but its Received says {}",
                    d.received.trim_end()
                ));
            }
        }
        if d.return_path != format!("<{SENDER}>") || d.delivered_to != ALICE {
            r.problems.push(format!(
                "{file}: Return-Path {} Delivered-To {}",
                d.return_path, d.delivered_to
            ));
        }
        copies.entry(token).or_default().push(file);
    }
    for (token, id) in &sent.acked {
        if !copies.contains_key(token) {
            r.problems.push(format!(
                "LOST: {token} (queued as {id}) got 250 but was not delivered"
            ));
        }
    }
    for (token, f) in &copies {
        if f.len() > 1 {
            r.duplicates += f.len() - 1;
            let acked = if sent.acked.contains_key(token) {
                "got 250"
            } else {
                "got no 250"
            };
            // Where the crash hit: the first server's log and queue/.
            let id = sent.acked.get(token).map_or("?", String::as_str);
            let logged = first_delivered.contains(id);
            let queued = queue_files.iter().any(|q| q == id);
            let done = progress
                .get(&format!("{id}.done"))
                .map_or_else(|| "absent".to_owned(), |t| format!("holding {t:?}"));
            r.problems.push(format!(
                "DUPLICATE: {token} ({acked}, queue id {id}) delivered {} times: {f:?}; \
                 at the kill: queue/{id} {}, queue/{id}.done {}, the first server \
                 {} its deliver line",
                f.len(),
                if queued { "present" } else { "absent" },
                done,
                if logged {
                    "had logged"
                } else {
                    "had not logged"
                },
            ));
        }
    }
    r.delivered = copies.len();
    r.lost_250_delivered = copies
        .keys()
        .filter(|t| !sent.acked.contains_key(*t))
        .count();
    let queue = data.queue_files().unwrap();
    if !queue.is_empty() {
        r.problems
            .push(format!("queue/ not empty at the end: {queue:?}"));
    }
    let incoming = data.incoming_files().unwrap();
    if !incoming.is_empty() {
        r.problems.push(format!(
            "queue/incoming/ not empty at the end: {incoming:?}"
        ));
    }
    if !r.problems.is_empty() {
        r.problems.push(format!(
            "--- log of the restarted server ---\n{}",
            second.log_text()
        ));
    }
    r
}

fn run(binary: Binary, name: &str, scenario: fn(&mut Server, usize) -> Sent) {
    let rounds = rounds();
    let mut failed = Vec::new();
    let mut summaries = Vec::new();
    for round in 0..rounds {
        let label = format!("{} {name} round {}/{rounds}", binary.name(), round + 1);
        let r = crash_round(binary, label, round, scenario);
        eprintln!("{}", r.summary());
        summaries.push(r.summary());
        if !r.problems.is_empty() {
            failed.push(format!("{}\n  {}", r.summary(), r.problems.join("\n  ")));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {rounds} rounds failed:\n{}\n\nall rounds:\n{}",
        failed.len(),
        failed.join("\n\n"),
        summaries.join("\n")
    );
}

#[test]
fn kill_under_load_hato() {
    run(Binary::Hato, "load", load);
}

#[test]
fn kill_under_load_hato_smol() {
    run(Binary::HatoSmol, "load", load);
}

#[test]
fn kill_after_burst_hato() {
    run(Binary::Hato, "burst", burst);
}

#[test]
fn kill_after_burst_hato_smol() {
    run(Binary::HatoSmol, "burst", burst);
}
