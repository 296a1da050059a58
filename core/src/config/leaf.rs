//! The leaf values of `hato.toml`: each is read from a TOML string or
//! integer by its own parser, whose error says what to write instead.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::{names, units, DenyFrom, HopHost, LocalMethod, MailboxOwner, NextHop, Rate};
use crate::net::IpNet;

/// A leaf value, read from a TOML string or integer by its own parser.
pub(super) trait Leaf: Sized {
    /// What to write, completing "write …": `a size such as "10M"`.
    const EXPECTING: &'static str;

    fn from_text(s: &str) -> Result<Self, String>;

    fn from_int(n: i64) -> Result<Self, String> {
        Err(format!("found the number {n}; write {}", Self::EXPECTING))
    }

    fn from_bool(b: bool) -> Result<Self, String> {
        Err(format!("found {b}; write {}", Self::EXPECTING))
    }
}

struct LeafVisitor<T>(PhantomData<T>);

impl<T: Leaf> Visitor<'_> for LeafVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        T::from_text(s).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        T::from_int(n).map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<T, E> {
        T::from_bool(b).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        let n = i64::try_from(n).map_err(|_| E::custom(format!("{n} is too large")))?;
        T::from_int(n).map_err(E::custom)
    }
}

macro_rules! leaf {
    ($($ty:ident),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(LeafVisitor(PhantomData))
            }
        }
    )*};
}
leaf!(
    Host,
    Mailbox,
    AliasKey,
    Text,
    Listener,
    Net,
    Size,
    Dur,
    Count,
    RateLeaf,
    Flag,
    DenyEntry,
    SenderEntry
);

leaf!(DnsServer, Hop, Port, LocalMethod, MailboxOwner);

/// A host or domain name, normalized.
pub(super) struct Host(pub(super) String);

impl Leaf for Host {
    const EXPECTING: &'static str = "a host name in quotes, such as \"mail.example.org\"";
    fn from_text(s: &str) -> Result<Self, String> {
        names::host_name(s).map(Self)
    }
}

/// A mail address `local@domain`, normalized.
pub(super) struct Mailbox(pub(super) String);

impl Leaf for Mailbox {
    const EXPECTING: &'static str = "an address in quotes, such as \"alice@example.org\"";
    fn from_text(s: &str) -> Result<Self, String> {
        names::mailbox(s).map(Self)
    }
}

/// The left side of an alias: a local part (in every local domain) or a
/// whole address, normalized.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct AliasKey(pub(super) String);

impl Leaf for AliasKey {
    const EXPECTING: &'static str =
        "a local part such as abuse, or an address such as \"sales@example.org\"";
    fn from_text(s: &str) -> Result<Self, String> {
        if s.contains('@') {
            names::mailbox(s).map(Self)
        } else {
            names::local_part(s).map(Self)
        }
    }
}

/// Free text, such as a path.
pub(super) struct Text(pub(super) String);

impl Leaf for Text {
    const EXPECTING: &'static str = "a path in quotes, such as \"/var/lib/hato\"";
    fn from_text(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_owned()))
    }
}

/// A listening address `ip:port`.
pub(super) struct Listener(pub(super) SocketAddr);

impl Leaf for Listener {
    const EXPECTING: &'static str =
        "an IP address and port in quotes, such as \"0.0.0.0:25\" or \"[::1]:25\"";
    fn from_text(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse() {
            return Ok(Self(a));
        }
        Err(match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => format!("\"{s}\" has no port; write e.g. \"{ip}:25\""),
            Ok(IpAddr::V6(ip)) => {
                format!("\"{s}\" has no port; write the address in brackets, e.g. \"[{ip}]:25\"")
            }
            Err(_) => format!(
                "\"{s}\" is not an IP address and port; write e.g. \"0.0.0.0:25\" (every \
                 IPv4 address), \"127.0.0.1:25\" (this machine only) or \"[::1]:25\" (IPv6); \
                 host names are not allowed"
            ),
        })
    }
}

/// An IP address or CIDR network.
pub(super) struct Net(pub(super) IpNet);

impl Leaf for Net {
    const EXPECTING: &'static str =
        "an IP address or network in quotes, such as \"192.168.1.0/24\"";
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map(Self).map_err(|e| e.to_string())
    }
}

