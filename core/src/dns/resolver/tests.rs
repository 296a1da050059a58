//! The resolver driven by hand, in virtual time, with answers built from
//! hickory's types.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};

use super::*;
use crate::dns::testutil::{a, aaaa, cname, ptr, reply_to, soa, txt};
use crate::dns::Data;

const S0: &str = "127.0.0.1:5300";
const S1: &str = "127.0.0.1:5301";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn resolver(servers: &[&str]) -> Resolver {
    Resolver::new(servers.iter().map(|s| addr(s)).collect(), 1)
}

fn transmit(r: &mut Resolver) -> Transmit {
    r.poll_transmit().expect("a transmit")
}

fn event(r: &mut Resolver) -> (QueryId, Result<Answer, DnsError>) {
    r.poll_event().expect("an event")
}

fn nothing_out(r: &mut Resolver) {
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.poll_event(), None);
}

fn ip4(r: &Result<Answer, DnsError>) -> Vec<Ipv4Addr> {
    match r {
        Ok(a) => a
            .records
            .iter()
            .filter_map(|d| match d {
                Data::A(ip) => Some(*ip),
                _ => None,
            })
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[test]
fn udp_answer_is_delivered_then_served_from_cache_until_ttl() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let q = r.lookup("Mail.Example.org.", Rtype::A, t0);
    let t = transmit(&mut r);
    assert_eq!((t.query, t.to, t.proto), (q, addr(S0), Proto::Udp));
    assert_eq!(r.poll_timeout(), Some(t0 + secs(2)));
    let reply = reply_to(&t.bytes, |m| {
        m.add_answer(a("mail.example.org", IP, 60));
    });
    r.handle_udp(t0 + Duration::from_millis(5), addr(S0), &reply);
    let (id, result) = event(&mut r);
    assert_eq!(id, q);
    assert_eq!(ip4(&result), [IP]);
    assert_eq!(
        result.as_ref().map(|a| a.name.as_str()),
        Ok("mail.example.org")
    );
    assert_eq!(r.poll_timeout(), None);
    nothing_out(&mut r);

    let q2 = r.lookup("mail.example.org", Rtype::A, t0 + secs(30));
    let (id, result) = event(&mut r);
    assert_eq!(id, q2);
    assert_eq!(
        result.map(|a| a.ttl),
        Ok(30),
        "TTL counts down in the cache"
    );
    nothing_out(&mut r);

    r.lookup("mail.example.org", Rtype::A, t0 + secs(61));
    assert_eq!(r.poll_event(), None, "expired: asked again");
    assert_eq!(transmit(&mut r).to, addr(S0));
}

#[test]
fn truncated_answer_is_asked_again_over_tcp() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("big.example", Rtype::Txt, t0);
    let t = transmit(&mut r);
    let tc = reply_to(&t.bytes, |m| m.metadata.truncation = true);
    r.handle_udp(t0, addr(S0), &tc);
    assert_eq!(r.poll_event(), None);
    let t = transmit(&mut r);
    assert_eq!((t.query, t.to, t.proto), (q, addr(S0), Proto::Tcp));
    let len = usize::from(u16::from_be_bytes([t.bytes[0], t.bytes[1]]));
    assert_eq!(len, t.bytes.len() - 2, "length-prefixed (RFC 1035 §4.2.2)");

    let long = "x".repeat(200);
    let full = reply_to(&t.bytes[2..], |m| {
        for _ in 0..4 {
            m.add_answer(txt("big.example", &[&long], 300));
        }
    });
    assert!(full.len() > 512);
    // A datagram for the TCP try is not taken.
    r.handle_udp(t0, addr(S0), &full);
    assert_eq!(r.poll_event(), None);
    r.handle_tcp(t0, q, &full);
    let (_, result) = event(&mut r);
    assert_eq!(result.map(|a| a.texts().count()), Ok(4));
}

#[test]
fn timeout_moves_to_the_next_server_which_is_then_preferred() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("example.org", Rtype::A, t0);
    assert_eq!(transmit(&mut r).to, addr(S0));
    r.handle_timeout(t0 + secs(1));
    nothing_out(&mut r);
    r.handle_timeout(t0 + secs(2));
    let t = transmit(&mut r);
    assert_eq!((t.query, t.to), (q, addr(S1)));
    assert_eq!(r.poll_timeout(), Some(t0 + secs(4)));
    let reply = reply_to(&t.bytes, |m| {
        m.add_answer(a("example.org", IP, 60));
    });
    r.handle_udp(t0 + secs(3), addr(S1), &reply);
    assert_eq!(ip4(&event(&mut r).1), [IP]);

    r.lookup("example.net", Rtype::A, t0 + secs(3));
    assert_eq!(transmit(&mut r).to, addr(S1), "the server that answered");
}

