//! Building queries and reading answers (RFC 1035 §4), with hickory-proto.
//!
//! - A query carries one question and sets RD, recursion desired (RFC 1035
//!   §4.1.1): hato asks a recursive resolver. Its id comes from the caller
//!   (never `Message::query()`, which draws a random id).
//! - A response is accepted only when it is a response to a standard query
//!   with the same id and the same question (RFC 5452 §9.1); anything else
//!   is ignored as possibly forged.
//! - CNAMEs are followed within the answer section (RFC 1034 §3.6.2,
//!   §4.3.2 step 3a), at most [`MAX_CNAMES`] of them.
//! - No record at the end of the chain is NXDOMAIN when the RCODE is 3,
//!   else NODATA (RFC 2308 §2.1, §2.2); its negative TTL is the smaller of
//!   the SOA record's TTL and its MINIMUM field (RFC 2308 §5).

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::types::{Answer, Data, DnsError, Rtype};

/// How many CNAMEs a chain may have before hato gives up on it.
pub(super) const MAX_CNAMES: usize = 8;

/// What a matching response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// Records were found.
    Answer(Answer),
    /// There is nothing (NXDOMAIN or NODATA); cache it for `ttl` seconds
    /// when the server sent an SOA record, else not at all.
    Negative { error: DnsError, ttl: Option<u32> },
    /// The TC bit: the answer did not fit in the datagram (RFC 1035 §4.2.1).
    Truncated,
    /// This server failed (SERVFAIL, REFUSED, ...): try another.
    Failed(DnsError),
}

impl Rtype {
    fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Mx => RecordType::MX,
            Self::Ptr => RecordType::PTR,
            Self::Txt => RecordType::TXT,
        }
    }
}

/// Reads `name` as a domain name to ask for: ASCII as written (so `_dmarc`
/// labels work), UTF-8 through IDNA (RFC 5890); always fully qualified.
///
/// # Errors
/// [`DnsError::InvalidName`] for an empty name, empty labels, escapes,
/// spaces or control characters, or a name longer than 255 octets.
pub(super) fn query_name(name: &str) -> Result<Name, DnsError> {
    let invalid = || DnsError::InvalidName(name.to_owned());
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty()
        || bare.split('.').any(str::is_empty)
        || bare
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let parsed = if bare.is_ascii() {
        Name::from_ascii(bare)
    } else {
        Name::from_utf8(bare)
    };
    let mut parsed = parsed.map_err(|_| invalid())?;
    parsed.set_fqdn(true);
    if parsed.len() > 255 {
        return Err(invalid());
    }
    Ok(parsed)
}

/// Writes `name` as hato shows names: lower case, no trailing dot; the
/// root is `.`.
pub(super) fn show(name: &Name) -> String {
    if name.is_root() {
        return ".".into();
    }
    let s = name.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some(t) => t.to_owned(),
        None => s,
    }
}

/// Builds the query message with id `id` asking for `rtype` records of
/// `name`, recursion desired.
///
/// # Errors
/// [`DnsError::InvalidName`] when hickory cannot encode the name.
pub(super) fn build_query(id: u16, name: &Name, rtype: Rtype) -> Result<Vec<u8>, DnsError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name.clone(), rtype.record_type()));
    msg.metadata.recursion_desired = true;
    msg.to_vec()
        .map_err(|_| DnsError::InvalidName(name.to_ascii()))
}

/// Tells whether `msg` answers our query: a response, standard query
/// opcode, the id we sent, and exactly our question (RFC 5452 §9.1; the
/// name compares case-insensitively, RFC 4343 §3).
pub(super) fn matches(msg: &Message, id: u16, name: &Name, rtype: Rtype) -> bool {
    msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.metadata.op_code == OpCode::Query
        && msg.queries.len() == 1
        && msg.queries.first().is_some_and(|q| {
            q.query_type() == rtype.record_type()
                && q.query_class() == DNSClass::IN
                && q.name() == name
        })
}

/// Reads what a matching response says about `name` and `rtype`.
pub(super) fn interpret(msg: &Message, name: &Name, rtype: Rtype) -> Reply {
    if msg.metadata.truncation {
        return Reply::Truncated;
    }
    let rcode = msg.metadata.response_code;
    match rcode {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::ServFail => return Reply::Failed(DnsError::ServFail),
        other => return Reply::Failed(DnsError::Rcode(u16::from(other))),
    }
    let (canonical, chain_ttl, records) = follow(msg, name, rtype);
    if records.is_empty() {
        let error = if rcode == ResponseCode::NXDomain {
            DnsError::NxDomain
        } else {
            DnsError::NoData
        };
        return Reply::Negative {
            error,
            ttl: negative_ttl(msg),
        };
    }
    let ttl = records
        .iter()
        .map(|(_, ttl)| *ttl)
        .fold(chain_ttl, u32::min);
    Reply::Answer(Answer {
        name: show(name),
        rtype,
        canonical: show(&canonical),
        records: records.into_iter().map(|(d, _)| d).collect(),
        ttl,
    })
}

