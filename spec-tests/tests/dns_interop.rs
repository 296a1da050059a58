//! DNS against a real server: each test starts its own dnsmasq
//! ([`Dnsmasq`]: 127.0.0.1, a free high port, no upstream servers, zone
//! data from the command line, unknown names answered NXDOMAIN) and asks
//! it through `hato_runtime_std::dns::DnsClient`, the DNS block list and
//! reverse-DNS checks, and core's MX selection. No test ever asks the machine's own
//! resolver: every client gets the test's loopback server explicitly.
//!
//! dnsmasq comes from Debian's package; `.ci/interop` installs it and runs
//! `cargo test -p hato-spec-tests --test dns_interop -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hato_core::dns::mx::{plan, MxPlan};
use hato_core::dns::{dnsbl_name, Data, DnsError, Rng, Rtype};
use hato_core::refusal::RefuseReason;
use hato_runtime_std::dns::DnsClient;
use hato_runtime_std::dns_checks::{dnsbl, verified_name};
use hato_spec_tests::dnsmasq::Dnsmasq;

/// A client asking only `dns`.
fn client(dns: &Dnsmasq) -> DnsClient {
    DnsClient::new(vec![dns.addr()])
}

/// A port on 127.0.0.1 where nothing listens.
fn dead_port() -> SocketAddr {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn a_aaaa_mx_ptr_and_txt_lookups() {
    let dns = Dnsmasq::start(&args(&[
        "--host-record=mail.example.test,192.0.2.10,2001:db8::10,300",
        "--mx-host=example.test,mail.example.test,10",
        "--txt-record=example.test,v=spf1 ,ip4:192.0.2.0/24 -all",
        "--cname=www.example.test,mail.example.test",
    ]));
    let client = client(&dns);

    let a = client.lookup("mail.example.test", Rtype::A).unwrap();
    assert_eq!(a.records, [Data::A(Ipv4Addr::new(192, 0, 2, 10))]);
    assert!(a.ttl <= 300 && a.ttl > 0, "{}", a.ttl);
    let aaaa = client.lookup("MAIL.example.test.", Rtype::Aaaa).unwrap();
    assert_eq!(
        aaaa.records,
        [Data::Aaaa(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10
        ))]
    );
    let mx = client.lookup("example.test", Rtype::Mx).unwrap();
    assert_eq!(
        mx.records,
        [Data::Mx {
            preference: 10,
            exchange: "mail.example.test".into()
        }]
    );
    let ptr = client
        .lookup(&hato_core::dns::reverse_name(ip("192.0.2.10")), Rtype::Ptr)
        .unwrap();
    assert_eq!(ptr.ptr_names().collect::<Vec<_>>(), ["mail.example.test"]);
    let v6ptr = client
        .lookup(
            &hato_core::dns::reverse_name(ip("2001:db8::10")),
            Rtype::Ptr,
        )
        .unwrap();
    assert_eq!(v6ptr.ptr_names().collect::<Vec<_>>(), ["mail.example.test"]);
    let txt = client.lookup("example.test", Rtype::Txt).unwrap();
    assert_eq!(
        txt.texts().collect::<Vec<_>>(),
        [b"v=spf1 ip4:192.0.2.0/24 -all".as_slice()]
    );
    let www = client.lookup("www.example.test", Rtype::A).unwrap();
    assert_eq!(www.canonical, "mail.example.test", "CNAME followed");
    assert_eq!(www.ips().collect::<Vec<_>>(), [ip("192.0.2.10")]);
    assert_eq!(
        client.lookup_ips("mail.example.test"),
        Ok(vec![ip("192.0.2.10"), ip("2001:db8::10")])
    );

    assert_eq!(
        client.lookup("nothing.example.test", Rtype::A),
        Err(DnsError::NxDomain)
    );
    assert_eq!(
        client.lookup("mail.example.test", Rtype::Mx),
        Err(DnsError::NoData)
    );
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn mx_selection_orders_shuffles_and_knows_implicit_and_null_mx() {
    let dns = Dnsmasq::start(&args(&[
        "--mx-host=example.test,mx2.example.test,20",
        "--mx-host=example.test,mx1a.example.test,10",
        "--mx-host=example.test,mx3.example.test,30",
        "--mx-host=example.test,mx1b.example.test,10",
        "--host-record=nomx.example.test,192.0.2.20",
        "--mx-host=nullmx.example.test,.,0",
    ]));
    let client = client(&dns);
    let answer = client.lookup("example.test", Rtype::Mx);
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..32 {
        let p = plan("example.test", &answer, &[], &mut Rng::new(seed)).unwrap();
        let MxPlan::Hosts { hosts, implicit } = p else {
            panic!("{p:?}")
        };
        assert!(!implicit);
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let mut equal = names[..2].to_vec();
        equal.sort_unstable();
        assert_eq!(equal, ["mx1a.example.test", "mx1b.example.test"]);
        assert_eq!(names[2..], ["mx2.example.test", "mx3.example.test"]);
        firsts.insert(names[0].to_owned());
    }
    assert_eq!(firsts.len(), 2, "equal preferences take turns first");

    let us = vec!["mx2.example.test".to_owned()];
    let p = plan("example.test", &answer, &us, &mut Rng::new(1)).unwrap();
    assert!(
        matches!(&p, MxPlan::Hosts { hosts, .. } if hosts.len() == 2),
        "{p:?}"
    );

    let nomx = client.lookup("nomx.example.test", Rtype::Mx);
    assert_eq!(nomx, Err(DnsError::NoData));
    let p = plan("nomx.example.test", &nomx, &[], &mut Rng::new(0)).unwrap();
    assert!(matches!(p, MxPlan::Hosts { implicit: true, .. }), "{p:?}");
    assert_eq!(
        client.lookup_ips("nomx.example.test"),
        Ok(vec![ip("192.0.2.20")])
    );

    let null = client.lookup("nullmx.example.test", Rtype::Mx);
    let p = plan("nullmx.example.test", &null, &[], &mut Rng::new(0));
    assert_eq!(p, Ok(MxPlan::NullMx), "{null:?}");

    let none = client.lookup("nowhere.example.test", Rtype::Mx);
    assert_eq!(
        plan("nowhere.example.test", &none, &[], &mut Rng::new(0)),
        Err(DnsError::NxDomain)
    );
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn nxdomain_is_cached_for_the_negative_ttl() {
    let dns = Dnsmasq::start_authoritative(
        "example.test",
        &args(&["--host-record=mail.example.test,192.0.2.10"]),
    );
    let client = client(&dns);
    assert_eq!(
        client.lookup("nothing.example.test", Rtype::A),
        Err(DnsError::NxDomain)
    );
    assert!(client.lookup("mail.example.test", Rtype::A).is_ok());
    drop(dns);
    // The server is gone: both answers come from the cache, at once.
    let start = Instant::now();
    assert_eq!(
        client.lookup("NOTHING.example.test", Rtype::A),
        Err(DnsError::NxDomain)
    );
    assert!(client.lookup("mail.example.test", Rtype::A).is_ok());
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn dnsbl_zone_lists_127_0_0_2_and_not_127_0_0_1() {
    let listed_v6 = dnsbl_name(ip("2001:db8::2"), "bl.example");
    let dns = Dnsmasq::start(&[
        "--address=/2.0.0.127.bl.example/127.0.0.2".to_owned(),
        format!("--address=/{listed_v6}/127.0.0.2"),
        "--address=/2.0.0.127.other.example/192.0.2.1".to_owned(),
    ]);
    let client = client(&dns);
    let zones = vec!["bl.example".to_owned()];
    let listed = Err(RefuseReason::Dnsbl {
        zone: "bl.example".into(),
    });
    assert_eq!(dnsbl(&client, ip("127.0.0.2"), &zones), listed);
    assert_eq!(dnsbl(&client, ip("::ffff:127.0.0.2"), &zones), listed);
    assert_eq!(dnsbl(&client, ip("127.0.0.1"), &zones), Ok(()));
    assert_eq!(dnsbl(&client, ip("2001:db8::2"), &zones), listed, "nibbles");
    assert_eq!(dnsbl(&client, ip("2001:db8::1"), &zones), Ok(()));
    // An answer outside 127.0.0.0/8 is not a listing.
    let other = vec!["other.example".to_owned()];
    assert_eq!(dnsbl(&client, ip("127.0.0.2"), &other), Ok(()));
    // The first zone that lists the address is named.
    let both = vec!["other.example".to_owned(), "bl.example".to_owned()];
    assert_eq!(dnsbl(&client, ip("127.0.0.2"), &both), listed);
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn dnsbl_fails_open_when_the_server_is_gone() {
    let client = DnsClient::new(vec![dead_port()]);
    let start = Instant::now();
    let zones = vec!["bl.example".to_owned()];
    assert_eq!(dnsbl(&client, ip("127.0.0.2"), &zones), Ok(()));
    assert!(start.elapsed() < Duration::from_secs(7));
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn verified_name_needs_the_forward_lookup_to_match() {
    let dns = Dnsmasq::start(&args(&[
        "--host-record=good.example.test,192.0.2.1,2001:db8::1",
        "--ptr-record=2.2.0.192.in-addr.arpa,liar.example.test",
        "--host-record=liar.example.test,192.0.2.99",
    ]));
    let client = client(&dns);
    assert_eq!(
        verified_name(&client, ip("192.0.2.1")).as_deref(),
        Some("good.example.test")
    );
    assert_eq!(
        verified_name(&client, ip("2001:db8::1")).as_deref(),
        Some("good.example.test")
    );
    assert_eq!(verified_name(&client, ip("192.0.2.2")), None, "PTR lies");
    assert_eq!(verified_name(&client, ip("192.0.2.3")), None, "no PTR");
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn dead_server_fails_over_to_the_working_one() {
    let dns = Dnsmasq::start(&args(&["--host-record=mail.example.test,192.0.2.10"]));
    let client = DnsClient::new(vec![dead_port(), dns.addr()]);
    let start = Instant::now();
    let a = client.lookup("mail.example.test", Rtype::A).unwrap();
    assert_eq!(a.ips().collect::<Vec<_>>(), [ip("192.0.2.10")]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "one try at most: {:?}",
        start.elapsed()
    );
}

#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn truncated_answer_is_fetched_over_tcp() {
    let text = "x".repeat(200);
    let records: Vec<String> = (0..3)
        .map(|i| format!("--txt-record=big.example.test,{i}{text}"))
        .collect();
    let dns = Dnsmasq::start(&records);
    let client = client(&dns);
    let answer = client.lookup("big.example.test", Rtype::Txt).unwrap();
    let mut texts: Vec<Vec<u8>> = answer.texts().map(<[u8]>::to_vec).collect();
    texts.sort();
    assert_eq!(texts.len(), 3, "all records, more than 512 octets");
    assert_eq!(texts[0], format!("0{text}").into_bytes());
}

/// Both binaries, end to end: a client listed in a DNS block list is
/// refused at the greeting (554 5.7.1 naming the list), and a client whose
/// verified reverse-DNS name matches a `deny.from` name is refused at HELO,
/// whatever HELO name it gives. The test client is 127.0.0.1, so the
/// records are for that address and `relay.trusted_networks` is emptied.
#[test]
#[ignore = "needs dnsmasq; run by .ci/interop"]
fn binaries_refuse_listed_and_denied_clients() {
    use hato_core::policy::ListenerKind;
    use hato_spec_tests::raw::RawClient;
    use hato_spec_tests::server::{Binary, DataDir, Server};

    let dns = Dnsmasq::start(&args(&[
        "--address=/1.0.0.127.bl.example/127.0.0.2",
        "--ptr-record=1.0.0.127.in-addr.arpa,host.spam.example",
        "--host-record=host.spam.example,127.0.0.1",
    ]));
    let server_list = format!("[\"{}\"]", dns.addr());
    for binary in Binary::ALL {
        let base = vec![
            ("relay.trusted_networks".to_owned(), "[]".to_owned()),
            ("limits.greet_pause".to_owned(), "\"0s\"".to_owned()),
            ("delivery.dns_servers".to_owned(), server_list.clone()),
        ];

        let mut listed = base.clone();
        listed.push(("dnsbl.zones".into(), "[\"bl.example\"]".into()));
        let server = Server::start_with(binary, DataDir::new("dnsbl").unwrap(), &listed).unwrap();
        let mut c = RawClient::connect(server.addr(ListenerKind::Smtp).unwrap());
        assert_eq!(
            c.line(),
            "554 5.7.1 Service unavailable; client address listed by bl.example",
            "{}",
            binary.name()
        );
        assert!(c.closed(), "closed after the refusal");
        assert!(
            !server
                .wait_refusals("listed in DNS block list bl.example", 1)
                .is_empty(),
            "{}",
            server.log_text()
        );
        drop(server);

        let mut denied = base;
        denied.push(("deny.from".into(), "[\"spam.example\"]".into()));
        let server = Server::start_with(binary, DataDir::new("fcrdns").unwrap(), &denied).unwrap();
        let mut c = RawClient::greeted(server.addr(ListenerKind::Smtp).unwrap());
        let reply = c.cmd("EHLO innocent.example");
        assert_eq!(reply, "554 5.7.1 Access denied", "{}", binary.name());
        assert!(
            !server.wait_refusals("spam.example", 1).is_empty(),
            "{}",
            server.log_text()
        );
        assert!(
            server.log_lines().iter().any(
                |l| l.contains("event=client-name") && l.contains("verified=host.spam.example")
            ),
            "{}",
            server.log_text()
        );
    }
}
