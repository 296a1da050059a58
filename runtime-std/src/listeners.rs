//! The configured listening sockets, for both front ends: bound and logged
//! (`event=listening`) in one place, and what every socket a listener
//! accepts shares: its kind, its local address, the socket options it
//! inherits ([`crate::inherited`]).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use hato_core::policy::ListenerKind;
use hato_core::smtp::server::Peer;

use crate::host::Server;
use crate::inherited::ListenerOptions;
use crate::log::Line;

/// A bound listening socket and what its accepted sockets share.
#[derive(Debug)]
pub struct Listener {
    /// The socket.
    pub socket: TcpListener,
    /// What its accepted sockets share.
    pub accepting: Accepting,
}

/// What a listener's accept loop knows about the sockets it accepts.
#[derive(Debug)]
pub struct Accepting {
    /// Which listener (port 25, submission, submissions).
    pub kind: ListenerKind,
    /// Their local address, unless the listener is on a wildcard address.
    local: Option<SocketAddr>,
    /// The socket options they inherit.
    pub options: ListenerOptions,
}

impl Accepting {
    /// The peer of `stream`, accepted from `remote`: the local address is
    /// the listener's, or asked from the socket when the listener is on a
    /// wildcard address. `None` (logged, `event=error what=accept`) when
    /// the socket has no local address any more: reset before we looked;
    /// the caller drops it.
    pub fn peer(&self, stream: &TcpStream, remote: SocketAddr) -> Option<Peer> {
        let local = match self.local {
            Some(local) => local,
            None => match stream.local_addr() {
                Ok(local) => local,
                Err(e) => {
                    Line::new("error")
                        .kv("what", "accept")
                        .kv("peer", remote.ip())
                        .kv("reason", "no local address")
                        .kv("error", e)
                        .emit();
                    return None;
                }
            },
        };
        Some(Peer {
            remote,
            local,
            listener: self.kind,
        })
    }
}

/// Binds every listener of the configuration and logs each. `timeout`
/// (the blocking front end's) is set as the send and receive timeout on
/// each listener for its sockets to inherit; non-blocking front ends pass
/// none. `TCP_NODELAY` is set on all.
///
/// # Errors
/// An address cannot be bound; the message names it and its listener.
pub fn bind_all(server: &Server, timeout: Option<Duration>) -> io::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for (kind, addrs) in [
        (ListenerKind::Smtp, &server.cfg.listen.smtp),
        (ListenerKind::Submission, &server.cfg.listen.submission),
        (ListenerKind::Submissions, &server.cfg.listen.submissions),
    ] {
        for addr in addrs {
            let socket = TcpListener::bind(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr} ({}): {e}", kind.as_str()),
                )
            })?;
            let bound = socket.local_addr()?;
            server.log_listening(kind.as_str(), bound);
            let accepting = Accepting {
                kind,
                local: (!bound.ip().is_unspecified()).then_some(bound),
                options: ListenerOptions::set(&socket, timeout, timeout),
            };
            listeners.push(Listener { socket, accepting });
        }
    }
    Ok(listeners)
}
