//! A scripted DNS server on 127.0.0.1 for the unit tests: UDP and TCP on
//! one port, answers built with hickory's types by a closure, stopped and
//! joined on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record};

/// Builds the datagrams (UDP) or the one message (TCP: the first) that
/// answer a query; `true` when it came over TCP.
pub(crate) type Script = dyn Fn(&Message, bool) -> Vec<Message> + Send + Sync;

pub(crate) struct FakeDns {
    pub(crate) addr: SocketAddr,
    pub(crate) udp_queries: Arc<AtomicUsize>,
    pub(crate) tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    pub(crate) fn start(
        script: impl Fn(&Message, bool) -> Vec<Message> + Send + Sync + 'static,
    ) -> Self {
        let script: Arc<Script> = Arc::new(script);
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        {
            let (script, stop, count) = (script.clone(), stop.clone(), udp_queries.clone());
            threads.push(std::thread::spawn(move || {
                serve_udp(&udp, &*script, &stop, &count)
            }));
        }
        {
            let (script, stop, count) = (script, stop.clone(), tcp_queries.clone());
            threads.push(std::thread::spawn(move || {
                serve_tcp(&tcp, &*script, &stop, &count)
            }));
        }
        Self {
            addr,
            udp_queries,
            tcp_queries,
            stop,
            threads,
        }
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return (udp, tcp);
        }
    }
    panic!("no free port for UDP and TCP");
}

fn serve_udp(sock: &UdpSocket, script: &Script, stop: &AtomicBool, count: &AtomicUsize) {
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        for reply in script(&query, false) {
            let _ = sock.send_to(&reply.to_vec().unwrap(), from);
        }
    }
}

fn serve_tcp(listener: &TcpListener, script: &Script, stop: &AtomicBool, count: &AtomicUsize) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = answer_tcp(stream, script);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn answer_tcp(mut stream: TcpStream, script: &Script) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg)?;
    let Ok(query) = Message::from_vec(&msg) else {
        return Ok(());
    };
    if let Some(reply) = script(&query, true).into_iter().next() {
        let bytes = reply.to_vec().unwrap();
        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
        stream.write_all(&len)?;
        stream.write_all(&bytes)?;
    }
    Ok(())
}

/// The name asked for, lower case, without the trailing dot.
pub(crate) fn qname(query: &Message) -> String {
    let n = query.queries[0].name().to_lowercase().to_ascii();
    n.trim_end_matches('.').to_owned()
}

/// An empty answer to `query` (same id and question).
pub(crate) fn reply(query: &Message) -> Message {
    let mut m = Message::response(query.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(query.queries.clone());
    m
}

fn name(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap();
    n.set_fqdn(true);
    n
}

/// An answer holding one A record.
pub(crate) fn a_reply(query: &Message, ip: Ipv4Addr) -> Message {
    let mut m = reply(query);
    let owner = query.queries[0].name().clone();
    m.add_answer(Record::from_rdata(owner, 60, RData::A(A(ip))));
    m
}

/// An answer holding one PTR record.
pub(crate) fn ptr_reply(query: &Message, target: &str) -> Message {
    let mut m = reply(query);
    let owner = query.queries[0].name().clone();
    m.add_answer(Record::from_rdata(owner, 60, RData::PTR(PTR(name(target)))));
    m
}

/// An answer holding `n` TXT records of 200 octets each.
pub(crate) fn txt_reply(query: &Message, n: usize) -> Message {
    let mut m = reply(query);
    let owner = query.queries[0].name().clone();
    for i in 0..n {
        let text = format!("{i}{}", "x".repeat(199));
        m.add_answer(Record::from_rdata(
            owner.clone(),
            60,
            RData::TXT(TXT::new(vec![text])),
        ));
    }
    m
}

/// An error answer with `rcode`.
pub(crate) fn rcode_reply(query: &Message, rcode: ResponseCode) -> Message {
    let mut m = reply(query);
    m.metadata.response_code = rcode;
    m
}
