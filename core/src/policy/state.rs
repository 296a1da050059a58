//! The policy state that sessions share and that survives a restart: the
//! per-host message rate (`limits.messages_per_host`), penalties after a
//! directory-harvest attempt (`limits.bad_recipients_penalty`), spam-trap
//! blocks (`deny.trap_block`), greylisting triplets (`[greylisting]`) and
//! the Message-ID / recipient pairs already delivered
//! (`limits.duplicate_window`).
//!
//! Pure: the front end passes the wall-clock time in as [`UnixTime`]
//! (whole seconds), wraps one [`PolicyState`] in a mutex, and writes
//! [`PolicyState::encode`] to `data_dir/state/policy` now and then.
//!
//! # Keys
//! Rates, penalties and trap blocks are kept per client address; an IPv6
//! client counts as its /64 (one site usually holds a whole /64, so
//! counting single IPv6 addresses would let one host dodge every limit).
//! An IPv4-mapped IPv6 address counts as the IPv4 address. Greylisting
//! keys on the client's /24 (IPv4) or /64 (IPv6), because big senders
//! retry from another machine of the same pool. Greylisting triplets and
//! duplicate pairs are stored as 128-bit FNV-1a digests of the addresses
//! and Message-IDs, so an entry takes the same few bytes however long the
//! strings are.
//!
//! # Bounds
//! Every table holds at most [`PolicySettings::table_cap`] entries
//! (default [`DEFAULT_TABLE_CAP`]). Entries expire on access; when a full
//! table takes a new entry, expired entries go first, then the one that
//! would expire soonest (for tables whose entries all live equally long,
//! the oldest). That way a flood of new greylisting triplets evicts other
//! new triplets, not the senders that already passed.
//!
//! # Time
//! Times are whole seconds. A greylisted triplet passes only once more
//! than `delay` seconds of the clock have ticked since its first attempt
//! (so at least `delay` has really passed, whatever fraction of a second
//! the first attempt came at).
//!
//! # File format
//! [`PolicyState::encode`] writes one entry per line after a version
//! line; times are Unix seconds, `-` means none:
//!
//! ```text
//! hato-policy 1
//! rate <client> <count> <per-secs> <level> <updated> <blocked-until>
//! penalty <client> <until>
//! trap <client> <until>
//! grey <network> <digest> <first-seen> <passed-until or ->
//! dup <digest> <until>
//! ```
//!
//! `<client>` is an IPv4 address or the first address of an IPv6 /64;
//! `<network>` the first address of the /24 or /64; `<digest>` 32
//! lower-case hex digits. A rate line keeps the bucket's level only while
//! the configured rate is unchanged. [`PolicyState::decode`] skips lines it
//! cannot read, drops expired entries, and shortens any block that lasts
//! longer than the setting in force allows, so a damaged or hand-edited
//! file never blocks anyone for longer than the configuration says.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::config::{Config, Greylisting, Rate};
use crate::net::IpNet;
use crate::refusal::RefuseReason;
use crate::time::UnixTime;

/// How many entries each table holds at most, by default.
pub const DEFAULT_TABLE_CAP: usize = 100_000;

/// The first line of the file [`PolicyState::encode`] writes.
pub const VERSION_LINE: &str = "hato-policy 1";

/// The settings the state works with, taken from the [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// `limits.messages_per_host`.
    pub messages_per_host: Rate,
    /// `limits.rate_cooldown`.
    pub rate_cooldown: Duration,
    /// `limits.bad_recipients_penalty`.
    pub penalty: Duration,
    /// `deny.trap_block`.
    pub trap_block: Duration,
    /// The address entries of `deny.from`.
    pub deny_nets: Vec<IpNet>,
    /// `[greylisting]`.
    pub greylisting: Greylisting,
    /// `limits.duplicate_window`; zero turns duplicate suppression off.
    pub duplicate_window: Duration,
    /// Entries per table at most.
    pub table_cap: usize,
}

impl PolicySettings {
    /// Takes the settings from `cfg`, with [`DEFAULT_TABLE_CAP`].
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            messages_per_host: cfg.limits.messages_per_host,
            rate_cooldown: cfg.limits.rate_cooldown,
            penalty: cfg.limits.bad_recipients_penalty,
            trap_block: cfg.deny.trap_block,
            deny_nets: cfg
                .deny
                .from
                .iter()
                .filter_map(|d| match d {
                    crate::config::DenyFrom::Net(n) => Some(*n),
                    crate::config::DenyFrom::Name(_) => None,
                })
                .collect(),
            greylisting: cfg.greylisting,
            duplicate_window: cfg.limits.duplicate_window,
            table_cap: DEFAULT_TABLE_CAP,
        }
    }
}

