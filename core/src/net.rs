//! IP networks in CIDR notation (`192.168.1.0/24`, `2001:db8::/32`), used
//! for `relay.trusted_networks` and, later, deny lists.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Returns the network of `addr` with `prefix` bits, or `None` when the
    /// prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Returns the network holding only `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Returns the address the network was written with.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Returns the prefix length in bits (32 for one IPv4 host, 0 for all).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Tells whether `ip` lies in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is treated as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    a & mask == b & mask
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpNetError(pub String);

impl fmt::Display for IpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an IP address or CIDR network (write 192.168.1.0/24 or 2001:db8::/32)",
            self.0
        )
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_owned());
        match s.split_once('/') {
            None => s.parse().map(Self::host).map_err(|_| err()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| err())?;
                let prefix: u8 = prefix.parse().map_err(|_| err())?;
                Self::new(addr, prefix).ok_or_else(err)
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn v4_network_contains_its_hosts_only() {
        let n = net("192.168.1.0/24");
        assert!(n.contains("192.168.1.77".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!n.contains("192.168.2.1".parse().unwrap_or_else(|_| unreachable!())));
    }

    #[test]
    fn mapped_v6_matches_v4_network() {
        let n = net("127.0.0.0/8");
        assert!(n.contains(
            "::ffff:127.0.0.1"
                .parse()
                .unwrap_or_else(|_| unreachable!())
        ));
        assert!(!n.contains("::1".parse().unwrap_or_else(|_| unreachable!())));
    }

    #[test]
    fn v6_prefix_and_bad_input() {
        let n = net("2001:db8::/32");
        assert!(n.contains(
            "2001:db8:ffff::1"
                .parse()
                .unwrap_or_else(|_| unreachable!())
        ));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("example.org".parse::<IpNet>().is_err());
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap_or_else(|_| unreachable!())));
    }
}
