//! Sizes (`512K`, `10M`), durations (`30s`, `5m`, `5d`) and rates (`20/5s`),
//! as written in `hato.toml`.
//!
//! The units are deliberately few and case-strict where confusion is
//! possible: `m` is minutes in a duration, and sizes use `K`, `M`, `G`
//! (powers of 1024) with no `B`.

use std::time::Duration;

const KIB: u64 = 1024;
const SIZE_UNITS: [(char, u64); 3] = [('G', KIB * KIB * KIB), ('M', KIB * KIB), ('K', KIB)];
const TIME_UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Reads a size such as `512K`, `10M`, `1G` or a plain number of bytes
/// (`K` = 1024 bytes; `k`, `m`, `g` are accepted too).
///
/// # Errors
/// Says how to write a size, e.g. for `"10 MB"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("\"{s}\" is not a size; write a number with K, M or G, e.g. \"10M\"");
    let t = s.trim();
    let (digits, factor) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let up = c.to_ascii_uppercase();
            let (_, factor) = SIZE_UNITS.iter().find(|(u, _)| *u == up).ok_or_else(bad)?;
            (&t[..i], *factor)
        }
        _ => (t, 1),
    };
    let n = number(digits).ok_or_else(bad)?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// Reads a duration such as `30s`, `5m`, `2h`, `5d` (seconds, minutes,
/// hours, days). A plain number is refused: its unit would be a guess.
///
/// # Errors
/// Says how to write a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if number(t).is_some() {
        return Err(format!(
            "\"{s}\" has no unit; write \"{t}s\" for seconds, or use m, h or d, e.g. \"5m\""
        ));
    }
    let bad = || {
        format!(
            "\"{s}\" is not a duration; write a number with s, m, h or d, e.g. \"30s\" or \"5m\""
        )
    };
    let Some((i, unit)) = t.char_indices().last() else {
        return Err(bad());
    };
    let (_, secs) = TIME_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(bad)?;
    let n = number(&t[..i]).ok_or_else(bad)?;
    n.checked_mul(*secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("\"{s}\" is too long"))
}

/// Reads a rate such as `20/5s`: at most 20 events in 5 seconds.
///
/// # Errors
/// Says how to write a rate; the count and the period must not be zero.
pub fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let bad = || {
        format!(
            "\"{s}\" is not a rate; write a count, a slash and a duration, e.g. \"20/5s\" \
             (20 in 5 seconds)"
        )
    };
    let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let count = number(count.trim())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(bad)?;
    let period = parse_duration(period.trim()).map_err(|_| bad())?;
    if count == 0 || period.is_zero() {
        return Err(format!(
            "\"{s}\" allows nothing; the count and the duration must be at least 1, e.g. \"20/5s\""
        ));
    }
    Ok((count, period))
}

/// Writes `bytes` in the largest unit that divides it exactly (`10M`),
/// or as plain bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .find(|(_, f)| bytes >= *f && bytes.is_multiple_of(*f))
        .map_or_else(|| bytes.to_string(), |(u, f)| format!("{}{u}", bytes / f))
}

/// Writes `d` in the largest unit that divides it exactly (`5m`, `90s`).
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    TIME_UNITS
        .iter()
        .find(|(_, f)| secs >= *f && secs.is_multiple_of(*f))
        .map_or_else(|| format!("{secs}s"), |(u, f)| format!("{}{u}", secs / f))
}

/// A plain decimal number: ASCII digits only, no sign, no spaces.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_k_m_g_as_powers_of_1024() {
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1024 * 1024 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
    }

    #[test]
    fn bad_size_says_how_to_write_one() {
        let e = parse_size("10 MB").unwrap_err();
        assert_eq!(
            e,
            "\"10 MB\" is not a size; write a number with K, M or G, e.g. \"10M\""
        );
        for bad in ["", "M", "1.5M", "-1", "10T", "10KB", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
        let e = parse_duration("300").unwrap_err();
        assert!(e.contains("no unit") && e.contains("\"300s\""), "{e}");
        for bad in ["", "s", "5M", "1h30m", "5 m", "5min", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_are_count_slash_duration() {
        assert_eq!(parse_rate("20/5s"), Ok((20, Duration::from_secs(5))));
        assert_eq!(parse_rate("100/1h"), Ok((100, Duration::from_secs(3600))));
        assert!(parse_rate("20").unwrap_err().contains("e.g. \"20/5s\""));
        assert!(parse_rate("20/5").is_err());
        assert!(parse_rate("0/5s").unwrap_err().contains("at least 1"));
        assert!(parse_rate("20/0s").is_err());
    }

    #[test]
    fn formats_use_the_largest_exact_unit() {
        assert_eq!(format_size(10 * 1024 * 1024), "10M");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(86_400 * 5)), "5d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