/// Follows CNAMEs from `name` within the answer section and collects the
/// records of `rtype` owned by the last name, with their TTLs. Returns the
/// last name and the smallest TTL of the CNAMEs taken.
fn follow(msg: &Message, name: &Name, rtype: Rtype) -> (Name, u32, Vec<(Data, u32)>) {
    let mut current = name.clone();
    let mut chain_ttl = u32::MAX;
    let answers = || msg.answers.iter().filter(|r| r.dns_class == DNSClass::IN);
    for _ in 0..=MAX_CNAMES {
        let found: Vec<(Data, u32)> = answers()
            .filter(|r| r.name == current)
            .filter_map(|r| data(r, rtype).map(|d| (d, r.ttl)))
            .collect();
        if !found.is_empty() {
            return (current, chain_ttl, found);
        }
        let next = answers().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == current => Some((target.0.clone(), r.ttl)),
            _ => None,
        });
        match next {
            Some((target, ttl)) if target != current => {
                current = target;
                chain_ttl = chain_ttl.min(ttl);
            }
            _ => break,
        }
    }
    (current, chain_ttl, Vec::new())
}

/// Returns the record as [`Data`] when it is of type `rtype`.
fn data(record: &Record, rtype: Rtype) -> Option<Data> {
    match (&record.data, rtype) {
        (RData::A(a), Rtype::A) => Some(Data::A(a.0)),
        (RData::AAAA(a), Rtype::Aaaa) => Some(Data::Aaaa(a.0)),
        (RData::MX(mx), Rtype::Mx) => Some(Data::Mx {
            preference: mx.preference,
            exchange: show(&mx.exchange),
        }),
        (RData::PTR(p), Rtype::Ptr) => Some(Data::Ptr(show(&p.0))),
        (RData::TXT(t), Rtype::Txt) => Some(Data::Txt(t.txt_data.concat())),
        _ => None,
    }
}