/// What [`PolicyState::decode`] made of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Entries taken in.
    pub loaded: usize,
    /// Entries left out because they had expired.
    pub expired: usize,
    /// Lines that could not be read (including every line of a file whose
    /// version line is missing or unknown).
    pub skipped: usize,
}

/// The state shared by all sessions. See the module documentation.
#[derive(Debug, Clone)]
pub struct PolicyState {
    settings: PolicySettings,
    rates: Table<IpAddr, RateEntry>,
    penalties: Table<IpAddr, Until>,
    trap_blocks: Table<IpAddr, Until>,
    greylist: Table<(IpAddr, u128), GreyEntry>,
    duplicates: Table<u128, Until>,
    dirty: bool,
}

impl PolicyState {
    /// Returns an empty state.
    pub fn new(settings: PolicySettings) -> Self {
        let cap = settings.table_cap.max(1);
        Self {
            settings,
            rates: Table::new(cap),
            penalties: Table::new(cap),
            trap_blocks: Table::new(cap),
            greylist: Table::new(cap),
            duplicates: Table::new(cap),
            dirty: false,
        }
    }

    /// Returns the settings in force.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// May `ip` connect at all? Checks the address entries of `deny.from`,
    /// spam-trap blocks and penalties, in that order.
    ///
    /// # Errors
    /// [`RefuseReason::DeniedClient`] (naming the entry),
    /// [`RefuseReason::TrapBlocked`] or [`RefuseReason::Penalized`].
    pub fn check_connect(&mut self, ip: IpAddr, now: UnixTime) -> Result<(), RefuseReason> {
        if let Some(net) = self.settings.deny_nets.iter().find(|n| n.contains(ip)) {
            return Err(RefuseReason::DeniedClient(net.to_string()));
        }
        let key = client_key(ip);
        if self.trap_blocks.get(&key, now).is_some() {
            return Err(RefuseReason::TrapBlocked);
        }
        if self.penalties.get(&key, now).is_some() {
            return Err(RefuseReason::Penalized);
        }
        Ok(())
    }

    /// Counts one message (a MAIL command) from `ip` against
    /// `limits.messages_per_host`. A client over the rate is refused, and
    /// keeps being refused for `limits.rate_cooldown`; refused attempts do
    /// not count.
    ///
    /// # Errors
    /// [`RefuseReason::RateExceeded`].
    pub fn check_message_rate(&mut self, ip: IpAddr, now: UnixTime) -> Result<(), RefuseReason> {
        let rate = self.settings.messages_per_host;
        let refusal = RefuseReason::RateExceeded {
            count: rate.count,
            per_secs: rate.per.as_secs(),
        };
        let key = client_key(ip);
        let mut entry = self
            .rates
            .take(&key, now)
            .unwrap_or_else(|| RateEntry::new(rate, now));
        if entry.blocked_until > now {
            self.rates.put(key, entry, now);
            return Err(refusal);
        }
        entry.leak(now);
        self.dirty = true;
        if entry.take_one() {
            self.rates.put(key, entry, now);
            Ok(())
        } else {
            entry.blocked_until = later(now, self.settings.rate_cooldown);
            self.rates.put(key, entry, now);
            Err(refusal)
        }
    }

    /// Penalises `ip` (it reached `limits.bad_recipients_limit`): it is
    /// refused at connect for `limits.bad_recipients_penalty`. A zero
    /// penalty does nothing.
    pub fn penalize(&mut self, ip: IpAddr, now: UnixTime) {
        let until = later(now, self.settings.penalty);
        block(&mut self.penalties, client_key(ip), until, now);
        self.dirty = true;
    }

    /// Blocks `ip` (it wrote to a spam trap) for `deny.trap_block`.
    pub fn trap_hit(&mut self, ip: IpAddr, now: UnixTime) {
        let until = later(now, self.settings.trap_block);
        block(&mut self.trap_blocks, client_key(ip), until, now);
        self.dirty = true;
    }

    /// Returns how long `ip` stays blocked for a spam trap, if it is.
    pub fn trap_blocked_until(&mut self, ip: IpAddr, now: UnixTime) -> Option<UnixTime> {
        self.trap_blocks.get(&client_key(ip), now).map(|u| u.0)
    }