#[test]
fn every_try_timing_out_fails_with_timeout() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let q = r.lookup("example.org", Rtype::Mx, t0);
    let mut sends = Vec::new();
    let mut now = t0;
    while r.poll_transmit().is_some() {
        sends.push(now - t0);
        now = r.poll_timeout().expect("a timer");
        r.handle_timeout(now);
    }
    assert_eq!(sends, [secs(0), secs(2), secs(4)], "3 tries, 2s each");
    assert_eq!(now - t0, secs(6));
    assert_eq!(event(&mut r), (q, Err(DnsError::Timeout)));
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn mismatched_packets_are_ignored() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    r.lookup("example.org", Rtype::A, t0);
    let t = transmit(&mut r);
    let good = reply_to(&t.bytes, |m| {
        m.add_answer(a("example.org", IP, 60));
    });
    let mut wrong_id = good.clone();
    wrong_id[0] ^= 0xff;
    r.handle_udp(t0, addr(S0), &wrong_id);
    r.handle_udp(t0, addr(S1), &good);
    r.handle_udp(t0, addr(S0), b"not dns");
    r.handle_udp(t0, addr(S0), &t.bytes);
    let mut other = Message::from_vec(&good).unwrap();
    other.queries[0].set_name(crate::dns::testutil::name("example.net"));
    r.handle_udp(t0, addr(S0), &other.to_vec().unwrap());
    nothing_out(&mut r);
    r.handle_udp(t0, addr(S0), &good);
    assert_eq!(ip4(&event(&mut r).1), [IP]);
    // A second copy of the answer finds no waiting query.
    r.handle_udp(t0, addr(S0), &good);
    nothing_out(&mut r);
}

#[test]
fn nxdomain_is_cached_for_the_soa_minimum() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    r.lookup("nope.example", Rtype::A, t0);
    let t = transmit(&mut r);
    let nx = reply_to(&t.bytes, |m| {
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_authority(soa("example", 3600, 300));
    });
    r.handle_udp(t0, addr(S0), &nx);
    assert_eq!(event(&mut r).1, Err(DnsError::NxDomain));

    r.lookup("NOPE.example", Rtype::A, t0 + secs(299));
    assert_eq!(event(&mut r).1, Err(DnsError::NxDomain));
    nothing_out(&mut r);
    r.lookup("nope.example", Rtype::A, t0 + secs(300));
    assert_eq!(r.poll_event(), None);
    assert_eq!(transmit(&mut r).to, addr(S0));
}

#[test]
fn nodata_without_soa_is_not_cached() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    r.lookup("host.example", Rtype::Aaaa, t0);
    let t = transmit(&mut r);
    r.handle_udp(t0, addr(S0), &reply_to(&t.bytes, |_| {}));
    assert_eq!(event(&mut r).1, Err(DnsError::NoData));
    r.lookup("host.example", Rtype::Aaaa, t0 + secs(1));
    assert!(r.poll_transmit().is_some());
}

#[test]
fn servfail_tries_the_other_server_then_reports_servfail() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("broken.example", Rtype::Mx, t0);
    let mut last = None;
    while let Some(t) = r.poll_transmit() {
        let fail = reply_to(&t.bytes, |m| {
            m.metadata.response_code = ResponseCode::ServFail
        });
        last = Some(t.to);
        r.handle_udp(t0, t.to, &fail);
    }
    assert_eq!(last, Some(addr(S0)), "S0, S1, S0");
    assert_eq!(event(&mut r), (q, Err(DnsError::ServFail)));
    r.lookup("broken.example", Rtype::Mx, t0);
    assert!(r.poll_transmit().is_some(), "failures are not cached");
}

#[test]
fn network_error_moves_on_at_once() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("example.org", Rtype::A, t0);
    assert_eq!(transmit(&mut r).to, addr(S0));
    r.handle_error(t0, q);
    let t = transmit(&mut r);
    assert_eq!(t.to, addr(S1));
    let reply = reply_to(&t.bytes, |m| {
        m.add_answer(a("example.org", IP, 60));
    });
    r.handle_udp(t0, addr(S1), &reply);
    assert_eq!(ip4(&event(&mut r).1), [IP]);
}