/// The negative TTL of RFC 2308 §5: the smaller of the SOA record's own
/// TTL and its MINIMUM field; `None` without an SOA record (RFC 2308 §5:
/// such answers SHOULD NOT be cached).
fn negative_ttl(msg: &Message) -> Option<u32> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testutil::{a, cname, mx, reply_to, soa, txt};
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        query_name(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parsed(query: &[u8], build: impl FnOnce(&mut Message)) -> Message {
        let bytes = reply_to(query, build);
        Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn query_asks_one_question_with_recursion_desired() {
        let q = build_query(0x1234, &name("Example.ORG"), Rtype::Mx).unwrap_or_default();
        let m = Message::from_vec(&q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.metadata.message_type, MessageType::Query);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::MX);
        assert_eq!(show(m.queries[0].name()), "example.org");
        assert!(
            m.edns.is_none(),
            "plain DNS: answers over 512 octets come by TCP"
        );
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        for bad in ["", ".", "a..b", "a b.example", "a\\.b", "x\n.example"] {
            assert!(
                matches!(query_name(bad), Err(DnsError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(query_name(&format!("{}.example", "a".repeat(64))).is_err());
        assert_eq!(show(&name("_dmarc.Example.org.")), "_dmarc.example.org");
        assert_eq!(show(&name("bücher.example")), "xn--bcher-kva.example");
    }

    #[test]
    fn only_the_same_id_and_question_match() {
        let n = name("example.org");
        let q = build_query(7, &n, Rtype::A).unwrap_or_default();
        let m = parsed(&q, |_| {});
        assert!(matches(&m, 7, &n, Rtype::A));
        assert!(matches(&m, 7, &name("EXAMPLE.org"), Rtype::A), "0x20-safe");
        assert!(!matches(&m, 8, &n, Rtype::A));
        assert!(!matches(&m, 7, &n, Rtype::Aaaa));
        assert!(!matches(&m, 7, &name("example.net"), Rtype::A));
        let not_response = Message::from_vec(&q).unwrap_or_else(|e| panic!("{e}"));
        assert!(!matches(&not_response, 7, &n, Rtype::A));
    }

    #[test]
    fn cname_chain_is_followed_and_ttl_is_the_smallest() {
        let n = name("www.example.org");
        let q = build_query(1, &n, Rtype::A).unwrap_or_default();
        let m = parsed(&q, |m| {
            m.add_answer(cname("www.example.org", "web.example.org", 300));
            m.add_answer(cname("web.example.org", "host.example.net", 60));
            m.add_answer(a("host.example.net", Ipv4Addr::new(192, 0, 2, 7), 600));
            m.add_answer(a("other.example.net", Ipv4Addr::new(192, 0, 2, 9), 600));
        });
        let Reply::Answer(ans) = interpret(&m, &n, Rtype::A) else {
            panic!("no answer");
        };
        assert_eq!(ans.canonical, "host.example.net");
        assert_eq!(ans.records, vec![Data::A(Ipv4Addr::new(192, 0, 2, 7))]);
        assert_eq!(ans.ttl, 60);
    }

    #[test]
    fn cname_loop_ends_as_nodata() {
        let n = name("a.example");
        let q = build_query(1, &n, Rtype::A).unwrap_or_default();
        let m = parsed(&q, |m| {
            m.add_answer(cname("a.example", "b.example", 60));
            m.add_answer(cname("b.example", "a.example", 60));
        });
        assert_eq!(
            interpret(&m, &n, Rtype::A),
            Reply::Negative {
                error: DnsError::NoData,
                ttl: None
            }
        );
    }

    #[test]
    fn nxdomain_and_nodata_differ_and_take_the_soa_minimum() {
        let n = name("nothing.example");
        let q = build_query(1, &n, Rtype::Mx).unwrap_or_default();
        let nx = parsed(&q, |m| {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa("example", 3600, 300));
        });
        assert_eq!(
            interpret(&nx, &n, Rtype::Mx),
            Reply::Negative {
                error: DnsError::NxDomain,
                ttl: Some(300)
            }
        );
        let nodata = parsed(&q, |m| {
            m.add_authority(soa("example", 120, 300));
        });
        assert_eq!(
            interpret(&nodata, &n, Rtype::Mx),
            Reply::Negative {
                error: DnsError::NoData,
                ttl: Some(120)
            }
        );
        let no_soa = parsed(&q, |_| {});
        assert_eq!(
            interpret(&no_soa, &n, Rtype::Mx),
            Reply::Negative {
                error: DnsError::NoData,
                ttl: None
            }
        );
    }

    #[test]
    fn servfail_truncation_and_other_codes() {
        let n = name("example.org");
        let q = build_query(1, &n, Rtype::Txt).unwrap_or_default();
        let m = parsed(&q, |m| m.metadata.response_code = ResponseCode::ServFail);
        assert_eq!(
            interpret(&m, &n, Rtype::Txt),
            Reply::Failed(DnsError::ServFail)
        );
        let m = parsed(&q, |m| m.metadata.response_code = ResponseCode::Refused);
        assert_eq!(
            interpret(&m, &n, Rtype::Txt),
            Reply::Failed(DnsError::Rcode(5))
        );
        let m = parsed(&q, |m| m.metadata.truncation = true);
        assert_eq!(interpret(&m, &n, Rtype::Txt), Reply::Truncated);
    }

    #[test]
    fn mx_and_txt_records_are_read() {
        let n = name("example.org");
        let q = build_query(1, &n, Rtype::Mx).unwrap_or_default();
        let m = parsed(&q, |m| {
            m.add_answer(mx("example.org", 10, "MX1.example.org", 300));
            m.add_answer(mx("example.org", 0, ".", 300));
        });
        let Reply::Answer(ans) = interpret(&m, &n, Rtype::Mx) else {
            panic!("no answer");
        };
        assert_eq!(
            ans.records,
            vec![
                Data::Mx {
                    preference: 10,
                    exchange: "mx1.example.org".into()
                },
                Data::Mx {
                    preference: 0,
                    exchange: ".".into()
                }
            ]
        );
        let q = build_query(1, &n, Rtype::Txt).unwrap_or_default();
        let m = parsed(&q, |m| {
            m.add_answer(txt("example.org", &["v=spf1 ", "-all"], 300));
        });
        let Reply::Answer(ans) = interpret(&m, &n, Rtype::Txt) else {
            panic!("no answer");
        };
        assert_eq!(
            ans.texts().collect::<Vec<_>>(),
            vec![b"v=spf1 -all".as_slice()]
        );
    }
}