    /// Returns how long `ip` stays penalised, if it is.
    pub fn penalized_until(&mut self, ip: IpAddr, now: UnixTime) -> Option<UnixTime> {
        self.penalties.get(&client_key(ip), now).map(|u| u.0)
    }

    /// Greylisting: is the triplet (client /24 or /64, sender, recipient)
    /// let through? On first sight it is recorded and refused; a retry more
    /// than `delay` later and within `retry_window` of the first attempt
    /// passes, and from then on the triplet passes at once for `pass_for`
    /// after its latest success. A retry after the window counts as a first
    /// sight. Always `Ok` when greylisting is off. `from` and `to` are the
    /// paths (brackets optional; case does not matter).
    ///
    /// # Errors
    /// [`RefuseReason::Greylisted`].
    pub fn check_greylist(
        &mut self,
        ip: IpAddr,
        from: &str,
        to: &str,
        now: UnixTime,
    ) -> Result<(), RefuseReason> {
        let g = self.settings.greylisting;
        if !g.enabled {
            return Ok(());
        }
        let key = (grey_net(ip), digest(&[&path_key(from), &path_key(to)]));
        self.dirty = true;
        match self.greylist.take(&key, now) {
            Some(e) if e.passed_until.is_some() || now > later(e.first, g.delay) => {
                let passed = GreyEntry {
                    first: e.first,
                    passed_until: Some(later(now, g.pass_for)),
                    retry_window: g.retry_window,
                };
                self.greylist.put(key, passed, now);
                Ok(())
            }
            Some(e) => {
                self.greylist.put(key, e, now);
                Err(RefuseReason::Greylisted)
            }
            None => {
                let first = GreyEntry {
                    first: now,
                    passed_until: None,
                    retry_window: g.retry_window,
                };
                self.greylist.put(key, first, now);
                Err(RefuseReason::Greylisted)
            }
        }
    }

    /// Duplicate suppression: tells whether a message with `message_id`
    /// went to `recipient` within `limits.duplicate_window` (and records
    /// this one when not). The window counts from the first copy. Always
    /// `false` when the window is zero or the Message-ID is empty.
    pub fn seen_before(&mut self, message_id: &str, recipient: &str, now: UnixTime) -> bool {
        let window = self.settings.duplicate_window;
        if window.is_zero() || message_id.is_empty() {
            return false;
        }
        let key = digest(&[message_id, &recipient.to_ascii_lowercase()]);
        if self.duplicates.get(&key, now).is_some() {
            return true;
        }
        self.duplicates.put(key, Until(later(now, window)), now);
        self.dirty = true;
        false
    }

    /// Removes every expired entry (before [`PolicyState::encode`]).
    pub fn purge(&mut self, now: UnixTime) {
        self.rates.purge(now);
        self.penalties.purge(now);
        self.trap_blocks.purge(now);
        self.greylist.purge(now);
        self.duplicates.purge(now);
    }

    /// Returns how many entries the tables hold in all.
    pub fn len(&self) -> usize {
        self.rates.len()
            + self.penalties.len()
            + self.trap_blocks.len()
            + self.greylist.len()
            + self.duplicates.len()
    }

