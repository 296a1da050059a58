//! Rate limits around SMTP AUTH and submission, in memory with time passed
//! in: failed attempts per client address and per user name
//! (`limits.auth_failures`; against password guessing, RFC 4954 §15), and
//! messages per authenticated user (`limits.messages_per_user`; a stolen
//! password must not become a spam cannon).
//!
//! Each counter is a fixed window that starts at its first event. The
//! tables are bounded: when one is full, expired windows are dropped; a
//! new key that still finds no room is not tracked by name (the address
//! limit still holds), so a flood of invented user names cannot grow
//! memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use crate::config::Rate;
use crate::refusal::RefuseReason;
use crate::time::UnixTime;

use super::state::client_key;

/// Most keys per table.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: UnixTime,
    count: u32,
}

#[derive(Debug)]
struct Counter<K> {
    rate: Rate,
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            windows: HashMap::new(),
        }
    }

    fn expired(&self, w: &Window, now: UnixTime) -> bool {
        now.0 >= w.start.0.saturating_add(self.rate.per.as_secs().max(1))
    }

    /// Returns the count in `key`'s current window.
    fn count(&self, key: &K, now: UnixTime) -> u32 {
        match self.windows.get(key) {
            Some(w) if !self.expired(w, now) => w.count,
            _ => 0,
        }
    }

    /// Counts one event for `key`.
    fn add(&mut self, key: &K, now: UnixTime) {
        if let Some(w) = self.windows.get(key) {
            if self.expired(w, now) {
                self.windows.remove(key);
            }
        }
        if !self.windows.contains_key(key) && self.windows.len() >= MAX_KEYS {
            let rate = self.rate;
            self.windows
                .retain(|_, w| now.0 < w.start.0.saturating_add(rate.per.as_secs().max(1)));
            if self.windows.len() >= MAX_KEYS {
                return;
            }
        }
        let w = self.windows.entry(key.clone()).or_insert(Window {
            start: now,
            count: 0,
        });
        w.count = w.count.saturating_add(1);
    }

    fn clear(&mut self, key: &K) {
        self.windows.remove(key);
    }

    fn over(&self, key: &K, now: UnixTime) -> bool {
        self.count(key, now) >= self.rate.count
    }
}

/// The AUTH failure and per-user message counters of one server.
#[derive(Debug)]
pub struct AuthLimits {
    by_ip: Counter<IpAddr>,
    by_user: Counter<String>,
    sent: Counter<String>,
}

impl AuthLimits {
    /// Starts empty with the configured rates.
    pub fn new(auth_failures: Rate, messages_per_user: Rate) -> Self {
        Self {
            by_ip: Counter::new(auth_failures),
            by_user: Counter::new(auth_failures),
            sent: Counter::new(messages_per_user),
        }
    }

    /// May `ip` try a password for `user` now? Asked before the (costly)
    /// check, so a locked-out guesser costs no CPU.
    ///
    /// # Errors
    /// [`RefuseReason::AuthTooManyFailures`] naming which limit.
    pub fn check_auth(&self, ip: IpAddr, user: &str, now: UnixTime) -> Result<(), RefuseReason> {
        let rate = self.by_ip.rate;
        let window = crate::config::units::format_duration(rate.per);
        if self.by_ip.over(&client_key(ip), now) {
            return Err(RefuseReason::AuthTooManyFailures(format!(
                "{} failures in {window} from this address",
                rate.count
            )));
        }
        if self.by_user.over(&user.to_ascii_lowercase(), now) {
            return Err(RefuseReason::AuthTooManyFailures(format!(
                "{} failures in {window} for user {user}",
                rate.count
            )));
        }
        Ok(())
    }

    /// Counts a failed attempt against the address and the user name.
    pub fn auth_failed(&mut self, ip: IpAddr, user: &str, now: UnixTime) {
        self.by_ip.add(&client_key(ip), now);
        self.by_user.add(&user.to_ascii_lowercase(), now);
    }

    /// A success clears the user's failures (the address keeps its own).
    pub fn auth_succeeded(&mut self, user: &str) {
        self.by_user.clear(&user.to_ascii_lowercase());
    }

    /// Counts one message of `user`.
    ///
    /// # Errors
    /// [`RefuseReason::UserRateExceeded`] past `limits.messages_per_user`
    /// (the refused message is not counted).
    pub fn check_user_rate(&mut self, user: &str, now: UnixTime) -> Result<(), RefuseReason> {
        let key = user.to_ascii_lowercase();
        if self.sent.over(&key, now) {
            let rate = self.sent.rate;
            return Err(RefuseReason::UserRateExceeded {
                user: key,
                count: rate.count,
                per_secs: rate.per.as_secs(),
            });
        }
        self.sent.add(&key, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits::new(
            Rate {
                count: 3,
                per: Duration::from_secs(600),
            },
            Rate {
                count: 2,
                per: Duration::from_secs(3600),
            },
        )
    }

    const IP: &str = "192.0.2.7";

    #[test]
    fn failures_per_address_trip_then_expire() {
        let mut l = limits();
        let ip: IpAddr = IP.parse().unwrap();
        for i in 0..3 {
            assert!(l.check_auth(ip, &format!("u{i}"), UnixTime(100)).is_ok());
            l.auth_failed(ip, &format!("u{i}"), UnixTime(100));
        }
        let e = l.check_auth(ip, "other", UnixTime(101)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "too many failed authentications (3 failures in 10m from this address)"
        );
        assert!(l.check_auth(ip, "other", UnixTime(700)).is_ok());
        // Another address is free.
        assert!(l
            .check_auth("192.0.2.8".parse().unwrap(), "x", UnixTime(101))
            .is_ok());
    }

    #[test]
    fn failures_per_user_trip_from_any_address() {
        let mut l = limits();
        for i in 1..=3 {
            let ip: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            l.auth_failed(ip, "Alice@example.test", UnixTime(5));
        }
        let e = l
            .check_auth(
                "203.0.113.1".parse().unwrap(),
                "alice@example.test",
                UnixTime(6),
            )
            .unwrap_err();
        assert!(e.to_string().contains("for user alice@example.test"), "{e}");
        assert_eq!(e.reply().code, 421);
        l.auth_succeeded("alice@example.test");
        assert!(l
            .check_auth(
                "203.0.113.1".parse().unwrap(),
                "alice@example.test",
                UnixTime(6)
            )
            .is_ok());
    }

    #[test]
    fn messages_per_user() {
        let mut l = limits();
        assert!(l.check_user_rate("a@x", UnixTime(0)).is_ok());
        assert!(l.check_user_rate("A@x", UnixTime(1)).is_ok());
        let e = l.check_user_rate("a@x", UnixTime(2)).unwrap_err();
        assert_eq!(e.reply().code, 451);
        assert!(l.check_user_rate("b@x", UnixTime(2)).is_ok());
        assert!(l.check_user_rate("a@x", UnixTime(3600)).is_ok());
    }

    #[test]
    fn invented_user_names_do_not_grow_memory() {
        let mut l = limits();
        let ip: IpAddr = IP.parse().unwrap();
        for i in 0..(MAX_KEYS + 50) {
            l.auth_failed(ip, &format!("user{i}"), UnixTime(1));
        }
        assert!(l.by_user.windows.len() <= MAX_KEYS);
        assert!(l.check_auth(ip, "x", UnixTime(1)).is_err());
    }
}
