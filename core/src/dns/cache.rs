//! The answer cache: answers are kept for their TTL (RFC 1035 §3.2.1,
//! RFC 2181 §8), "there is nothing" for the negative TTL (RFC 2308 §5),
//! both capped, and the cache holds a bounded number of entries.
//!
//! Failures (SERVFAIL, timeouts) are not cached: the next lookup asks
//! again. An ordered map keeps eviction deterministic for simulations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::types::{Answer, DnsError, Rtype};

/// The cache key: the name as asked (lower case) and the type.
pub(super) type Key = (String, Rtype);

struct Entry {
    result: Result<Answer, DnsError>,
    expires: Instant,
}

/// A bounded map from (name, type) to the last answer, until it expires.
pub(super) struct Cache {
    entries: BTreeMap<Key, Entry>,
    capacity: usize,
}

impl Cache {
    /// Returns an empty cache holding at most `capacity` entries (0: none).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            capacity,
        }
    }

    /// Returns the cached result for `key` at `now`, with the answer's TTL
    /// lowered to the seconds it has left; drops it when it has expired.
    pub(super) fn get(&mut self, key: &Key, now: Instant) -> Option<Result<Answer, DnsError>> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.entries.remove(key);
            return None;
        }
        let left = entry.expires.saturating_duration_since(now).as_secs();
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        Some(match &entry.result {
            Ok(answer) => Ok(Answer {
                ttl: left,
                ..answer.clone()
            }),
            Err(e) => Err(e.clone()),
        })
    }

    /// Keeps `result` under `key` for `ttl` from `now`. A zero TTL keeps
    /// nothing (RFC 1035 §3.2.1: "zero values are interpreted to mean that
    /// the RR can only be used for the transaction in progress"). When the
    /// cache is full, expired entries go first, then the one that expires
    /// soonest.
    pub(super) fn insert(
        &mut self,
        key: Key,
        result: Result<Answer, DnsError>,
        ttl: Duration,
        now: Instant,
    ) {
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        let expires = now.checked_add(ttl).unwrap_or(now);
        self.entries.insert(key, Entry { result, expires });
    }

    /// Returns the number of entries, expired ones included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, ttl: u32) -> Answer {
        Answer {
            name: name.into(),
            rtype: Rtype::A,
            canonical: name.into(),
            records: vec![super::super::Data::A([192, 0, 2, 1].into())],
            ttl,
        }
    }

    fn key(name: &str) -> Key {
        (name.into(), Rtype::A)
    }

    #[test]
    fn entries_expire_and_count_down() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert(key("a"), Ok(answer("a", 60)), Duration::from_secs(60), t0);
        let got = c.get(&key("a"), t0 + Duration::from_secs(20));
        assert_eq!(got.map(|r| r.map(|a| a.ttl)), Some(Ok(40)));
        assert!(c.get(&key("a"), t0 + Duration::from_secs(60)).is_none());
        assert_eq!(c.len(), 0, "expired entry dropped");
    }

    #[test]
    fn zero_ttl_is_not_kept() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert(key("a"), Err(DnsError::NxDomain), Duration::ZERO, t0);
        assert!(c.get(&key("a"), t0).is_none());
    }

    #[test]
    fn full_cache_evicts_expired_then_soonest() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = Cache::new(2);
        c.insert(key("long"), Ok(answer("long", 100)), s(100), t0);
        c.insert(key("short"), Ok(answer("short", 10)), s(10), t0);
        c.insert(key("new"), Ok(answer("new", 50)), s(50), t0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&key("short"), t0).is_none(), "soonest to expire went");
        assert!(c.get(&key("long"), t0).is_some());
        c.insert(key("newer"), Err(DnsError::NoData), s(30), t0 + s(60));
        assert!(c.get(&key("new"), t0 + s(60)).is_none(), "expired went");
        assert!(c.get(&key("long"), t0 + s(60)).is_some());
        assert_eq!(
            c.get(&key("newer"), t0 + s(60)),
            Some(Err(DnsError::NoData))
        );
    }
}
