//! One delivery attempt: the recipients of one message that share a
//! destination, carried in one SMTP transaction (RFC 5321 §5.1, §6.1).
//!
//! The attempt reuses an idle connection to the destination when one is
//! parked, else finds the addresses ([`super::resolve`]) and tries them in
//! order: a host that cannot be reached, refuses the session (greeting,
//! EHLO, 421) or drops it before any of the message went out is skipped
//! for the next one. Once the body started, the answer is final for this
//! attempt: trying another host could deliver the message twice.
//!
//! Each recipient's outcome is recorded in the progress file (delivered:
//! fsynced done mark; failed for good: a `failed` line with the server's
//! reply, for the bounce) and logged before the scheduler hears of it.
//! A message whose `Received:` headers pass `delivery.max_hops` is looping
//! and fails at once (RFC 5321 §6.3).

use std::io::{self, Read};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hato_core::config::Config;
use hato_core::dns::Rng;
use hato_core::message::count_received;
use hato_core::policy::Destination;
use hato_core::queue::{route, AttemptResult, QueueEnvelope, Work};
use hato_core::smtp::client::{ClientConfig, CloseReason, Failure, Outcome, Timeouts, Transaction};
use hato_core::tls;

use super::pool::Pool;
use super::resolve::{candidates, LazyDns};
use super::wire::{Sent, Wire, WireError};
use crate::dkim::{self, DkimKeys, Signed};
use crate::log;
use crate::store::{RecordedFailure, Store};
use crate::tls_files::SystemClock;

/// The longest a TCP connect may take (RFC 5321 §4.5.3.2 has no figure;
/// most MTAs wait 30 seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The most of a message's start read to count its `Received:` headers.
const MAX_HEADER_BLOCK: u64 = 256 * 1024;

/// What every attempt shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) cfg: Arc<Config>,
    pub(crate) dns: LazyDns,
    pub(crate) pool: Pool,
    /// The TLS client for opportunistic STARTTLS, made by the first
    /// attempt that needs it (an idle server never touches the TLS code);
    /// see [`Shared::client_tls`].
    pub(crate) tls: OnceLock<Option<Arc<tls::ClientConfig>>>,
    /// The DKIM keys of the local domains.
    pub(crate) dkim: Arc<DkimKeys>,
}

impl Shared {
    /// The TLS client configuration, made at the first call; `None` if
    /// rustls could not be set up (logged once; mail then goes in
    /// plaintext, as before STARTTLS).
    pub(crate) fn client_tls(&self) -> Option<&Arc<tls::ClientConfig>> {
        self.tls
            .get_or_init(|| match tls::client_config(Arc::new(SystemClock)) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::Line::new("error")
                        .kv("what", "tls-client")
                        .kv("error", e)
                        .kv("effect", "remote delivery sends without STARTTLS")
                        .emit();
                    None
                }
            })
            .as_ref()
    }
}

/// What became of one recipient, with what the log and the bounce need.
#[derive(Debug)]
struct Result1 {
    idx: usize,
    result: AttemptResult,
    /// The server that answered (for `Remote-MTA`), when one did.
    mta: Option<String>,
    /// `name[ip]:port` of the server, for the log.
    relay: Option<String>,
    /// The server's reply when it took the message.
    reply: Option<String>,
    /// The TLS version, when the connection used STARTTLS.
    tls: Option<String>,
}

/// Runs `work` and returns each recipient's result, recorded and logged.
pub(crate) fn run(shared: &Shared, work: &Work, seed: u64) -> Vec<(usize, AttemptResult)> {
    let (results, env) = match shared.store.read_envelope(&work.id) {
        Ok(env) => (attempt(shared, work, &env, seed), Some(env)),
        Err(e) => {
            let why = format!("4.3.0 cannot read the queue file: {e}");
            (all(work, &AttemptResult::Temporary(why)), None)
        }
    };
    results
        .into_iter()
        .map(|r| {
            let to = env
                .as_ref()
                .and_then(|e| e.recipients.get(r.idx))
                .map_or_else(String::new, |x| x.original.clone());
            (r.idx, record(shared, work, &to, r))
        })
        .collect()
}

