//! Answers the session's AUTH questions (RFC 4954) off the session: the
//! password is checked against the users file with argon2id, at most
//! [`MAX_CONCURRENT`] checks at a time in the whole server (each costs
//! about 19 MiB and real CPU), after the failure limits of
//! `limits.auth_failures` (a locked-out guesser costs nothing). It fails
//! closed: when the users file cannot be read, AUTH gets 454 and nobody
//! relays. Also counts `limits.messages_per_user`.

use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use hato_core::config::Config;
use hato_core::directory::UserEntry;
use hato_core::policy::AuthLimits;
use hato_core::refusal::RefuseReason;

use crate::log::unix_now;
use crate::store::{users, UsersCache};

/// Password checks running at once, server-wide.
pub const MAX_CONCURRENT: usize = 2;

/// The AUTH checker of one server.
#[derive(Debug)]
pub struct Authenticator {
    running: Mutex<usize>,
    freed: Condvar,
    limits: Mutex<AuthLimits>,
}

/// One of the [`MAX_CONCURRENT`] slots; released when dropped.
struct Permit<'a>(&'a Authenticator);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.running) -= 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Authenticator {
    /// Starts with empty counters.
    pub fn new(cfg: &Config) -> Self {
        Self {
            running: Mutex::new(0),
            freed: Condvar::new(),
            limits: Mutex::new(AuthLimits::new(
                cfg.limits.auth_failures,
                cfg.limits.messages_per_user,
            )),
        }
    }

    /// Waits for a free slot (blocking: call off the async executor).
    fn permit(&self) -> Permit<'_> {
        let mut running = lock(&self.running);
        while *running >= MAX_CONCURRENT {
            running = self
                .freed
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        Permit(self)
    }

    /// Checks `password` for `user` connecting from `ip`. Blocking.
    ///
    /// # Errors
    /// [`RefuseReason::AuthTooManyFailures`] (421) before any check past
    /// the limits; [`RefuseReason::AuthUnavailable`] (454) when the users
    /// file cannot be read; [`RefuseReason::AuthFailed`] (535) for a wrong
    /// password, an unknown user or a receive-only mailbox.
    pub fn verify(
        &self,
        users_file: &UsersCache,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(), RefuseReason> {
        lock(&self.limits).check_auth(ip, user, unix_now())?;
        if !users_file.is_healthy() {
            return Err(RefuseReason::AuthUnavailable(
                "the users file cannot be read".into(),
            ));
        }
        let entry = users_file.current().get(user).cloned();
        let ok = {
            let _permit = self.permit();
            match &entry {
                Some(e) => users::verify(e, password),
                // Spend the same time on an unknown user, so that the
                // answer's delay does not tell which users exist.
                None => {
                    let _ = users::verify(decoy(), password);
                    false
                }
            }
        };
        let mut limits = lock(&self.limits);
        if ok {
            limits.auth_succeeded(user);
            Ok(())
        } else {
            limits.auth_failed(ip, user, unix_now());
            Err(RefuseReason::AuthFailed(user.to_owned()))
        }
    }

    /// Counts one message of an authenticated `user`.
    ///
    /// # Errors
    /// [`RefuseReason::UserRateExceeded`] past `limits.messages_per_user`.
    pub fn check_user_rate(&self, user: &str) -> Result<(), RefuseReason> {
        lock(&self.limits).check_user_rate(user, unix_now())
    }
}

/// A users-file entry with a real hash that no password opens in practice.
fn decoy() -> &'static UserEntry {
    static DECOY: OnceLock<UserEntry> = OnceLock::new();
    DECOY.get_or_init(|| UserEntry {
        address: "decoy@invalid".into(),
        password: users::hash_password("decoy password, never used").unwrap_or_default(),
        rest: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::testdir::TestDir;

    fn setup() -> (TestDir, UsersCache, Authenticator) {
        let dir = TestDir::new("auth");
        users::add(dir.path(), "alice@example.test", Some("right")).unwrap();
        let cache = UsersCache::new(dir.path()).unwrap();
        let mut cfg = Config::defaults("mail.example.test");
        cfg.limits.auth_failures.count = 2;
        (dir, cache, Authenticator::new(&cfg))
    }

    const IP: &str = "192.0.2.1";

    #[test]
    fn right_and_wrong_passwords_then_the_limit() {
        let (_d, cache, auth) = setup();
        let ip: IpAddr = IP.parse().unwrap();
        assert_eq!(
            auth.verify(&cache, ip, "alice@example.test", "right"),
            Ok(())
        );
        let e = auth.verify(&cache, ip, "alice@example.test", "wrong");
        assert_eq!(
            e,
            Err(RefuseReason::AuthFailed("alice@example.test".into()))
        );
        let e = auth.verify(&cache, ip, "nobody@example.test", "x");
        assert!(matches!(e, Err(RefuseReason::AuthFailed(_))));
        // Two failures from this address: even the right password is refused.
        let e = auth.verify(&cache, ip, "alice@example.test", "right");
        assert!(
            matches!(e, Err(RefuseReason::AuthTooManyFailures(_))),
            "{e:?}"
        );
    }

    #[test]
    fn an_unreadable_users_file_fails_closed() {
        let (d, cache, auth) = setup();
        let path = users::path(d.path());
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = auth.verify(&cache, IP.parse().unwrap(), "alice@example.test", "right");
        assert!(matches!(e, Err(RefuseReason::AuthUnavailable(_))), "{e:?}");
        assert_eq!(e.unwrap_err().reply().code, 454);
    }

    #[test]
    fn at_most_two_checks_run_at_once() {
        let auth = Arc::new(Authenticator::new(&Config::defaults("m.example.test")));
        let peak = Arc::new(Mutex::new((0usize, 0usize)));
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let (auth, peak) = (Arc::clone(&auth), Arc::clone(&peak));
                std::thread::spawn(move || {
                    let _p = auth.permit();
                    {
                        let mut p = peak.lock().unwrap();
                        p.0 += 1;
                        p.1 = p.1.max(p.0);
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    peak.lock().unwrap().0 -= 1;
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.lock().unwrap().1, MAX_CONCURRENT);
    }
}