#[test]
fn cname_is_followed_and_answer_cached_under_the_asked_name() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    r.lookup("www.example.org", Rtype::Aaaa, t0);
    let t = transmit(&mut r);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let reply = reply_to(&t.bytes, |m| {
        m.add_answer(cname("www.example.org", "web.example.net", 40));
        m.add_answer(aaaa("web.example.net", v6, 300));
    });
    r.handle_udp(t0, addr(S0), &reply);
    let answer = event(&mut r).1.unwrap();
    assert_eq!(answer.canonical, "web.example.net");
    assert_eq!(answer.records, [Data::Aaaa(v6)]);
    assert_eq!(answer.ttl, 40);
    r.lookup("www.example.org", Rtype::Aaaa, t0 + secs(39));
    assert!(event(&mut r).1.is_ok());
    r.lookup("www.example.org", Rtype::Aaaa, t0 + secs(40));
    assert!(r.poll_transmit().is_some());
}

#[test]
fn ptr_answer_gives_names() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let name = crate::dns::reverse_name(IP.into());
    r.lookup(&name, Rtype::Ptr, t0);
    let t = transmit(&mut r);
    let reply = reply_to(&t.bytes, |m| {
        m.add_answer(ptr(&name, "Mail.Example.org", 60));
    });
    r.handle_udp(t0, addr(S0), &reply);
    let answer = event(&mut r).1.unwrap();
    assert_eq!(answer.ptr_names().collect::<Vec<_>>(), ["mail.example.org"]);
}

#[test]
fn bad_tcp_answer_moves_to_the_next_server() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("big.example", Rtype::Txt, t0);
    let t = transmit(&mut r);
    r.handle_udp(
        t0,
        addr(S0),
        &reply_to(&t.bytes, |m| m.metadata.truncation = true),
    );
    let t = transmit(&mut r);
    assert_eq!(t.proto, Proto::Tcp);
    r.handle_tcp(t0, q, b"garbage");
    let t = transmit(&mut r);
    assert_eq!((t.to, t.proto), (addr(S1), Proto::Udp));
}

#[test]
fn invalid_name_and_no_servers_end_at_once() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let q = r.lookup("bad name", Rtype::A, t0);
    assert_eq!(
        event(&mut r),
        (q, Err(DnsError::InvalidName("bad name".into())))
    );
    nothing_out(&mut r);
    let mut r = resolver(&[]);
    let q = r.lookup("example.org", Rtype::A, t0);
    assert_eq!(event(&mut r), (q, Err(DnsError::NoServers)));
}

#[test]
fn cancelled_lookup_gives_no_event() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let q = r.lookup("example.org", Rtype::A, t0);
    r.cancel(q);
    nothing_out(&mut r);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn same_seed_sends_the_same_bytes() {
    let t0 = Instant::now();
    let run = |seed| {
        let mut r = Resolver::new(vec![addr(S0)], seed);
        r.lookup("example.org", Rtype::A, t0);
        r.lookup("example.org", Rtype::Mx, t0);
        let x = transmit(&mut r).bytes;
        let y = transmit(&mut r).bytes;
        assert_ne!(x[..2], y[..2], "ids differ");
        (x, y)
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn concurrent_lookups_are_answered_independently() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0]);
    let qa = r.lookup("a.example", Rtype::A, t0);
    let qb = r.lookup("b.example", Rtype::A, t0);
    let ta = transmit(&mut r);
    let tb = transmit(&mut r);
    let other = Ipv4Addr::new(192, 0, 2, 2);
    r.handle_udp(
        t0,
        addr(S0),
        &reply_to(&tb.bytes, |m| {
            m.add_answer(a("b.example", other, 60));
        }),
    );
    r.handle_udp(
        t0,
        addr(S0),
        &reply_to(&ta.bytes, |m| {
            m.add_answer(a("a.example", IP, 60));
        }),
    );
    let (id, res) = event(&mut r);
    assert_eq!((id, ip4(&res)), (qb, vec![other]));
    let (id, res) = event(&mut r);
    assert_eq!((id, ip4(&res)), (qa, vec![IP]));
}

#[test]
fn unreachable_servers_are_reported_as_such() {
    let t0 = Instant::now();
    let mut r = resolver(&[S0, S1]);
    let q = r.lookup("example.org", Rtype::A, t0);
    while let Some(t) = r.poll_transmit() {
        r.handle_error(t0, t.query);
    }
    assert_eq!(event(&mut r), (q, Err(DnsError::Unreachable)));
}