/// Every recipient of `work` with the same result.
fn all(work: &Work, result: &AttemptResult) -> Vec<Result1> {
    work.recipients
        .iter()
        .map(|&idx| Result1 {
            idx,
            result: result.clone(),
            mta: None,
            relay: None,
            reply: None,
            tls: None,
        })
        .collect()
}

fn attempt(shared: &Shared, work: &Work, env: &QueueEnvelope, seed: u64) -> Vec<Result1> {
    let cfg = &shared.cfg;
    let mut addresses = Vec::with_capacity(work.recipients.len());
    for &idx in &work.recipients {
        match env.recipients.get(idx).map(|r| &r.destination) {
            Some(Destination::Remote(a)) => addresses.push(a.clone()),
            _ => {
                return all(
                    work,
                    &AttemptResult::Permanent(format!(
                        "5.3.0 recipient {idx} of the queue file is not remote"
                    )),
                )
            }
        }
    }
    match hops(&shared.store, &env.id) {
        Ok(n) if n > cfg.delivery.max_hops => {
            return all(
                work,
                &AttemptResult::Permanent(format!(
                    "5.4.6 mail loop: the message has {n} Received: headers, more than the \
                     limit of {}",
                    cfg.delivery.max_hops
                )),
            )
        }
        Ok(_) => {}
        Err(e) => {
            return all(
                work,
                &AttemptResult::Temporary(format!("4.3.0 cannot read the queue file: {e}")),
            )
        }
    }
    let size = match shared.store.body_len(&env.id) {
        Ok(n) => n,
        Err(e) => {
            return all(
                work,
                &AttemptResult::Temporary(format!("4.3.0 cannot read the queue file: {e}")),
            )
        }
    };
    let signature = sign(shared, env);
    let tx = Transaction {
        from: env.from.clone(),
        recipients: addresses.iter().map(|a| format!("<{a}>")).collect(),
        size: size + signature.len() as u64,
        body_8bit: env.body_8bit,
        smtputf8: env.smtputf8,
    };

    // An idle connection to the same destination first.
    while let Some(mut wire) = shared.pool.take(&work.destination) {
        if !wire.is_usable() {
            continue;
        }
        match transact(shared, work, env, &tx, &signature, &mut wire) {
            Ok(results) => {
                park(shared, &work.destination, wire, &results);
                return results;
            }
            // It had gone stale: connect afresh.
            Err(_) => continue,
        }
    }

    let route = route(&cfg.delivery, &addresses[0]);
    let mut rng = Rng::new(seed);
    let ourselves = [cfg.hostname.clone()];
    let hosts = match candidates(
        &route.target,
        cfg.delivery.smtp_port,
        &shared.dns,
        &ourselves,
        &mut rng,
    ) {
        Ok(hosts) => hosts,
        Err(no) if no.permanent => return all(work, &AttemptResult::Permanent(no.reason)),
        Err(no) => return all(work, &AttemptResult::HostFailed(no.reason)),
    };
    let client_cfg = client_config(cfg);
    let connect_timeout = cfg
        .delivery
        .timeout
        .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT));
    let mut last = String::from("no address to try");
    for host in hosts {
        let relay = format!("{}[{}]", host.name, host.addr);
        let connected = Wire::connect(
            host.addr,
            &host.name,
            client_cfg.clone(),
            shared.client_tls(),
            connect_timeout,
        );
        let connected = match connected {
            // Opportunistic TLS: a failed handshake is logged, and the same
            // host is tried again in plaintext (no policy requires TLS).
            Err(WireError::Closed(CloseReason::TlsFailed)) => {
                log::Line::new("tls-failed")
                    .kv("id", &work.id)
                    .kv("relay", &relay)
                    .kv(
                        "reason",
                        "STARTTLS handshake failed; trying again without TLS",
                    )
                    .emit();
                Wire::connect(
                    host.addr,
                    &host.name,
                    client_cfg.clone(),
                    None,
                    connect_timeout,
                )
            }
            other => other,
        };
        let mut wire = match connected {
            Ok(wire) => wire,
            Err(e) => {
                last = format!("4.4.1 {relay}: {e}");
                log::Line::new("connect-failed")
                    .kv("id", &work.id)
                    .kv("relay", &relay)
                    .kv("reason", e.to_string())
                    .emit();
                continue;
            }
        };
        match transact(shared, work, env, &tx, &signature, &mut wire) {
            Ok(results) => {
                park(shared, &work.destination, wire, &results);
                return results;
            }
            Err(e) => {
                // The host went away before any of the message did: the
                // next one is tried now; say why this one was left.
                last = format!("4.4.2 {}: {e}", wire.peer);
                log::Line::new("host-skipped")
                    .kv("id", &work.id)
                    .kv("relay", &wire.peer)
                    .kv("reason", e.to_string())
                    .emit();
            }
        }
    }
    all(work, &AttemptResult::HostFailed(last))
}

