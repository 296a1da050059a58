//! What a lookup asks for and what it gives back: record types, records,
//! answers and the reasons a lookup found nothing.
//!
//! Names are written in lower case, without the trailing dot (the root is
//! written `.`), so that they compare as DNS compares them (RFC 4343 §3:
//! case-insensitive).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The record types hato asks for (RFC 1035 §3.2.2, RFC 3596 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rtype {
    /// An IPv4 address (RFC 1035 §3.4.1).
    A,
    /// An IPv6 address (RFC 3596 §2.2).
    Aaaa,
    /// A mail exchanger (RFC 1035 §3.3.9).
    Mx,
    /// A name for an address, under in-addr.arpa or ip6.arpa (RFC 1035 §3.3.12).
    Ptr,
    /// Text (RFC 1035 §3.3.14): DNSBL reasons, SPF.
    Txt,
}

impl fmt::Display for Rtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Mx => "MX",
            Self::Ptr => "PTR",
            Self::Txt => "TXT",
        })
    }
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger: lower preference values are tried first. The null
    /// MX of RFC 7505 has preference 0 and exchange `.`.
    Mx {
        /// The preference (RFC 5321 §5.1: lowest first).
        preference: u16,
        /// The host name of the exchanger.
        exchange: String,
    },
    /// A host name (a PTR record).
    Ptr(String),
    /// The character-strings of one TXT record, joined without separator
    /// (as RFC 7208 §3.3 joins them).
    Txt(Vec<u8>),
}

/// The records found for a name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name that was asked for.
    pub name: String,
    /// The type that was asked for.
    pub rtype: Rtype,
    /// The name the records belong to, after following CNAMEs (RFC 1034
    /// §3.6.2); the same as `name` when there were none.
    pub canonical: String,
    /// The records, in the order the server gave them; never empty.
    pub records: Vec<Data>,
    /// Seconds the answer may still be used: the smallest TTL of the
    /// records and CNAMEs that led to them, counting down in the cache.
    pub ttl: u32,
}

impl Answer {
    /// Returns the addresses of the A and AAAA records.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.records.iter().filter_map(|d| match d {
            Data::A(a) => Some(IpAddr::V4(*a)),
            Data::Aaaa(a) => Some(IpAddr::V6(*a)),
            _ => None,
        })
    }

    /// Returns the host names of the PTR records.
    pub fn ptr_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.records.iter().filter_map(|d| match d {
            Data::Ptr(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// Returns the TXT records.
    pub fn texts(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.records.iter().filter_map(|d| match d {
            Data::Txt(t) => Some(t.as_slice()),
            _ => None,
        })
    }
}

/// Why a lookup gave no records.
///
/// [`NxDomain`](Self::NxDomain) and [`NoData`](Self::NoData) are answers
/// ("there is nothing", cached for the zone's negative TTL, RFC 2308); the
/// others are failures that a later try may not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3, NXDOMAIN; RFC 1035 §4.1.1).
    NxDomain,
    /// The name exists but has no record of the type asked for (NODATA,
    /// RFC 2308 §2.2).
    NoData,
    /// The servers answered SERVFAIL (RCODE 2): they could not find out.
    ServFail,
    /// The servers answered with another error code (FORMERR, NOTIMP,
    /// REFUSED, ...): the number, per RFC 1035 §4.1.1 and RFC 6895.
    Rcode(u16),
    /// No usable answer came before the last try timed out.
    Timeout,
    /// The servers could not be reached (port unreachable, connection
    /// refused or reset) and none answered.
    Unreachable,
    /// The name cannot be asked for (not a domain name, too long).
    InvalidName(String),
    /// No DNS server is configured.
    NoServers,
}

impl DnsError {
    /// Tells whether this is an authoritative "there is nothing" (NXDOMAIN
    /// or NODATA), rather than a failure to find out.
    pub fn is_negative(&self) -> bool {
        matches!(self, Self::NxDomain | Self::NoData)
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NxDomain => f.write_str("no such domain (NXDOMAIN)"),
            Self::NoData => f.write_str("no records of that type (NODATA)"),
            Self::ServFail => f.write_str("server failure (SERVFAIL)"),
            Self::Rcode(n) => write!(f, "the server answered with error code {n}"),
            Self::Timeout => f.write_str("no answer from the DNS servers in time"),
            Self::Unreachable => f.write_str("the DNS servers could not be reached"),
            Self::InvalidName(n) => write!(f, "{n:?} is not a valid domain name"),
            Self::NoServers => f.write_str("no DNS server configured"),
        }
    }
}

impl std::error::Error for DnsError {}
