//! A blocking DNS client that drives the sans-IO [`Resolver`] of
//! `hato_core::dns` over real sockets: a UDP socket per lookup (an
//! ephemeral port of the server's address family, so every lookup has a
//! fresh source port, RFC 5452 §9.2), TCP when an answer is truncated, and
//! the core's timeouts.
//!
//! One [`DnsClient`] is shared by every connection (`Send + Sync`): the
//! resolver and its cache sit behind a mutex that is held only to feed it
//! and poll it, never across a network wait. Each calling thread waits on
//! its own socket. `hato-smol` calls it through `smol::unblock`.
//!
//! Servers come from `delivery.dns_servers`, or else from the `nameserver`
//! lines of /etc/resolv.conf ([`system_servers`]).

#[cfg(test)]
pub(crate) mod fake;
mod resolv_conf;
mod socket;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hato_core::config::Config;
use hato_core::dns::{Answer, DnsError, Proto, QueryId, Resolver, ResolverConfig, Rtype, Transmit};

pub use resolv_conf::{parse_resolv_conf, system_servers};
use socket::{tcp_exchange, Recv, UdpPair};

/// A DNS stub resolver for blocking code; see the module docs.
pub struct DnsClient {
    servers: Vec<SocketAddr>,
    config: ResolverConfig,
    shared: Mutex<Shared>,
}

/// The resolver and what it produced for lookups of other threads.
struct Shared {
    resolver: Resolver,
    outbox: BTreeMap<QueryId, Vec<Transmit>>,
    done: BTreeMap<QueryId, Result<Answer, DnsError>>,
}

impl Shared {
    /// Sorts the resolver's output by lookup.
    fn pump(&mut self) {
        while let Some(t) = self.resolver.poll_transmit() {
            self.outbox.entry(t.query).or_default().push(t);
        }
        while let Some((q, result)) = self.resolver.poll_event() {
            self.done.insert(q, result);
        }
    }

    fn forget(&mut self, query: QueryId) {
        self.resolver.cancel(query);
        self.outbox.remove(&query);
        self.done.remove(&query);
    }
}

impl std::fmt::Debug for DnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsClient")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl DnsClient {
    /// Returns a client asking `servers` in order, with the default
    /// timeouts (2 s per try, 3 tries) and cache.
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        Self::with_config(servers, ResolverConfig::default())
    }

    /// Returns a client with its own timeouts, tries and cache limits.
    pub fn with_config(servers: Vec<SocketAddr>, config: ResolverConfig) -> Self {
        let resolver = Resolver::with_config(servers.clone(), seed(), config);
        Self {
            servers,
            config,
            shared: Mutex::new(Shared {
                resolver,
                outbox: BTreeMap::new(),
                done: BTreeMap::new(),
            }),
        }
    }

    /// Returns a client for the servers of `delivery.dns_servers`, or for
    /// those of /etc/resolv.conf when that list is empty.
    pub fn for_servers(configured: &[SocketAddr]) -> Self {
        if configured.is_empty() {
            Self::new(system_servers())
        } else {
            Self::new(configured.to_vec())
        }
    }

    /// Returns the client of a server: `delivery.dns_servers`, or the
    /// servers of /etc/resolv.conf when that list is empty.
    pub fn from_config(cfg: &Config) -> Self {
        Self::for_servers(&cfg.delivery.dns_servers)
    }

    /// Returns the servers asked, most preferred first.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Looks up the `rtype` records of `name`, blocking until the answer,
    /// the cache, or the last try's timeout (at most the tries times the
    /// timeout, 6 s by default, plus TCP when an answer is truncated).
    ///
    /// # Errors
    /// NXDOMAIN and NODATA ("there is nothing", see
    /// [`DnsError::is_negative`]) and the failures: SERVFAIL (or another
    /// error code), a timeout, unreachable servers, an invalid name, no
    /// servers.
    pub fn lookup(&self, name: &str, rtype: Rtype) -> Result<Answer, DnsError> {
        let query = self.lock().resolver.lookup(name, rtype, Instant::now());
        let _forget = Forget {
            client: self,
            query,
        };
        let mut udp = UdpPair::default();
        loop {
            let (done, sends, deadline) = {
                let mut s = self.lock();
                s.pump();
                let done = s.done.remove(&query);
                let sends = s.outbox.remove(&query).unwrap_or_default();
                (done, sends, s.resolver.poll_timeout())
            };
            if let Some(result) = done {
                return result;
            }
            if !sends.is_empty() {
                for t in sends {
                    self.send(&mut udp, t);
                }
                continue;
            }
            let Some(deadline) = deadline else {
                // Nothing waits, yet no answer: cannot happen; end safely.
                return Err(DnsError::Timeout);
            };
            let now = Instant::now();
            if deadline <= now {
                self.lock().resolver.handle_timeout(now);
                continue;
            }
            match udp.recv(deadline - now) {
                Recv::Datagram { from, bytes } => {
                    self.lock()
                        .resolver
                        .handle_udp(Instant::now(), from, &bytes);
                }
                Recv::Refused => self.lock().resolver.handle_error(Instant::now(), query),
                Recv::TimedOut => {}
            }
        }
    }

    /// Looks up the A and AAAA records of `name` and returns all the
    /// addresses, IPv4 first.
    ///
    /// # Errors
    /// When neither type has records: NXDOMAIN if either said so, else the
    /// AAAA lookup's failure when the A lookup found nothing, else the A
    /// lookup's error.
    pub fn lookup_ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.lookup(name, Rtype::A);
        if matches!(v4, Err(DnsError::NxDomain)) {
            return Err(DnsError::NxDomain);
        }
        let v6 = self.lookup(name, Rtype::Aaaa);
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in [&v4, &v6].into_iter().flatten() {
            ips.extend(a.ips());
        }
        if !ips.is_empty() {
            return Ok(ips);
        }
        match (v4, v6) {
            (Err(DnsError::NoData), Err(e)) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(_)) => Err(DnsError::NoData),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one transmit of this thread's lookup. UDP goes out on the
    /// lookup's socket; TCP is a whole exchange, fed back at once.
    fn send(&self, udp: &mut UdpPair, t: Transmit) {
        match t.proto {
            Proto::Udp => {
                if udp.send(t.to, &t.bytes).is_err() {
                    self.lock().resolver.handle_error(Instant::now(), t.query);
                }
            }
            Proto::Tcp => match tcp_exchange(t.to, &t.bytes, self.config.timeout) {
                Ok(answer) => self
                    .lock()
                    .resolver
                    .handle_tcp(Instant::now(), t.query, &answer),
                Err(_) => self.lock().resolver.handle_error(Instant::now(), t.query),
            },
        }
    }
}

/// Forgets a lookup whose caller unwound (or gave up), so that nothing of
/// it stays in the shared maps.
struct Forget<'a> {
    client: &'a DnsClient,
    query: QueryId,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.client.lock().forget(self.query);
    }
}

/// A seed for the query ids: std's per-process random hash keys, mixed
/// with the time and the process id.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}
