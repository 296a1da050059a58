//! Reports about a message's fate to its sender, and the end of a
//! message's life in the queue.
//!
//! - [`finish`]: once every recipient of a message is delivered or failed
//!   (local and remote delivery each record theirs in the progress file),
//!   one RFC 3464 failure report lists every failed recipient with its
//!   reason (and the remote server's reply), then the message leaves the
//!   queue. Never a report to the null sender: a failed bounce goes to the
//!   postmaster, and a failed report *to* the postmaster is only logged
//!   (RFC 5321 §6.2, no loops of reports).
//! - [`warn_delay`]: the "still trying" report (`Action: delayed`).
//!
//! Reports are queued from `<>` like any message, fsynced before the
//! original goes: a crash in between can repeat a report, never lose it.
//! Local and remote delivery may finish a message at the same moment; a
//! lock makes the check-and-report happen once.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, PoisonError};

use hato_core::config::Config;
use hato_core::message::dsn::{self, BounceTarget, DsnInput, DsnKind, DsnRecipient, RemoteFailure};
use hato_core::policy::{check_recipient, Client, Destination, ListenerKind};
use hato_core::queue::{QueueEnvelope, QueuedRecipient};
use hato_core::smtp::address::ForwardPath;
use hato_core::smtp::parse::parse_mailbox;
use hato_core::smtp::reply::{Enhanced, Reply};
use hato_core::time::UnixTime;

use crate::log;
use crate::store::{users, RecordedFailure, Store};

/// The most of a message's start read to find its header block.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Serializes [`finish`]: one report per message, however many roles
/// finish it at once.
static FINISHING: Mutex<()> = Mutex::new(());

/// A report queued: its queue id, whom it goes to, and where.
pub type Queued = (String, String, Destination);

/// What [`finish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Some recipient is still open.
    NotYet,
    /// The message is not in the queue (finished by someone else).
    Gone,
    /// The message left the queue, after its failure report, if any.
    Done {
        /// The report queued, if one was.
        report: Option<Queued>,
        /// How many recipients failed.
        failed: usize,
    },
}

/// Ends message `id` if every recipient is finished: queues the failure
/// report when some failed, then removes the message.
///
/// # Errors
/// The queue or progress file cannot be read, the report cannot be
/// queued, or the message cannot be removed (it then stays queued, and a
/// later call tries again).
pub fn finish(store: &Store, cfg: &Config, id: &str, now: UnixTime) -> io::Result<Finished> {
    let _one = FINISHING.lock().unwrap_or_else(PoisonError::into_inner);
    let (env, body) = match store.open_message(id) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Finished::Gone),
        Err(e) => return Err(e),
    };
    let finished = store.delivered(id)?;
    if (0..env.recipients.len()).any(|i| finished.binary_search(&i).is_err()) {
        return Ok(Finished::NotYet);
    }
    let failures = store.failures(id)?;
    let mut report = None;
    if !failures.is_empty() {
        let headers = read_header_block(body)?;
        let failed: Vec<Failed<'_>> = failures
            .iter()
            .filter_map(|(idx, f)| Failed::new(env.recipients.get(*idx)?, f))
            .collect();
        report = failure_report(store, cfg, &env, &failed, &headers, now)?.ok();
    }
    store.remove(id)?;
    log_dequeued(id, !failures.is_empty());
    Ok(Finished::Done {
        report,
        failed: failures.len(),
    })
}

/// Logs that message `id` left the queue (`event=dequeue`).
pub fn log_dequeued(id: &str, some_failed: bool) {
    let reason = if some_failed {
        "all recipients delivered or failed"
    } else {
        "all recipients delivered"
    };
    log::Line::new("dequeue")
        .kv("id", id)
        .kv("reason", reason)
        .emit();
}