    /// Tells whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells whether the state changed since the last
    /// [`PolicyState::take_dirty`] (or since it was decoded).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Returns whether the state changed, and clears the mark: the caller
    /// is about to save it. Call [`PolicyState::mark_dirty`] if the save fails.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Marks the state as changed (a save failed and must be tried again).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Writes the state in the file format of the module documentation,
    /// entries of each table in the order they expire.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 + self.len() * 48);
        out.push_str(VERSION_LINE);
        out.push('\n');
        for (ip, e) in self.rates.iter() {
            let _ = writeln!(
                out,
                "rate {ip} {} {} {} {} {}",
                e.rate.count,
                e.rate.per.as_secs(),
                e.level,
                e.updated.0,
                e.blocked_until.0
            );
        }
        for (ip, u) in self.penalties.iter() {
            let _ = writeln!(out, "penalty {ip} {}", u.0 .0);
        }
        for (ip, u) in self.trap_blocks.iter() {
            let _ = writeln!(out, "trap {ip} {}", u.0 .0);
        }
        for ((net, d), e) in self.greylist.iter() {
            let _ = write!(out, "grey {net} {d:032x} {} ", e.first.0);
            match e.passed_until {
                Some(p) => {
                    let _ = writeln!(out, "{}", p.0);
                }
                None => out.push_str("-\n"),
            }
        }
        for (d, u) in self.duplicates.iter() {
            let _ = writeln!(out, "dup {d:032x} {}", u.0 .0);
        }
        out
    }

    /// Reads a file written by [`PolicyState::encode`] into this state
    /// (entries already present for the same key are replaced). Never
    /// panics: lines it cannot read are skipped and counted, expired
    /// entries are dropped, and blocks longer than the settings in force
    /// allow are shortened to them. The state is not marked changed.
    pub fn decode(&mut self, text: &str, now: UnixTime) -> Decoded {
        let mut stats = Decoded::default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        if lines.next().map(str::trim) != Some(VERSION_LINE) {
            stats.skipped = text.lines().filter(|l| !l.trim().is_empty()).count();
            return stats;
        }
        for line in lines {
            match self.decode_line(line, now) {
                Some(true) => stats.loaded += 1,
                Some(false) => stats.expired += 1,
                None => stats.skipped += 1,
            }
        }
        self.dirty = false;
        stats
    }

    /// Takes one line in; `Some(false)` when it had expired, `None` when
    /// it cannot be read.
    fn decode_line(&mut self, line: &str, now: UnixTime) -> Option<bool> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let time = |s: &str| s.parse::<u64>().ok().map(UnixTime);
        let s = &self.settings;
        match f.as_slice() {
            ["rate", ip, count, per, level, updated, blocked] => {
                let key = client_key(ip.parse().ok()?);
                let (count, per): (u32, u64) = (count.parse().ok()?, per.parse().ok()?);
                let (level, updated, blocked) =
                    (level.parse::<u64>().ok()?, time(updated)?, time(blocked)?);
                let rate = s.messages_per_host;
                let mut entry = RateEntry::new(rate, updated.min(now));
                if rate.count == count && rate.per.as_secs() == per {
                    entry.level = level.min(entry.capacity());
                }
                entry.blocked_until = blocked.min(later(now, s.rate_cooldown));
                Some(self.rates.put(key, entry, now))
            }
            ["penalty", ip, until] => {
                let until = time(until)?.min(later(now, s.penalty));
                Some(
                    self.penalties
                        .put(client_key(ip.parse().ok()?), Until(until), now),
                )
            }
            ["trap", ip, until] => {
                let until = time(until)?.min(later(now, s.trap_block));
                Some(
                    self.trap_blocks
                        .put(client_key(ip.parse().ok()?), Until(until), now),
                )
            }
            ["grey", net, d, first, passed] => {
                let key = (grey_net(net.parse().ok()?), parse_digest(d)?);
                let g = s.greylisting;
                let passed_until = match *passed {
                    "-" => None,
                    p => Some(time(p)?.min(later(now, g.pass_for))),
                };
                let entry = GreyEntry {
                    first: time(first)?.min(now),
                    passed_until,
                    retry_window: g.retry_window,
                };
                Some(self.greylist.put(key, entry, now))
            }
            ["dup", d, until] => {
                let until = time(until)?.min(later(now, s.duplicate_window));
                Some(self.duplicates.put(parse_digest(d)?, Until(until), now))
            }
            _ => None,
        }
    }
}

/// `now + d`, saturating.
fn later(now: UnixTime, d: Duration) -> UnixTime {
    UnixTime(now.0.saturating_add(d.as_secs()))
}

/// Blocks `key` until `until`, keeping a longer block already there.
fn block(table: &mut Table<IpAddr, Until>, key: IpAddr, until: UnixTime, now: UnixTime) {
    let until = match table.take(&key, now) {
        Some(Until(old)) => old.max(until),
        None => until,
    };
    table.put(key, Until(until), now);
}

/// The key a client's address counts under: the IPv4 address (also when
/// mapped into IPv6), or the first address of the IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The greylisting network of a client: its /24 (IPv4) or /64 (IPv6),
/// written as the network's first address.
pub fn grey_net(ip: IpAddr) -> IpAddr {
    match client_key(ip) {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        v6 => v6,
    }
}

/// A path as greylisting compares it: without brackets, lower case.
fn path_key(path: &str) -> String {
    let p = path.trim();
    let p = p.strip_prefix('<').unwrap_or(p);
    let p = p.strip_suffix('>').unwrap_or(p);
    p.to_ascii_lowercase()
}