/// A size in bytes.
pub(super) struct Size(pub(super) u64);

impl Leaf for Size {
    const EXPECTING: &'static str = "a size in quotes, such as \"10M\" (K, M or G)";
    fn from_text(s: &str) -> Result<Self, String> {
        units::parse_size(s).map(Self)
    }
    fn from_int(n: i64) -> Result<Self, String> {
        u64::try_from(n)
            .map(Self)
            .map_err(|_| format!("{n} is negative; write a size such as \"10M\""))
    }
}

/// A duration; a bare number is refused.
pub(super) struct Dur(pub(super) Duration);

impl Leaf for Dur {
    const EXPECTING: &'static str = "a duration in quotes, such as \"30s\" or \"5m\"";
    fn from_text(s: &str) -> Result<Self, String> {
        units::parse_duration(s).map(Self)
    }
    fn from_int(n: i64) -> Result<Self, String> {
        Err(format!(
            "the number {n} has no unit; write \"{n}s\" for seconds, or use m, h or d, e.g. \"5m\""
        ))
    }
}

/// A count, written as a bare number.
pub(super) struct Count(pub(super) usize);

impl Leaf for Count {
    const EXPECTING: &'static str = "a whole number without quotes, such as 100";
    fn from_text(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            Err(format!(
                "\"{s}\" is in quotes; write the number without quotes: {s}"
            ))
        } else {
            Err(format!(
                "\"{s}\" is not a number; write {}",
                Self::EXPECTING
            ))
        }
    }
    fn from_int(n: i64) -> Result<Self, String> {
        usize::try_from(n)
            .map(Self)
            .map_err(|_| format!("{n} is negative; write {}", Self::EXPECTING))
    }
}

/// A rate such as `20/5s`.
pub(super) struct RateLeaf(pub(super) Rate);

impl Leaf for RateLeaf {
    const EXPECTING: &'static str = "a rate in quotes, such as \"20/5s\" (20 in 5 seconds)";
    fn from_text(s: &str) -> Result<Self, String> {
        let (count, per) = units::parse_rate(s)?;
        Ok(Self(Rate { count, per }))
    }
    fn from_int(n: i64) -> Result<Self, String> {
        Err(format!(
            "the number {n} has no period; write a count, a slash and a duration in quotes, \
             e.g. \"{n}/5s\" ({n} in 5 seconds)"
        ))
    }
}

/// `true` or `false`.
pub(super) struct Flag(pub(super) bool);

impl Leaf for Flag {
    const EXPECTING: &'static str = "true or false, without quotes";
    fn from_text(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => {
                Err(format!("\"{s}\" is in quotes; write {b} without quotes"))
            }
            _ => Err(format!(
                "\"{s}\" is not true or false; write true or false, without quotes"
            )),
        }
    }
    fn from_bool(b: bool) -> Result<Self, String> {
        Ok(Self(b))
    }
}

/// A `deny.from` entry: an IP address or network, or a host or domain name.
pub(super) struct DenyEntry(pub(super) DenyFrom);

impl Leaf for DenyEntry {
    const EXPECTING: &'static str = "an IP address, network or host name in quotes, such as \
                                     \"203.0.113.0/24\" or \"spam.example.net\"";
    fn from_text(s: &str) -> Result<Self, String> {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self(DenyFrom::Net(net)));
        }
        let looks_like_address = s.contains([':', '/'])
            || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        if looks_like_address {
            return Err(format!(
                "\"{s}\" is not an IP address or network; write e.g. \"203.0.113.7\", \
                 \"203.0.113.0/24\" or \"2001:db8::/32\""
            ));
        }
        names::host_name(s).map(|n| Self(DenyFrom::Name(n)))
    }
}

/// A `deny.senders` entry: an address, or a domain (`@` in front allowed).
pub(super) struct SenderEntry(pub(super) String);

impl Leaf for SenderEntry {
    const EXPECTING: &'static str =
        "an address or a domain in quotes, such as \"spammer@example.net\" or \"example.net\"";
    fn from_text(s: &str) -> Result<Self, String> {
        match s.strip_prefix('@') {
            Some(domain) => names::host_name(domain).map(Self),
            None if s.contains('@') => names::mailbox(s).map(Self),
            None => names::host_name(s).map(Self),
        }
    }
}