/// Keeps the connection for the next message, unless the server deferred
/// something on it: the retry then starts on a fresh connection.
fn park(shared: &Shared, destination: &str, wire: Wire, results: &[Result1]) {
    let deferred = results
        .iter()
        .any(|r| matches!(r.result, AttemptResult::Temporary(_)));
    if deferred {
        wire.quit();
    } else {
        shared.pool.park(destination, wire);
    }
}

/// The client's settings: our name, and the RFC timers capped by
/// `delivery.timeout`.
fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new(cfg.hostname.clone());
    if let Some(cap) = cfg.delivery.timeout {
        let t = &mut c.timeouts;
        let d = Timeouts::default();
        t.greeting = d.greeting.min(cap);
        t.ehlo = d.ehlo.min(cap);
        t.mail = d.mail.min(cap);
        t.rcpt = d.rcpt.min(cap);
        t.data_init = d.data_init.min(cap);
        t.data_block = d.data_block.min(cap);
        t.data_end = d.data_end.min(cap);
        t.other = d.other.min(cap);
    }
    c
}

/// Runs the transaction on `wire`. `Err` when the connection gave no
/// answer worth keeping (it failed before any of the body went out, or
/// the server said 421): the caller tries the next host.
fn transact(
    shared: &Shared,
    work: &Work,
    env: &QueueEnvelope,
    tx: &Transaction,
    signature: &str,
    wire: &mut Wire,
) -> Result<Vec<Result1>, WireError> {
    let body = match shared.store.open_body(&env.id) {
        Ok(body) => io::Cursor::new(signature.as_bytes()).chain(body),
        Err(e) => return Err(WireError::Io(format!("cannot read the queue file: {e}"))),
    };
    let Sent {
        outcomes,
        body_started,
    } = wire.send(tx.clone(), body);
    let inconclusive = !body_started && outcomes.iter().all(is_connection_trouble);
    if inconclusive {
        let why = outcomes
            .first()
            .map_or_else(|| "no answer".to_owned(), outcome_text);
        return Err(WireError::Io(why));
    }
    Ok(work
        .recipients
        .iter()
        .zip(outcomes)
        .map(|(&idx, outcome)| {
            let answered = matches!(
                &outcome,
                Outcome::Permanent(Failure::Reply { .. })
                    | Outcome::Temporary(Failure::Reply { .. })
            );
            let result = match &outcome {
                Outcome::Delivered { .. } => AttemptResult::Delivered,
                Outcome::Temporary(_) => AttemptResult::Temporary(outcome_text(&outcome)),
                Outcome::Permanent(_) => AttemptResult::Permanent(outcome_text(&outcome)),
            };
            Result1 {
                idx,
                result,
                mta: answered.then(|| wire.mta.clone()),
                relay: Some(wire.peer.clone()),
                reply: matches!(outcome, Outcome::Delivered { .. }).then(|| outcome_text(&outcome)),
                tls: wire.tls_info.as_ref().map(|i| i.version.clone()),
            }
        })
        .collect())
}

/// A failure of the connection rather than an answer about the message.
fn is_connection_trouble(o: &Outcome) -> bool {
    match o {
        Outcome::Temporary(
            Failure::ConnectionLost | Failure::Timeout(_) | Failure::Protocol(_),
        ) => true,
        Outcome::Temporary(Failure::Reply { reply, .. }) => reply.code == 421,
        _ => false,
    }
}

