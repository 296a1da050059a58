//! The resolver state machine: a stub resolver (RFC 1034 §5.3.1) that asks
//! the configured recursive servers, in the shape of quinn-proto.
//!
//! - Queries go by UDP first; an answer with the TC bit set is asked again
//!   over TCP from the same server (RFC 1035 §4.2.1, RFC 7766 §5), framed
//!   with the two-octet length of RFC 1035 §4.2.2.
//! - Each try waits [`ResolverConfig::timeout`]; a timeout, a server
//!   failure (SERVFAIL, REFUSED, ...) or a network error moves on to the
//!   next server, round-robin, for [`ResolverConfig::attempts`] tries in
//!   all (and at least one per server), as RFC 1536 §1 advises; then the
//!   lookup fails with what the last try met: SERVFAIL (or another
//!   RCODE), [`DnsError::Unreachable`] or [`DnsError::Timeout`].
//! - A server that answers becomes the first one asked by later lookups,
//!   so a dead first server costs one timeout, not one per lookup.
//! - Each try has a fresh id from the seeded [`Rng`]; a response counts
//!   only if it comes from the server asked, with that id and exactly the
//!   question asked (RFC 5452 §9.1); anything else is ignored.
//! - Answers are cached for their TTL and "nothing there" for the negative
//!   TTL (RFC 2308 §5), see `cache`.
//!
//! # Driving it
//! The front end calls [`Resolver::lookup`], then, until each is empty:
//! [`poll_transmit`](Resolver::poll_transmit) (send),
//! [`poll_event`](Resolver::poll_event) (finished lookups),
//! [`poll_timeout`](Resolver::poll_timeout) (when to call
//! [`handle_timeout`](Resolver::handle_timeout) at the latest). Input comes
//! through [`handle_udp`](Resolver::handle_udp),
//! [`handle_tcp`](Resolver::handle_tcp) and
//! [`handle_error`](Resolver::handle_error). Every lookup ends in exactly
//! one event, a cached or invalid one at once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::Name;

use super::cache::{Cache, Key};
use super::message::{build_query, interpret, matches, query_name, show, Reply};
use super::rng::Rng;
use super::types::{Answer, DnsError, Rtype};

/// Timeouts, tries and cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverConfig {
    /// How long one try waits for its answer. Default 2s.
    pub timeout: Duration,
    /// Tries per lookup across all servers (at least one per server).
    /// Default 3.
    pub attempts: u32,
    /// Most answers the cache holds. Default 1024.
    pub cache_size: usize,
    /// Longest time an answer is kept, whatever its TTL. Default 1 day.
    pub max_ttl: Duration,
    /// Longest time "nothing there" is kept (RFC 2308 §5 suggests one to
    /// three hours). Default 3h.
    pub max_negative_ttl: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            attempts: 3,
            cache_size: 1024,
            max_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(3 * 3600),
        }
    }
}

/// Names one lookup, from [`Resolver::lookup`] to its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(u64);

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// One datagram each way.
    Udp,
    /// A TCP connection; the bytes carry the two-octet length prefix.
    Tcp,
}

/// A message for the front end to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The lookup it belongs to (for TCP, pass it back to `handle_tcp`).
    pub query: QueryId,
    /// The server.
    pub to: SocketAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// The message; for TCP with its length prefix, ready to write.
    pub bytes: Vec<u8>,
}

/// A lookup waiting for its answer.
struct Pending {
    id: QueryId,
    name: Name,
    key: Key,
    msg_id: u16,
    server: usize,
    tries: u32,
    proto: Proto,
    deadline: Instant,
    failure: Option<DnsError>,
}

/// The DNS stub resolver: lookups in, datagrams and answers out.
pub struct Resolver {
    servers: Vec<SocketAddr>,
    config: ResolverConfig,
    rng: Rng,
    next_query: u64,
    preferred: usize,
    pending: Vec<Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(QueryId, Result<Answer, DnsError>)>,
    cache: Cache,
}

