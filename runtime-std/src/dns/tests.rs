//! The client against scripted servers on 127.0.0.1 (never the machine's
//! own resolver).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hato_core::dns::{DnsError, ResolverConfig, Rtype};
use hickory_proto::op::ResponseCode;

use super::fake::{a_reply, qname, rcode_reply, reply, txt_reply, FakeDns};
use super::DnsClient;

const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn quick() -> ResolverConfig {
    ResolverConfig {
        timeout: Duration::from_millis(300),
        ..ResolverConfig::default()
    }
}

/// A loopback port where nothing listens: bound, then closed.
fn dead_addr() -> SocketAddr {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn client_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<DnsClient>();
}

#[test]
fn answer_comes_over_udp_and_then_from_the_cache() {
    let server = FakeDns::start(|q, _| vec![a_reply(q, IP)]);
    let client = DnsClient::new(vec![server.addr]);
    let answer = client.lookup("Mail.Example.test", Rtype::A).unwrap();
    assert_eq!(answer.ips().collect::<Vec<_>>(), [IP]);
    assert_eq!(answer.name, "mail.example.test");
    let again = client.lookup("mail.example.test.", Rtype::A).unwrap();
    assert_eq!(again.records, answer.records);
    assert_eq!(server.udp_queries.load(Ordering::Relaxed), 1, "cached");
}

#[test]
fn truncated_udp_answer_is_fetched_over_tcp() {
    let server = FakeDns::start(|q, tcp| {
        if tcp {
            vec![txt_reply(q, 4)]
        } else {
            let mut m = reply(q);
            m.metadata.truncation = true;
            vec![m]
        }
    });
    let client = DnsClient::new(vec![server.addr]);
    let answer = client.lookup("big.example.test", Rtype::Txt).unwrap();
    assert_eq!(answer.texts().count(), 4);
    assert_eq!(server.tcp_queries.load(Ordering::Relaxed), 1);
}

#[test]
fn dead_server_is_skipped_at_once() {
    let server = FakeDns::start(|q, _| vec![a_reply(q, IP)]);
    let client = DnsClient::new(vec![dead_addr(), server.addr]);
    let start = Instant::now();
    let answer = client.lookup("example.test", Rtype::A).unwrap();
    assert_eq!(answer.ips().count(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "port unreachable moves on without waiting for the 2s timeout: {:?}",
        start.elapsed()
    );
}

#[test]
fn silent_server_times_out_to_the_next() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let server = FakeDns::start(|q, _| vec![a_reply(q, IP)]);
    let client = DnsClient::with_config(vec![silent.local_addr().unwrap(), server.addr], quick());
    let start = Instant::now();
    assert!(client.lookup("example.test", Rtype::A).is_ok());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The server that answered is asked first from now on.
    let start = Instant::now();
    assert!(client.lookup("other.example.test", Rtype::A).is_ok());
    assert!(start.elapsed() < Duration::from_millis(300));
}

#[test]
fn only_silent_servers_end_in_timeout() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = DnsClient::with_config(vec![silent.local_addr().unwrap()], quick());
    let start = Instant::now();
    assert_eq!(
        client.lookup("example.test", Rtype::Mx),
        Err(DnsError::Timeout)
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "3 tries: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn forged_datagrams_before_the_answer_are_ignored() {
    let server = FakeDns::start(|q, _| {
        let mut wrong_id = a_reply(q, Ipv4Addr::new(203, 0, 113, 66));
        wrong_id.metadata.id = q.metadata.id.wrapping_add(1);
        let mut wrong_question = a_reply(q, Ipv4Addr::new(203, 0, 113, 67));
        let mut other = q.queries[0].clone();
        other.set_name("evil.example.".parse().unwrap());
        wrong_question.queries = vec![other];
        vec![wrong_id, wrong_question, a_reply(q, IP)]
    });
    let client = DnsClient::new(vec![server.addr]);
    let answer = client.lookup("example.test", Rtype::A).unwrap();
    assert_eq!(answer.ips().collect::<Vec<_>>(), [IP]);
}

#[test]
fn servfail_everywhere_is_reported() {
    let server = FakeDns::start(|q, _| vec![rcode_reply(q, ResponseCode::ServFail)]);
    let client = DnsClient::new(vec![server.addr]);
    assert_eq!(
        client.lookup("example.test", Rtype::A),
        Err(DnsError::ServFail)
    );
    assert_eq!(server.udp_queries.load(Ordering::Relaxed), 3);
}

#[test]
fn threads_share_one_client() {
    let server = FakeDns::start(|q, _| {
        let n: u8 = qname(q)
            .trim_start_matches('h')
            .split('.')
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        vec![a_reply(q, Ipv4Addr::new(192, 0, 2, n))]
    });
    let client = Arc::new(DnsClient::new(vec![server.addr]));
    let threads: Vec<_> = (1..=8u8)
        .map(|n| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                let a = client.lookup(&format!("h{n}.example.test"), Rtype::A);
                (n, a.map(|a| a.ips().collect::<Vec<_>>()))
            })
        })
        .collect();
    for t in threads {
        let (n, ips) = t.join().unwrap();
        assert_eq!(ips, Ok(vec![Ipv4Addr::new(192, 0, 2, n).into()]));
    }
}

#[test]
fn lookup_ips_joins_a_and_aaaa() {
    let server = FakeDns::start(
        |q, _| match q.queries[0].query_type().to_string().as_str() {
            "A" => vec![a_reply(q, IP)],
            _ => vec![reply(q)],
        },
    );
    let client = DnsClient::new(vec![server.addr]);
    assert_eq!(client.lookup_ips("example.test"), Ok(vec![IP.into()]));
    let nx = FakeDns::start(|q, _| vec![rcode_reply(q, ResponseCode::NXDomain)]);
    let client = DnsClient::new(vec![nx.addr]);
    assert_eq!(client.lookup_ips("nope.test"), Err(DnsError::NxDomain));
}

#[test]
fn no_servers_and_bad_names_fail_at_once() {
    let client = DnsClient::new(Vec::new());
    assert_eq!(
        client.lookup("example.test", Rtype::A),
        Err(DnsError::NoServers)
    );
    let client = DnsClient::new(vec![dead_addr()]);
    assert!(matches!(
        client.lookup("bad name", Rtype::A),
        Err(DnsError::InvalidName(_))
    ));
}