/// 128-bit FNV-1a over the parts, each followed by a 0 byte (so that
/// ("ab", "c") and ("a", "bc") differ).
fn digest(parts: &[&str]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for part in parts {
        for &b in part.as_bytes().iter().chain(&[0u8]) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

fn parse_digest(s: &str) -> Option<u128> {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(s, 16).ok())
        .flatten()
}

/// An entry that lapses at some time.
trait Expiring {
    /// The first second at which the entry no longer counts.
    fn expires(&self) -> UnixTime;
}

/// A block that ends at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Until(UnixTime);

impl Expiring for Until {
    fn expires(&self) -> UnixTime {
        self.0
    }
}

/// A leaky bucket of one client's messages, in integer units: each
/// message adds `per` (seconds) to the level, the level drains by `count`
/// per second, and a message that would lift it above `count * per` is
/// over the rate. That is `count` messages in any `per` seconds, and
/// exact in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateEntry {
    rate: Rate,
    level: u64,
    updated: UnixTime,
    blocked_until: UnixTime,
}

impl RateEntry {
    fn new(rate: Rate, now: UnixTime) -> Self {
        Self {
            rate,
            level: 0,
            updated: now,
            blocked_until: UnixTime(0),
        }
    }

    fn cost(&self) -> u64 {
        self.rate.per.as_secs().max(1)
    }

    fn drain(&self) -> u64 {
        u64::from(self.rate.count.max(1))
    }

    fn capacity(&self) -> u64 {
        self.drain().saturating_mul(self.cost())
    }

    fn leak(&mut self, now: UnixTime) {
        let secs = now.0.saturating_sub(self.updated.0);
        self.level = self.level.saturating_sub(secs.saturating_mul(self.drain()));
        self.updated = self.updated.max(now);
    }

    /// Adds one message if it fits.
    fn take_one(&mut self) -> bool {
        let next = self.level.saturating_add(self.cost());
        if next > self.capacity() {
            return false;
        }
        self.level = next;
        true
    }
}

impl Expiring for RateEntry {
    fn expires(&self) -> UnixTime {
        let empty = self
            .updated
            .0
            .saturating_add(self.level.div_ceil(self.drain()));
        UnixTime(empty.max(self.blocked_until.0))
    }
}

/// A greylisting triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GreyEntry {
    first: UnixTime,
    passed_until: Option<UnixTime>,
    retry_window: Duration,
}

impl Expiring for GreyEntry {
    fn expires(&self) -> UnixTime {
        self.passed_until
            .unwrap_or_else(|| later(self.first, self.retry_window))
    }
}

/// A bounded map whose entries expire: a hash map for lookups and an
/// ordered index by expiry for purging and eviction.
#[derive(Debug, Clone)]
struct Table<K, V> {
    map: HashMap<K, V>,
    by_expiry: BTreeSet<(UnixTime, K)>,
    cap: usize,
}

impl<K: Hash + Ord + Copy, V: Expiring> Table<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            by_expiry: BTreeSet::new(),
            cap,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Returns the live entry of `key`, removing it when it has expired.
    fn get(&mut self, key: &K, now: UnixTime) -> Option<&V> {
        let expires = self.map.get(key)?.expires();
        if expires <= now {
            self.remove(key);
            return None;
        }
        self.map.get(key)
    }

    /// Removes and returns the live entry of `key`.
    fn take(&mut self, key: &K, now: UnixTime) -> Option<V> {
        let v = self.remove(key)?;
        (v.expires() > now).then_some(v)
    }

    /// Stores `value` under `key` unless it has expired already; returns
    /// whether it was stored. A full table first drops its expired
    /// entries, then the entry that would expire soonest.
    fn put(&mut self, key: K, value: V, now: UnixTime) -> bool {
        self.remove(&key);
        let expires = value.expires();
        if expires <= now {
            return false;
        }
        if self.map.len() >= self.cap {
            self.purge(now);
        }
        while self.map.len() >= self.cap {
            let Some((_, k)) = self.by_expiry.pop_first() else {
                break;
            };
            self.map.remove(&k);
        }
        self.by_expiry.insert((expires, key));
        self.map.insert(key, value);
        true
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let v = self.map.remove(key)?;
        self.by_expiry.remove(&(v.expires(), *key));
        Some(v)
    }

    /// Drops every entry that has expired by `now`.
    fn purge(&mut self, now: UnixTime) {
        while let Some(&(expires, key)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.by_expiry.pop_first();
            self.map.remove(&key);
        }
    }

    /// The entries in the order they expire.
    fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.by_expiry
            .iter()
            .filter_map(|(_, k)| self.map.get_key_value(k))
    }
}

#[cfg(test)]
mod tests;
