//! Connection counting: `limits.max_connections` in all and
//! `limits.max_connections_per_host` per client address. Over either,
//! the front end answers 421 4.7.0 and closes before reading a command.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::Limits;
use crate::refusal::RefuseReason;

/// Live connections, in all and per client address.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    total: usize,
    per_host: HashMap<IpAddr, usize>,
}

impl ConnectionTable {
    /// Admits a new connection from `ip`, or says why not.
    ///
    /// # Errors
    /// [`RefuseReason::TooManyConnections`] or
    /// [`RefuseReason::TooManyConnectionsFromHost`]; nothing is counted then.
    pub fn admit(&mut self, ip: IpAddr, limits: &Limits) -> Result<(), RefuseReason> {
        if self.total >= limits.max_connections {
            return Err(RefuseReason::TooManyConnections(limits.max_connections));
        }
        let n = self.per_host.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_host {
            return Err(RefuseReason::TooManyConnectionsFromHost(
                limits.max_connections_per_host,
            ));
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Forgets a connection admitted earlier.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_host.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Returns how many connections are live.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_host_and_global_limits_hold_and_release_frees() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_host: 2,
            ..Limits::default()
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut t = ConnectionTable::default();
        assert!(t.admit(a, &limits).is_ok());
        assert!(t.admit(a, &limits).is_ok());
        assert_eq!(
            t.admit(a, &limits),
            Err(RefuseReason::TooManyConnectionsFromHost(2))
        );
        assert!(t.admit(b, &limits).is_ok());
        assert_eq!(
            t.admit(b, &limits),
            Err(RefuseReason::TooManyConnections(3))
        );
        t.release(a);
        assert!(t.admit(b, &limits).is_ok());
        assert_eq!(t.total(), 3);
        t.release("192.0.2.99".parse().unwrap());
        assert_eq!(t.total(), 3, "unknown address changes nothing");
    }
}
