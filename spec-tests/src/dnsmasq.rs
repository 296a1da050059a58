//! A real DNS server for the interop tests: dnsmasq (Debian's
//! `dnsmasq-base`) started by the test on 127.0.0.1 at a free high port,
//! with no upstream servers, zone data from the command line, and unknown
//! names answered NXDOMAIN. Tests hand its address to the code under test
//! explicitly (`DnsClient::new`, `delivery.dns_servers`): no test ever
//! asks the machine's own resolver.
//!
//! Record options are dnsmasq's own: `--host-record=NAME,IP[,IP6][,TTL]`,
//! `--mx-host=DOMAIN,HOST,PREFERENCE`, `--txt-record=NAME,TEXT`,
//! `--ptr-record=`, `--cname=`, `--address=/NAME/IP` and, for any other
//! type, `--dns-rr=NAME,TYPE,HEX` (RFC 3597 rdata in hex).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dnsmasq may take to answer its first query.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A dnsmasq process serving the test's records; killed on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq as a local-only server (`--local=/#/`: names it has
    /// no record for get NXDOMAIN, never forwarded) with `records`.
    ///
    /// # Panics
    /// dnsmasq is not installed or does not answer within 10 seconds
    /// (five tries on fresh ports).
    pub fn start(records: &[String]) -> Self {
        Self::start_with(&["--local=/#/".to_owned()], records)
    }

    /// Starts dnsmasq as the authoritative server of `zone`: negative
    /// answers then carry the zone's SOA record (RFC 2308).
    ///
    /// # Panics
    /// As [`Dnsmasq::start`].
    pub fn start_authoritative(zone: &str, records: &[String]) -> Self {
        let mode = [
            format!("--auth-server=ns.{zone},127.0.0.1"),
            format!("--auth-zone={zone}"),
            format!("--auth-soa=1,hostmaster.{zone}"),
            "--auth-ttl=300".to_owned(),
        ];
        Self::start_with(&mode, records)
    }

    /// Returns the address it answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn start_with(mode: &[String], records: &[String]) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let Some(port) = free_port() else {
                last_error = "no free port on 127.0.0.1".into();
                continue;
            };
            let spawned = Command::new(dnsmasq_path())
                .arg(format!("--port={port}"))
                .args([
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--keep-in-foreground",
                    // Debug mode: no forked child per TCP query, which
                    // would outlive the kill on drop.
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--log-facility=-",
                    "--cache-size=0",
                ])
                .args(mode)
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => panic!(
                    "dnsmasq must be installed (apt-get install dnsmasq-base; .ci/interop does): {e}"
                ),
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match wait_until_answering(&mut child, addr) {
                Ok(()) => return Self { child, addr },
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let mut stderr = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut stderr);
                    }
                    last_error = format!("{e}\n{stderr}");
                }
            }
        }
        panic!("dnsmasq did not start: {last_error}");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq on `PATH`, else where Debian puts it.
fn dnsmasq_path() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("dnsmasq"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/dnsmasq"))
}

/// A port that is free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> Option<u16> {
    for _ in 0..50 {
        let Ok(udp) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(port) = udp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// Sends a hand-made query for `probe.invalid` until any answer comes.
fn wait_until_answering(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "invalid"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dnsmasq exited: {status}"));
        }
        let _ = sock.send_to(&query, addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 12 && buf[..2] == [0x12, 0x34] {
                return Ok(());
            }
        }
    }
    Err(format!("no answer from dnsmasq within {START_TIMEOUT:?}"))
}
