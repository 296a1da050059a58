//! The scheduler's settings: retry back-off, queue lifetime, delay
//! warning and concurrency limits (RFC 5321 §4.5.4.1: retry at least 30
//! minutes apart after the first failures, give up after 4–5 days).

use std::time::Duration;

use crate::time::UnixTime;

/// How the delivery scheduler paces attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Waits after the 1st, 2nd, ... failed attempt of a recipient; the
    /// last entry repeats. The same table paces a destination after
    /// consecutive connection failures. Default 5m, 10m, 20m, 40m, 1h.
    pub backoff: Vec<Duration>,
    /// How long after reception an undelivered recipient is bounced.
    /// Default 5 days.
    pub max_lifetime: Duration,
    /// When the sender is told the message is delayed (once per message,
    /// never for a null sender). Default 4 hours; `None` disables it.
    pub delay_warning: Option<Duration>,
    /// Attempts (connections) running at once to one destination. Default 5.
    pub per_destination: usize,
    /// Attempts running at once in total. Default 20.
    pub global: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&crate::config::Delivery::default())
    }
}

impl Settings {
    /// The settings the `[delivery]` table asks for.
    pub fn from_config(d: &crate::config::Delivery) -> Self {
        Self {
            backoff: d.retry.clone(),
            max_lifetime: d.max_lifetime,
            delay_warning: d.delay_warning,
            per_destination: d.connections_per_destination,
            global: d.max_connections,
        }
    }

    /// Returns the wait after the `failures`-th consecutive failure
    /// (1-based; 0 waits nothing). An empty table waits an hour.
    pub fn backoff_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let i = usize::try_from(failures - 1).unwrap_or(usize::MAX);
        match self.backoff.get(i).or(self.backoff.last()) {
            Some(&d) => d,
            None => Duration::from_secs(3600),
        }
    }
}

/// Returns `t` plus `d` (whole seconds), saturating.
pub(super) fn after(t: UnixTime, d: Duration) -> UnixTime {
    UnixTime(t.0.saturating_add(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table_doubles_then_stays_hourly() {
        let s = Settings::default();
        let mins: Vec<u64> = (0..8).map(|n| s.backoff_after(n).as_secs() / 60).collect();
        assert_eq!(mins, [0, 5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(s.backoff_after(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn an_empty_table_waits_an_hour() {
        let s = Settings {
            backoff: Vec::new(),
            ..Settings::default()
        };
        assert_eq!(s.backoff_after(1), Duration::from_secs(3600));
    }

    #[test]
    fn after_saturates() {
        assert_eq!(
            after(UnixTime(u64::MAX - 1), Duration::from_secs(5)),
            UnixTime(u64::MAX)
        );
    }
}
