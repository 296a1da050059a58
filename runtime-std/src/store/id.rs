//! Queue ids: the wall clock in microseconds, bumped so that it never
//! repeats within a process, followed by the process id; both written in
//! base32hex (`0-9A-V`), which sorts like the numbers it encodes. 11
//! characters of time cover the years up to about 3100, 5 of pid cover
//! Linux's largest `pid_max` (2^22). Unique across processes (different
//! pids) and restarts (the clock has moved on), short, file-name safe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
const TIME_CHARS: u32 = 11;
const PID_CHARS: u32 = 5;

/// The last time value handed out by this process.
static LAST_MICROS: AtomicU64 = AtomicU64::new(0);

/// This process's id, asked once (`getpid` is a system call each time;
/// hato never forks, so it cannot change).
static PID: OnceLock<u32> = OnceLock::new();

/// Returns a new queue id (16 characters).
pub(crate) fn new_queue_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    // Strictly increasing within the process, even when called twice in
    // one microsecond or when the clock steps back.
    let prev = LAST_MICROS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    let micros = now.max(prev.saturating_add(1));
    let mut id = String::with_capacity((TIME_CHARS + PID_CHARS) as usize);
    push_base32(&mut id, micros, TIME_CHARS);
    push_base32(
        &mut id,
        u64::from(*PID.get_or_init(std::process::id)),
        PID_CHARS,
    );
    id
}

/// Appends the low `chars * 5` bits of `value`, most significant first.
fn push_base32(out: &mut String, value: u64, chars: u32) {
    for i in (0..chars).rev() {
        let digit = (value >> (5 * i)) & 31;
        out.push(char::from(ALPHABET[digit as usize]));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use hato_core::queue::is_valid_queue_id;

    use super::*;

    #[test]
    fn ids_are_unique_valid_and_sorted_in_creation_order() {
        let ids: Vec<String> = (0..10_000).map(|_| new_queue_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 16 && is_valid_queue_id(id)));
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_from_many_threads_are_unique() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_000).map(|_| new_queue_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
    }

    #[test]
    fn base32_is_fixed_width_and_ordered() {
        let enc = |v| {
            let mut s = String::new();
            push_base32(&mut s, v, 4);
            s
        };
        assert_eq!(enc(0), "0000");
        assert_eq!(enc(31), "000V");
        assert_eq!(enc(32), "0010");
        assert!(enc(1000) < enc(1001));
    }
}