/// Queues the delay warning for `undelivered` recipients of `id` (once:
/// the caller records it with [`Store::mark_warned`]). `retry_until` is
/// when delivery gives up.
///
/// # Errors
/// The message cannot be read or the report cannot be queued.
pub fn warn_delay(
    store: &Store,
    cfg: &Config,
    id: &str,
    undelivered: &[usize],
    retry_until: UnixTime,
    now: UnixTime,
) -> io::Result<Option<Queued>> {
    let (env, body) = store.open_message(id)?;
    if matches!(dsn::should_bounce(&env.from), BounceTarget::Postmaster) {
        return Ok(None); // never tell the null sender anything
    }
    let Ok((to, destination)) = report_destination(store, cfg, &env.from) else {
        return Ok(None);
    };
    let headers = read_header_block(body)?;
    let reason = "not delivered yet; delivery is still being tried";
    let recipients: Vec<DsnRecipient<'_>> = undelivered
        .iter()
        .filter_map(|i| env.recipients.get(*i))
        .map(|r| DsnRecipient {
            original: None,
            address: address_of(r),
            reason,
            status: Some(Enhanced(4, 4, 7)),
            remote: None,
            last_attempt: Some(now),
        })
        .collect();
    if recipients.is_empty() {
        return Ok(None);
    }
    let report = Report {
        kind: DsnKind::Delay,
        recipients: &recipients,
        headers: &headers,
        retry_until: Some(retry_until),
    };
    let report_id = queue_report(store, cfg, &env, &report, &to, &destination, now)?;
    log::Line::new("report")
        .kv("id", id)
        .kv("kind", "delay")
        .kv("dsn", &report_id)
        .kv("to", &to)
        .emit();
    Ok(Some((report_id, to, destination)))
}

/// One failed recipient, with its recorded reason.
#[derive(Debug)]
pub(crate) struct Failed<'a> {
    address: &'a str,
    reason: String,
    mta: Option<&'a str>,
    reply: Option<Reply>,
    status: Option<Enhanced>,
}

impl<'a> Failed<'a> {
    pub(crate) fn new(r: &'a QueuedRecipient, f: &'a RecordedFailure) -> Option<Self> {
        let reply = f.mta.as_ref().and_then(|_| parse_reply(&f.reason));
        let status = match &reply {
            Some(_) => None,
            None => leading_status(&f.reason),
        };
        let reason = match (&f.mta, &reply) {
            (Some(mta), Some(_)) => format!("the mail server {mta} refused it"),
            _ => strip_status(&f.reason).to_owned(),
        };
        Some(Self {
            address: address_of(r),
            reason,
            mta: f.mta.as_deref(),
            reply,
            status,
        })
    }

    /// A recipient failed by the administrator (`hato queue bounce`).
    pub(crate) fn by_admin(r: &'a QueuedRecipient, reason: &str) -> Self {
        Self {
            address: address_of(r),
            reason: reason.to_owned(),
            mta: None,
            reply: None,
            status: Some(Enhanced(5, 0, 0)),
        }
    }
}

/// Queues the failure report about `failed` and logs it; `Ok(Err(why))`
/// when no report can or may be sent (logged too).
///
/// # Errors
/// The report cannot be queued.
pub(crate) fn failure_report(
    store: &Store,
    cfg: &Config,
    env: &QueueEnvelope,
    failed: &[Failed<'_>],
    headers: &[u8],
    now: UnixTime,
) -> io::Result<Result<Queued, &'static str>> {
    let none = |why: &'static str| {
        log::Line::new("report")
            .kv("id", &env.id)
            .kv("kind", "none")
            .kv("reason", why)
            .emit();
        Ok(Err(why))
    };
    let (to, destination) = match report_destination(store, cfg, &env.from) {
        Ok(t) => t,
        Err(why) => return none(why),
    };
    // A report that failed on its way to the postmaster is not reported
    // to the postmaster again: that could go round for ever.
    if env.from == dsn::BOUNCE_REVERSE_PATH && failed.iter().any(|f| f.address == to) {
        return none("a report to the postmaster failed; not reported again");
    }
    let recipients: Vec<DsnRecipient<'_>> = failed
        .iter()
        .map(|f| DsnRecipient {
            // No ORCPT was given (hato does not offer DSN), so no
            // Original-Recipient (RFC 3461 §6.3 (d)).
            original: None,
            address: f.address,
            reason: &f.reason,
            status: f.status,
            remote: match (f.mta, &f.reply) {
                (Some(mta), Some(reply)) => Some(RemoteFailure { mta, reply }),
                _ => None,
            },
            last_attempt: Some(now),
        })
        .collect();
    let report = Report {
        kind: DsnKind::Failure,
        recipients: &recipients,
        headers,
        retry_until: None,
    };
    let report_id = queue_report(store, cfg, env, &report, &to, &destination, now)?;
    log::Line::new("report")
        .kv("id", &env.id)
        .kv("kind", "failure")
        .kv("dsn", &report_id)
        .kv("to", &to)
        .kv("failed", failed.len())
        .emit();
    Ok(Ok((report_id, to, destination)))
}

