//! Idle connections kept for the next message to the same destination
//! (connection reuse: one greeting and EHLO for a burst of messages).
//!
//! After an attempt the connection is parked under its destination; the
//! next attempt there takes it instead of connecting. A parked connection
//! older than [`IDLE_FOR`] is closed with QUIT by [`Pool::expire`], which
//! the remote-delivery role calls as it wakes up; a server that closed it
//! meanwhile is noticed by the next transaction, which then connects
//! afresh.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::wire::Wire;

/// How long a connection waits, parked, for another message. Servers
/// close idle clients after minutes (RFC 5321 §4.5.3.2.7 asks for at
/// least 5); a few seconds cover a burst without holding the peer's slots.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(5);

/// The most connections parked for one destination.
const MAX_PER_DESTINATION: usize = 4;

/// Parked connections by destination.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    parked: Mutex<HashMap<String, Vec<(Wire, Instant)>>>,
}

impl Pool {
    /// Takes a parked connection to `destination`, the most recent first.
    pub(crate) fn take(&self, destination: &str) -> Option<Wire> {
        let mut parked = self.lock();
        let list = parked.get_mut(destination)?;
        let wire = list.pop().map(|(w, _)| w);
        if list.is_empty() {
            parked.remove(destination);
        }
        wire
    }

    /// Parks `wire` for `destination` if it is still usable (else, or when
    /// enough are parked, closes it).
    pub(crate) fn park(&self, destination: &str, wire: Wire) {
        if !wire.is_usable() {
            return;
        }
        let extra = {
            let mut parked = self.lock();
            let list = parked.entry(destination.to_owned()).or_default();
            if list.len() >= MAX_PER_DESTINATION {
                Some(wire)
            } else {
                list.push((wire, Instant::now()));
                None
            }
        };
        if let Some(wire) = extra {
            wire.quit();
        }
    }

    /// Takes out every connection parked longer than [`IDLE_FOR`] (all of
    /// them when `all`), for the caller to close.
    pub(crate) fn expire(&self, all: bool) -> Vec<Wire> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut parked = self.lock();
        parked.retain(|_, list| {
            let (old, young): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, at)| all || now.duration_since(*at) >= IDLE_FOR);
            out.extend(old.into_iter().map(|(w, _)| w));
            *list = young;
            !list.is_empty()
        });
        out
    }

    /// Tells whether any connection is parked.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(Wire, Instant)>>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