impl Resolver {
    /// Returns a resolver asking `servers` (recursive resolvers, in order
    /// of preference) with the default [`ResolverConfig`]; `seed` makes
    /// the query ids.
    pub fn new(servers: Vec<SocketAddr>, seed: u64) -> Self {
        Self::with_config(servers, seed, ResolverConfig::default())
    }

    /// Returns a resolver with its own timeouts, tries and cache limits.
    pub fn with_config(servers: Vec<SocketAddr>, seed: u64, config: ResolverConfig) -> Self {
        Self {
            servers,
            config,
            rng: Rng::new(seed),
            next_query: 0,
            preferred: 0,
            pending: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cache: Cache::new(config.cache_size),
        }
    }

    /// Returns the servers asked.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Returns how many lookups wait for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts looking up the `rtype` records of `name` (a domain name,
    /// with or without the trailing dot). The result comes as an event
    /// with the returned id: at once for a cached answer, an invalid name
    /// or no servers; else after transmits and input.
    pub fn lookup(&mut self, name: &str, rtype: Rtype, now: Instant) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let qname = match query_name(name) {
            Ok(n) => n,
            Err(e) => {
                self.events.push_back((id, Err(e)));
                return id;
            }
        };
        let key = (show(&qname), rtype);
        if let Some(result) = self.cache.get(&key, now) {
            self.events.push_back((id, result));
            return id;
        }
        if self.servers.is_empty() {
            self.events.push_back((id, Err(DnsError::NoServers)));
            return id;
        }
        self.pending.push(Pending {
            id,
            name: qname,
            key,
            msg_id: 0,
            server: self.preferred % self.servers.len(),
            tries: 1,
            proto: Proto::Udp,
            deadline: now,
            failure: None,
        });
        self.send(now, self.pending.len() - 1, Proto::Udp);
        id
    }

    /// Forgets lookup `query`: no event will come for it.
    pub fn cancel(&mut self, query: QueryId) {
        self.pending.retain(|p| p.id != query);
        self.transmits.retain(|t| t.query != query);
    }

    /// Returns the next message to send.
    ///
    /// Should be polled after `lookup` and every `handle_*` call.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Returns the next finished lookup.
    ///
    /// Should be polled after `lookup` and every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<(QueryId, Result<Answer, DnsError>)> {
        self.events.pop_front()
    }

    /// Returns when `handle_timeout` must be called at the latest.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Moves every try whose time is up on to its next server, or ends
    /// its lookup. Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<QueryId> = self
            .pending
            .iter()
            .filter(|p| p.deadline <= now)
            .map(|p| p.id)
            .collect();
        for id in due {
            if let Some(idx) = self.index(id) {
                self.next_try(now, idx, None);
            }
        }
    }

    /// Takes a datagram that arrived from `from`. One that answers no
    /// waiting UDP try (unknown id, other server, other question, not DNS)
    /// is ignored.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = Message::from_vec(bytes) else {
            return;
        };
        let servers = &self.servers;
        let found = self.pending.iter().position(|p| {
            p.proto == Proto::Udp
                && servers.get(p.server).is_some_and(|s| same_addr(*s, from))
                && matches(&msg, p.msg_id, &p.name, p.key.1)
        });
        if let Some(idx) = found {
            self.on_reply(now, idx, &msg);
        }
    }

    /// Takes the answer read over TCP for `query`: the message without its
    /// length prefix. An answer that does not match the question counts as
    /// a failure of that server.
    pub fn handle_tcp(&mut self, now: Instant, query: QueryId, bytes: &[u8]) {
        let Some(idx) = self.index(query) else {
            return;
        };
        let p = &self.pending[idx];
        if p.proto != Proto::Tcp {
            return;
        }
        match Message::from_vec(bytes) {
            Ok(msg) if matches(&msg, p.msg_id, &p.name, p.key.1) => self.on_reply(now, idx, &msg),
            _ => self.next_try(now, idx, None),
        }
    }

    /// Says that the last transmit of `query` failed (ICMP unreachable,
    /// connection refused or reset, TCP timeout): the next server is tried
    /// at once.
    pub fn handle_error(&mut self, now: Instant, query: QueryId) {
        if let Some(idx) = self.index(query) {
            self.next_try(now, idx, Some(DnsError::Unreachable));
        }
    }

    fn index(&self, query: QueryId) -> Option<usize> {
        self.pending.iter().position(|p| p.id == query)
    }

    fn on_reply(&mut self, now: Instant, idx: usize, msg: &Message) {
        let p = &self.pending[idx];
        match interpret(msg, &p.name, p.key.1) {
            Reply::Truncated if p.proto == Proto::Udp => self.send(now, idx, Proto::Tcp),
            Reply::Truncated => self.next_try(now, idx, None),
            Reply::Failed(e) => self.next_try(now, idx, Some(e)),
            Reply::Answer(answer) => {
                self.preferred = p.server;
                let ttl = Duration::from_secs(answer.ttl.into()).min(self.config.max_ttl);
                self.cache
                    .insert(p.key.clone(), Ok(answer.clone()), ttl, now);
                self.finish(idx, Ok(answer));
            }
            Reply::Negative { error, ttl } => {
                self.preferred = p.server;
                if let Some(ttl) = ttl {
                    let ttl = Duration::from_secs(ttl.into()).min(self.config.max_negative_ttl);
                    self.cache
                        .insert(p.key.clone(), Err(error.clone()), ttl, now);
                }
                self.finish(idx, Err(error));
            }
        }
    }

    /// Tries the next server, or ends the lookup when the tries are used,
    /// with `failure` (`None`: a timeout) as its error.
    fn next_try(&mut self, now: Instant, idx: usize, failure: Option<DnsError>) {
        let tries = self.config.attempts.max(count(self.servers.len()));
        let n = self.servers.len().max(1);
        let p = &mut self.pending[idx];
        p.failure = failure;
        if p.tries >= tries {
            let error = p.failure.take().unwrap_or(DnsError::Timeout);
            self.finish(idx, Err(error));
            return;
        }
        p.tries += 1;
        p.server = (p.server + 1) % n;
        self.send(now, idx, Proto::Udp);
    }

    fn send(&mut self, now: Instant, idx: usize, proto: Proto) {
        let msg_id = self.fresh_msg_id();
        let p = &mut self.pending[idx];
        p.msg_id = msg_id;
        p.proto = proto;
        p.deadline = now.checked_add(self.config.timeout).unwrap_or(now);
        let Some(&to) = self.servers.get(p.server) else {
            self.finish(idx, Err(DnsError::NoServers));
            return;
        };
        let bytes = match build_query(msg_id, &p.name, p.key.1) {
            Ok(b) => b,
            Err(e) => {
                self.finish(idx, Err(e));
                return;
            }
        };
        let bytes = match proto {
            Proto::Udp => bytes,
            Proto::Tcp => {
                // A query holds one question of at most 255 + 4 octets
                // after the 12-octet header: it always fits the prefix.
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&bytes);
                framed
            }
        };
        self.transmits.push_back(Transmit {
            query: p.id,
            to,
            proto,
            bytes,
        });
    }

    /// Returns an id no waiting try uses.
    fn fresh_msg_id(&mut self) -> u16 {
        let mut id = 0;
        for _ in 0..16 {
            id = (self.rng.next_u64() >> 48) as u16;
            if !self.pending.iter().any(|p| p.msg_id == id) {
                break;
            }
        }
        id
    }

    fn finish(&mut self, idx: usize, result: Result<Answer, DnsError>) {
        let p = self.pending.swap_remove(idx);
        self.transmits.retain(|t| t.query != p.id);
        self.events.push_back((p.id, result));
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Compares addresses as the same host and port, an IPv4-mapped IPv6
/// address being its IPv4 address.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
mod tests;