/// The words for an outcome: the server's reply as it gave it, or what
/// went wrong.
fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Delivered { reply } => reply.to_string(),
        Outcome::Temporary(Failure::Reply { reply, .. })
        | Outcome::Permanent(Failure::Reply { reply, .. }) => reply.to_string().replace('\n', " "),
        Outcome::Temporary(f) => format!("4.4.2 {f}"),
        Outcome::Permanent(f @ Failure::TooLarge { .. }) => format!("5.3.4 {f}"),
        Outcome::Permanent(f @ Failure::EightBitUnsupported) => format!("5.6.3 {f}"),
        Outcome::Permanent(f @ Failure::Utf8Unsupported) => format!("5.6.7 {f}"),
        Outcome::Permanent(f) => format!("5.0.0 {f}"),
    }
}

/// The DKIM-Signature field for the message (ending in CRLF), or nothing.
/// Only mail of our own users is signed: sent by an authenticated user or
/// from a trusted network (or one of hato's own reports). Mail that is
/// only passing through (a backup MX's) is never signed, whatever its From:
/// says: signing it would vouch for a forgery.
fn sign(shared: &Shared, env: &QueueEnvelope) -> String {
    let cfg = &shared.cfg;
    let ours = env.auth.is_some()
        || cfg
            .relay
            .trusted_networks
            .iter()
            .any(|n| n.contains(env.client_ip));
    if !ours || shared.dkim.is_empty() {
        return String::new();
    }
    let sender_domain = env
        .from
        .trim_start_matches('<')
        .trim_end_matches('>')
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned());
    let Ok(mut body) = shared.store.open_body(&env.id) else {
        return String::new();
    };
    match shared
        .dkim
        .sign_message(sender_domain.as_deref(), log::unix_now(), &mut body)
    {
        Ok(Signed::Field { field, .. }) => field,
        Ok(Signed::NoKey) | Err(_) => String::new(),
        Ok(Signed::Failed { domain, error }) => {
            dkim::log_unsigned(&env.id, &domain, &error);
            String::new()
        }
    }
}

/// Counts the `Received:` headers of queued message `id`.
fn hops(store: &Store, id: &str) -> io::Result<usize> {
    let mut head = Vec::with_capacity(8192);
    store
        .open_body(id)?
        .take(MAX_HEADER_BLOCK)
        .read_to_end(&mut head)?;
    Ok(count_received(&head))
}

/// Records and logs one recipient's result; returns what the scheduler
/// is told (a failure that cannot be recorded is retried instead).
fn record(shared: &Shared, work: &Work, to: &str, r: Result1) -> AttemptResult {
    let store = &shared.store;
    match &r.result {
        AttemptResult::Delivered => {
            if let Err(e) = store.mark_delivered(&work.id, r.idx) {
                // The server has it; a retry after a restart may send a
                // second copy, which is better than none.
                log::Line::new("error")
                    .kv("id", &work.id)
                    .kv("to", to)
                    .kv("reason", format!("delivered but cannot record it: {e}"))
                    .emit();
            }
            log::Line::new("deliver")
                .kv("id", &work.id)
                .kv("to", to)
                .opt("relay", r.relay.as_deref())
                .opt("reply", r.reply.as_deref().map(one_line))
                .opt("tls", r.tls.as_deref())
                .emit();
            r.result
        }
        AttemptResult::Permanent(reason) => {
            let failure = RecordedFailure {
                mta: r.mta.clone(),
                reason: reason.clone(),
            };
            if let Err(e) = store.mark_failed(&work.id, r.idx, &failure) {
                let why = format!("4.3.0 failed ({reason}) but cannot record it: {e}");
                log::Line::new("defer")
                    .kv("id", &work.id)
                    .kv("to", to)
                    .kv("reason", &why)
                    .emit();
                return AttemptResult::Temporary(why);
            }
            outcome_line("bounce", work, to, &r, reason);
            r.result
        }
        AttemptResult::Temporary(reason) | AttemptResult::HostFailed(reason) => {
            outcome_line("defer", work, to, &r, reason);
            r.result
        }
    }
}

/// Logs a recipient that failed (`bounce`) or waits (`defer`).
fn outcome_line(event: &str, work: &Work, to: &str, r: &Result1, reason: &str) {
    log::Line::new(event)
        .kv("id", &work.id)
        .kv("to", to)
        .opt("relay", r.relay.as_deref())
        .kv("reason", one_line(reason))
        .emit();
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
