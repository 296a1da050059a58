//! The sockets of one lookup: a UDP socket per address family, bound to an
//! ephemeral port and connected to the server of the current try (so the
//! kernel drops datagrams from other sources and reports ICMP port
//! unreachable as "connection refused"), and one TCP exchange for a
//! truncated answer (RFC 1035 §4.2.2 framing, RFC 7766).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Largest datagram read. Without EDNS a server sends at most 512 octets
/// (RFC 1035 §4.2.1); the rest is room for servers that send more.
const MAX_DATAGRAM: usize = 4096;

/// What waiting on the socket gave.
pub(super) enum Recv {
    /// A datagram from the connected server.
    Datagram { from: SocketAddr, bytes: Vec<u8> },
    /// The server's port is closed (ICMP port unreachable).
    Refused,
    /// Nothing came in time (or no socket is in use).
    TimedOut,
}

/// The UDP sockets of one lookup.
#[derive(Default)]
pub(super) struct UdpPair {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Whether the last send went out on the IPv6 socket.
    current_v6: Option<bool>,
}

impl UdpPair {
    /// Sends `bytes` to `to` from the socket of `to`'s family, connecting
    /// it to `to` first.
    pub(super) fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let v6 = to.is_ipv6();
        let slot = if v6 { &mut self.v6 } else { &mut self.v4 };
        let sock = match slot {
            Some(s) => s,
            None => {
                let bind: SocketAddr = if v6 {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                };
                slot.insert(UdpSocket::bind(bind)?)
            }
        };
        self.current_v6 = Some(v6);
        sock.connect(to)?;
        sock.send(bytes)?;
        Ok(())
    }

    /// Waits up to `wait` (more than zero) for a datagram on the socket of
    /// the last send.
    pub(super) fn recv(&mut self, wait: Duration) -> Recv {
        let sock = match self.current_v6 {
            Some(true) => self.v6.as_ref(),
            Some(false) => self.v4.as_ref(),
            None => None,
        };
        let Some(sock) = sock else {
            std::thread::sleep(wait);
            return Recv::TimedOut;
        };
        if sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            return Recv::TimedOut;
        }
        let mut buf = vec![0; MAX_DATAGRAM];
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                Recv::Datagram { from, bytes: buf }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Recv::Refused,
            Err(_) => Recv::TimedOut,
        }
    }
}

/// Sends the length-prefixed query `framed` to `to` over TCP and returns
/// the answer message (without its prefix), all within `timeout`.
///
/// # Errors
/// Connection refused, timeouts, a closed or short stream.
pub(super) fn tcp_exchange(
    to: SocketAddr,
    framed: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&to, timeout)?;
    stream.set_write_timeout(Some(left(deadline)?))?;
    stream.write_all(framed)?;
    let mut len = [0u8; 2];
    read_exact_by(&mut stream, &mut len, deadline)?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    read_exact_by(&mut stream, &mut answer, deadline)?;
    Ok(answer)
}

/// Fills `buf` from `stream`, giving up at `deadline` however slowly the
/// bytes trickle in.
fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The time left until `deadline`, never zero (a zero socket timeout is
/// an error in std); past it, a timeout error.
fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(d)
    }
}
