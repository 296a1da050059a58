//! DNS for hato, sans-IO: queries are built and answers parsed with
//! hickory-proto (RFC 1035), a [`Resolver`] state machine sends them over
//! UDP with TCP on truncation and keeps a TTL cache, and helpers compute
//! the names that SMTP needs (DNSBL, reverse DNS) and the order of MX hosts
//! (RFC 5321 §5.1).
//!
//! Nothing here opens a socket or reads a clock: the front end moves the
//! bytes and passes `now`; query ids and the MX shuffle come from a seed.
//!
//! # The run loop (front end)
//!
//! ```
//! use std::time::Instant;
//! use hato_core::dns::{Proto, Resolver, Rtype};
//!
//! let mut resolver = Resolver::new(vec!["127.0.0.1:53".parse().unwrap()], 42);
//! let query = resolver.lookup("example.org", Rtype::Mx, Instant::now());
//! while let Some(t) = resolver.poll_transmit() {
//!     // UDP: send `t.bytes` to `t.to`, then feed each datagram read back
//!     // to `handle_udp(now, from, &datagram)`.
//!     // TCP: connect to `t.to`, write `t.bytes` (already length-prefixed),
//!     // read the 2-octet length and the message, and feed the message to
//!     // `handle_tcp(now, t.query, &message)`.
//!     // On a send, connect or read error: `handle_error(now, t.query)`.
//!     assert_eq!((t.query, t.proto), (query, Proto::Udp));
//! }
//! // Block until a datagram arrives or `poll_timeout()` passes, then call
//! // `handle_udp` or `handle_timeout`, and take finished lookups:
//! while let Some((_id, result)) = resolver.poll_event() {
//!     let _ = result; // Result<Answer, DnsError>
//! }
//! ```
//!
//! # Files
//! - `message`: building queries and reading answers (CNAME chains,
//!   NXDOMAIN versus NODATA, negative TTLs).
//! - `resolver`: the state machine (retries, servers, truncation, timers).
//! - `cache`: the bounded TTL cache.
//! - `names`: DNSBL and reverse-DNS query names ([`dnsbl_name`],
//!   [`reverse_name`]).
//! - [`mx`]: which hosts to try for a domain, in which order.
//! - [`Rng`]: the seeded random numbers for query ids and the MX shuffle.

mod cache;
mod message;
pub mod mx;
mod names;
mod resolver;
mod rng;
#[cfg(test)]
mod testutil;
mod types;

pub use names::{dnsbl_name, reverse_name};
pub use resolver::{Proto, QueryId, Resolver, ResolverConfig, Transmit};
pub use rng::Rng;
pub use types::{Answer, Data, DnsError, Rtype};