/// Whom a report about a message from `from` goes to, and where that is;
/// or why nobody.
pub(crate) fn report_destination(
    store: &Store,
    cfg: &Config,
    from: &str,
) -> Result<(String, Destination), &'static str> {
    let dir = users::load(store.data_dir()).map_err(|_| "the users file cannot be read")?;
    let client = Client {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        listener: ListenerKind::Smtp,
        authenticated: true,
    };
    let to_postmaster = || {
        check_recipient(cfg, &dir, &client, &ForwardPath::Postmaster)
            .map(|d| (cfg.postmaster.clone(), d))
            .map_err(|_| "the postmaster address cannot be resolved")
    };
    match dsn::should_bounce(from) {
        BounceTarget::Sender(address) => {
            let Ok(mailbox) = parse_mailbox(&address) else {
                return Err("the sender's address cannot be parsed");
            };
            let path = ForwardPath::Mailbox {
                mailbox,
                had_route: false,
            };
            match check_recipient(cfg, &dir, &client, &path) {
                Ok(d) => Ok((address, d)),
                // A local sender without a mailbox (a forged or removed
                // address): the postmaster hears of it instead.
                Err(_) => to_postmaster(),
            }
        }
        BounceTarget::Postmaster => to_postmaster(),
        BounceTarget::None => Err("the sender is not an address a report can go to"),
    }
}

/// What a report says.
struct Report<'a> {
    kind: DsnKind,
    recipients: &'a [DsnRecipient<'a>],
    headers: &'a [u8],
    retry_until: Option<UnixTime>,
}

/// Composes the report and queues it from `<>`; returns its queue id.
fn queue_report(
    store: &Store,
    cfg: &Config,
    env: &QueueEnvelope,
    report: &Report<'_>,
    to: &str,
    destination: &Destination,
    now: UnixTime,
) -> io::Result<String> {
    let report_id = store.new_queue_id();
    let dsn = dsn::compose(&DsnInput {
        kind: report.kind,
        hostname: &cfg.hostname,
        to,
        original_sender: &env.from,
        queue_id: &env.id,
        dsn_id: &report_id,
        arrival: env.received,
        now,
        retry_until: report.retry_until,
        recipients: report.recipients,
        original_headers: report.headers,
        boundary_seed: seed(&report_id, now),
    });
    let report_env = QueueEnvelope {
        id: report_id.clone(),
        received: now,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: cfg.hostname.clone(),
        from: dsn::BOUNCE_REVERSE_PATH.to_owned(),
        smtputf8: env.smtputf8,
        body_8bit: dsn.body_8bit,
        auth: None,
        recipients: vec![QueuedRecipient {
            original: format!("<{to}>"),
            destination: destination.clone(),
        }],
    };
    let mut w = store.spool(&report_env)?;
    w.write(&dsn.bytes)?;
    w.commit()?;
    Ok(report_id)
}

/// The address a recipient was delivered to.
fn address_of(r: &QueuedRecipient) -> &str {
    match &r.destination {
        Destination::Local(a) | Destination::Remote(a) => a,
    }
}

/// A boundary seed from the report's id and the time: the front end's
/// part of "randomness comes from outside the core".
fn seed(id: &str, now: UnixTime) -> u64 {
    id.bytes().fold(now.0, |h, b| {
        h.rotate_left(5) ^ u64::from(b).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

/// Reads a reply recorded as text (`550 5.1.1 text`).
fn parse_reply(text: &str) -> Option<Reply> {
    let code: u16 = text.get(..3)?.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    let rest = text.get(3..)?.trim_start();
    let esc = leading_status(rest);
    let text = if esc.is_some() {
        strip_status(rest)
    } else {
        rest
    };
    Some(Reply::new(code, esc, text.to_owned()))
}

/// The RFC 3463 status code a text starts with (`5.1.2 ...`).
fn leading_status(text: &str) -> Option<Enhanced> {
    let word = text.split(' ').next()?;
    let mut parts = word.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5))
        .then_some(Enhanced(class, subject, detail))
}

/// `text` without the status code it starts with.
fn strip_status(text: &str) -> &str {
    match leading_status(text) {
        Some(_) => text.split_once(' ').map_or("", |(_, r)| r),
        None => text,
    }
}

/// Reads the message's header block (up to its empty line, or
/// [`MAX_HEADER_BLOCK`] bytes).
pub(crate) fn read_header_block(body: impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(8192);
    body.take(MAX_HEADER_BLOCK as u64).read_to_end(&mut buf)?;
    let end = find(&buf, b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| find(&buf, b"\n\n").map(|p| p + 1))
        .unwrap_or(buf.len());
    buf.truncate(end);
    Ok(buf)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
