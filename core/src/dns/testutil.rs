//! Hand-built DNS answers for the unit tests, made with hickory's types.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};

pub(super) fn name(s: &str) -> Name {
    let mut n = Name::from_ascii(s).expect("test name");
    n.set_fqdn(true);
    n
}

pub(super) fn a(owner: &str, ip: Ipv4Addr, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(ip)))
}

pub(super) fn aaaa(owner: &str, ip: Ipv6Addr, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
}

pub(super) fn cname(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

pub(super) fn mx(owner: &str, preference: u16, exchange: &str, ttl: u32) -> Record {
    let exchange = if exchange == "." {
        Name::root()
    } else {
        name(exchange)
    };
    Record::from_rdata(name(owner), ttl, RData::MX(MX::new(preference, exchange)))
}

pub(super) fn ptr(owner: &str, target: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::PTR(PTR(name(target))))
}

pub(super) fn txt(owner: &str, strings: &[&str], ttl: u32) -> Record {
    let strings = strings.iter().map(|s| (*s).to_owned()).collect();
    Record::from_rdata(name(owner), ttl, RData::TXT(TXT::new(strings)))
}

/// An SOA record for `zone` with record TTL `ttl` and MINIMUM `minimum`.
pub(super) fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
    let rdata = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("hostmaster.{zone}")),
        1,
        3600,
        600,
        86_400,
        minimum,
    );
    Record::from_rdata(name(zone), ttl, RData::SOA(rdata))
}

/// The bytes of a response to the query `query` (its id and question),
/// with whatever `build` adds.
pub(super) fn reply_to(query: &[u8], build: impl FnOnce(&mut Message)) -> Vec<u8> {
    let q = Message::from_vec(query).expect("a query");
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries);
    build(&mut m);
    m.to_vec().expect("encodable")
}
