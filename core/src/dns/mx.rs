//! Which hosts to try for a mail domain, and in which order (RFC 5321
//! §5.1, RFC 7505).
//!
//! - MX hosts are tried in ascending preference; hosts of equal preference
//!   in random order ("the sender-SMTP MUST randomize them to spread the
//!   load", RFC 5321 §5.1), from the caller's seeded [`Rng`].
//! - No MX record (NODATA) means the implicit MX: the domain itself, with
//!   preference 0, reached through its A/AAAA records (RFC 5321 §5.1).
//! - A single MX of preference 0 and exchange `.` is the null MX of RFC
//!   7505: the domain accepts no mail, and the sender fails the message at
//!   once (RFC 7505 §4.1; bounce with 5.1.10).
//! - When one of the hosts is this server itself, it and every host of
//!   equal or higher preference value are dropped (RFC 5321 §5.1); when
//!   nothing is left, the domain leads only back to us: a configuration
//!   error, not a reason to retry.

use super::rng::Rng;
use super::types::{Answer, Data, DnsError};

/// One host to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The host name (lower case, no trailing dot): resolve it to its
    /// A and AAAA records.
    pub name: String,
    /// Its preference (0 for the implicit MX).
    pub preference: u16,
}

/// How to deliver to a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPlan {
    /// Try these hosts in this order.
    Hosts {
        /// The hosts, most preferred first; never empty.
        hosts: Vec<MxHost>,
        /// The domain has no MX records: the one host is the domain
        /// itself, and "no address" for it is final (RFC 5321 §5.1).
        implicit: bool,
    },
    /// The domain publishes the null MX (RFC 7505): it accepts no mail.
    /// Fail its recipients at once (5.1.10).
    NullMx,
    /// Every usable MX host is this server itself (or less preferred than
    /// it): mail would loop. Fail with that reason.
    OnlyOurselves,
}