/// A TOML array whose elements keep their spans.
pub(super) struct List<T>(pub(super) Vec<Spanned<T>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list in square brackets, such as [\"first\", \"second\"] or []")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The `[aliases]` table in file order, so that two keys which differ only
/// in case are both seen (and refused).
#[derive(Default)]
pub(super) struct Aliases(pub(super) Vec<(Spanned<AliasKey>, Spanned<Mailbox>)>);

impl<'de> Deserialize<'de> for Aliases {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Aliases;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table: [aliases] on a line of its own, then lines such as \
                     abuse = \"alice@example.org\" below it",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Aliases, A::Error> {
                let mut items = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    items.push(pair);
                }
                Ok(Aliases(items))
            }
        }
        d.deserialize_map(V)
    }
}

/// A DNS server: an IP address, with a port when it is not 53.
pub(super) struct DnsServer(pub(super) SocketAddr);

impl Leaf for DnsServer {
    const EXPECTING: &'static str =
        "an IP address in quotes, such as \"192.0.2.53\" or \"[2001:db8::53]:5353\"";
    fn from_text(s: &str) -> Result<Self, String> {
        let addr = match s.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => s.parse::<SocketAddr>().map_err(|_| {
                format!(
                    "\"{s}\" is not an IP address; write e.g. \"192.0.2.53\", \"192.0.2.53:5353\" \
                     or \"[2001:db8::53]:5353\" (host names are not allowed: hato would need DNS \
                     to find its DNS server)"
                )
            })?,
        };
        if addr.port() == 0 {
            return Err(format!("\"{s}\" has port 0; leave the port out for 53"));
        }
        Ok(Self(addr))
    }
}

/// A host mail goes to directly: `"mail.example.net"`, `"10.0.0.5"`,
/// either with `:port`, or `"[2001:db8::25]:2525"`.
pub(super) struct Hop(pub(super) NextHop);

impl Leaf for Hop {
    const EXPECTING: &'static str =
        "a host in quotes, such as \"mail.example.net\", \"10.0.0.5:25\" or \"[2001:db8::5]:25\"";
    fn from_text(s: &str) -> Result<Self, String> {
        let bad_port = || format!("\"{s}\" has a port that is not a number from 1 to 65535");
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port()),
            Ok(p) => Ok(p),
        };
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self(NextHop {
                host: HopHost::Ip(ip),
                port: None,
            }));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| {
                format!(
                    "\"{s}\" opens a bracket it does not close; write e.g. \"[2001:db8::5]:25\""
                )
            })?;
            let ip = inside
                .parse::<IpAddr>()
                .map_err(|_| format!("\"{inside}\" in brackets is not an IP address"))?;
            let port = match after {
                "" => None,
                p => Some(port(p.strip_prefix(':').ok_or_else(bad_port)?)?),
            };
            return Ok(Self(NextHop {
                host: HopHost::Ip(ip),
                port,
            }));
        }
        let (name, p) = match s.rsplit_once(':') {
            Some((name, p)) => (name, Some(port(p)?)),
            None => (s, None),
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Self(NextHop {
                host: HopHost::Ip(ip),
                port: p,
            }));
        }
        let name = names::host_name(name)?;
        Ok(Self(NextHop {
            host: HopHost::Name(name),
            port: p,
        }))
    }
}

/// A TCP port, written as a bare number.
pub(super) struct Port(pub(super) u16);

impl Leaf for Port {
    const EXPECTING: &'static str = "a port number without quotes, such as 25";
    fn from_text(s: &str) -> Result<Self, String> {
        Err(format!(
            "\"{s}\" is in quotes; write the port without quotes, such as 25"
        ))
    }
    fn from_int(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err(format!("{n} is not a port; write a number from 1 to 65535")),
        }
    }
}

/// The `[routes]` table in file order: domain → host.
#[derive(Default)]
pub(super) struct Routes(pub(super) Vec<(Spanned<Host>, Spanned<Hop>)>);

impl<'de> Deserialize<'de> for Routes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Routes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table: [routes] on a line of its own, then lines such as \
                     \"example.net\" = \"10.0.0.5:25\" below it",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Routes, A::Error> {
                let mut items = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    items.push(pair);
                }
                Ok(Routes(items))
            }
        }
        d.deserialize_map(V)
    }
}
