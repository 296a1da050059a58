//! Time as the core sees it: a monotonic `Instant` handed in by the front
//! end for session timers, and `UnixTime` (wall clock, seconds since the
//! epoch) for what is written down: dates in headers and logs, queue times.
//! The core never reads a clock.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Wall-clock time in seconds since 1970-01-01T00:00:00Z, given by the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Formats the time as an RFC 5322 §3.3 date-time in UTC, e.g.
    /// `Tue, 24 Nov 2026 06:15:00 +0000`.
    pub fn rfc5322(self) -> String {
        let c = Civil::from_unix(self.0);
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let weekday = DAYS[((self.0 / 86_400) % 7) as usize];
        // Sized once: `format!` would grow the string two or three times.
        let mut out = String::with_capacity(32);
        let _ = write!(
            out,
            "{weekday}, {} {} {} {:02}:{:02}:{:02} +0000",
            c.day,
            MONTHS[(c.month - 1) as usize],
            c.year,
            c.hour,
            c.minute,
            c.second
        );
        out
    }

    /// Formats the time as RFC 3339 in UTC, e.g. `2026-11-24T06:15:00Z`.
    pub fn rfc3339(self) -> String {
        let c = Civil::from_unix(self.0);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )
    }
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    /// Converts seconds since the epoch to a proleptic Gregorian date
    /// (the well-known days-from-civil inversion).
    fn from_unix(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: rem / 3_600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }
}

/// The session timers: those of RFC 5321 §4.5.3.2, server side, and the
/// pauses of the built-in defences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Waiting for the next command (§4.5.3.2.7, at least 5 minutes).
    Command = 0,
    /// Waiting for the next block of DATA (§4.5.3.2.5 seen from the server).
    Data = 1,
    /// The greet pause: the greeting is sent when it fires.
    Greet = 2,
    /// A held reply (bad-recipient throttle) is sent when it fires.
    Throttle = 3,
}

impl Timer {
    const ALL: [Self; 4] = [Self::Command, Self::Data, Self::Greet, Self::Throttle];
}

/// A fixed table of armed timers; no allocation.
#[derive(Debug, Clone, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; 4],
}

impl TimerTable {
    /// Arms `timer` to fire `after` from `now`.
    pub fn set(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer as usize] = Some(now + after);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = Default::default();
    }

    /// Returns the earliest armed deadline and its timer.
    pub fn next(&self) -> Option<(Instant, Timer)> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.deadlines[t as usize].map(|d| (d, t)))
            .min_by_key(|&(d, _)| d)
    }

    /// Disarms and returns the first timer whose deadline is at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .find(|&t| self.deadlines[t as usize].is_some_and(|d| d <= now))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_known_instants() {
        assert_eq!(UnixTime(0).rfc5322(), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(UnixTime(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(
            UnixTime(1_795_500_900).rfc5322(),
            "Tue, 24 Nov 2026 06:15:00 +0000"
        );
    }

    #[test]
    fn timer_table_returns_earliest_and_expires_once() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::Data, t0, Duration::from_secs(10));
        table.set(Timer::Command, t0, Duration::from_secs(5));
        assert_eq!(
            table.next(),
            Some((t0 + Duration::from_secs(5), Timer::Command))
        );
        assert_eq!(table.take_expired(t0 + Duration::from_secs(4)), None);
        assert_eq!(
            table.take_expired(t0 + Duration::from_secs(5)),
            Some(Timer::Command)
        );
        assert_eq!(table.take_expired(t0 + Duration::from_secs(5)), None);
        assert_eq!(table.next().map(|(_, t)| t), Some(Timer::Data));
    }
}