/// Works out the hosts to try for `domain` from the result of its MX
/// lookup. `ourselves` holds this server's own names (its host name and
/// any other name it answers MX for), compared without case.
///
/// # Errors
/// The lookup's error, except NODATA (which is the implicit MX): NXDOMAIN
/// says the domain does not exist (fail the recipient); the others are
/// temporary (try again later).
pub fn plan(
    domain: &str,
    mx: &Result<Answer, DnsError>,
    ourselves: &[String],
    rng: &mut Rng,
) -> Result<MxPlan, DnsError> {
    let answer = match mx {
        Ok(answer) => answer,
        Err(DnsError::NoData) => {
            let name = normalize(domain);
            if is_ours(&name, ourselves) {
                return Ok(MxPlan::OnlyOurselves);
            }
            return Ok(MxPlan::Hosts {
                hosts: vec![MxHost {
                    name,
                    preference: 0,
                }],
                implicit: true,
            });
        }
        Err(e) => return Err(e.clone()),
    };
    let mut hosts: Vec<MxHost> = answer
        .records
        .iter()
        .filter_map(|d| match d {
            Data::Mx {
                preference,
                exchange,
            } if exchange != "." => Some(MxHost {
                name: normalize(exchange),
                preference: *preference,
            }),
            _ => None,
        })
        .collect();
    if hosts.is_empty() {
        // Only "." exchanges: the null MX (a malformed set of several
        // null MX records means the same).
        return Ok(MxPlan::NullMx);
    }
    hosts.sort_by_key(|h| h.preference);
    for group in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
        rng.shuffle(group);
    }
    if let Some(own) = hosts
        .iter()
        .filter(|h| is_ours(&h.name, ourselves))
        .map(|h| h.preference)
        .min()
    {
        hosts.retain(|h| h.preference < own);
        if hosts.is_empty() {
            return Ok(MxPlan::OnlyOurselves);
        }
    }
    Ok(MxPlan::Hosts {
        hosts,
        implicit: false,
    })
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_ours(name: &str, ourselves: &[String]) -> bool {
    ourselves.iter().any(|o| normalize(o) == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Rtype;

    fn answer(records: &[(u16, &str)]) -> Result<Answer, DnsError> {
        Ok(Answer {
            name: "example.org".into(),
            rtype: Rtype::Mx,
            canonical: "example.org".into(),
            records: records
                .iter()
                .map(|(p, e)| Data::Mx {
                    preference: *p,
                    exchange: (*e).into(),
                })
                .collect(),
            ttl: 300,
        })
    }

    fn names(plan: &MxPlan) -> Vec<&str> {
        match plan {
            MxPlan::Hosts { hosts, .. } => hosts.iter().map(|h| h.name.as_str()).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn hosts(records: &[(u16, &str)], seed: u64) -> Vec<String> {
        let plan = plan("example.org", &answer(records), &[], &mut Rng::new(seed))
            .unwrap_or_else(|e| panic!("{e}"));
        names(&plan).into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn hosts_come_in_ascending_preference() {
        assert_eq!(
            hosts(
                &[(20, "c.example"), (5, "A.example."), (10, "b.example")],
                1
            ),
            ["a.example", "b.example", "c.example"]
        );
    }

    #[test]
    fn equal_preferences_are_shuffled_by_the_seed() {
        let records = [(10, "x.example"), (10, "y.example"), (20, "z.example")];
        let mut orders = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let h = hosts(&records, seed);
            assert_eq!(h[2], "z.example", "the less preferred stays last");
            orders.insert(h);
        }
        assert_eq!(orders.len(), 2, "both orders of x and y appear");
        assert_eq!(hosts(&records, 5), hosts(&records, 5), "seeded: replays");
    }

    #[test]
    fn no_mx_is_the_implicit_mx() {
        let p = plan(
            "Example.ORG.",
            &Err(DnsError::NoData),
            &[],
            &mut Rng::new(0),
        );
        assert_eq!(
            p,
            Ok(MxPlan::Hosts {
                hosts: vec![MxHost {
                    name: "example.org".into(),
                    preference: 0
                }],
                implicit: true
            })
        );
    }

    #[test]
    fn null_mx_is_its_own_result() {
        let p = plan("example.org", &answer(&[(0, ".")]), &[], &mut Rng::new(0));
        assert_eq!(p, Ok(MxPlan::NullMx));
        let p = plan(
            "example.org",
            &answer(&[(0, "."), (10, "mx.example.org")]),
            &[],
            &mut Rng::new(0),
        );
        assert_eq!(p.map(|p| names(&p).len()), Ok(1), "a stray '.' is skipped");
    }

    #[test]
    fn ourselves_and_less_preferred_hosts_are_dropped() {
        let us = vec!["MX2.example.org".to_owned()];
        let records = [
            (10, "mx1.example.org"),
            (20, "mx2.example.org"),
            (20, "mx2b.example.org"),
            (30, "mx3.example.org"),
        ];
        let p = plan("example.org", &answer(&records), &us, &mut Rng::new(0));
        assert_eq!(p.as_ref().map(names), Ok(vec!["mx1.example.org"]));
        let p = plan(
            "example.org",
            &answer(&[(10, "mx2.example.org"), (20, "mx3.example.org")]),
            &us,
            &mut Rng::new(0),
        );
        assert_eq!(p, Ok(MxPlan::OnlyOurselves));
        let us = vec!["example.org".to_owned()];
        let p = plan("example.org", &Err(DnsError::NoData), &us, &mut Rng::new(0));
        assert_eq!(p, Ok(MxPlan::OnlyOurselves), "implicit MX to ourselves");
    }

    #[test]
    fn lookup_errors_pass_through() {
        for e in [DnsError::NxDomain, DnsError::ServFail, DnsError::Timeout] {
            let p = plan("example.org", &Err(e.clone()), &[], &mut Rng::new(0));
            assert_eq!(p, Err(e));
        }
    }
}
