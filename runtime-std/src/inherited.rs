//! Socket options set once on a listening socket instead of on every
//! accepted one: Linux (and the BSDs) copy `TCP_NODELAY` and the send and
//! receive timeouts of a listener into each socket it accepts. Whether they
//! were copied is checked on the first socket a listener accepts; where
//! they were not, each session sets them itself, as it did before.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use rustix::net::sockopt::{self, Timeout};

/// How far a timeout read back may differ from the one set (the kernel
/// keeps it in clock ticks).
const ROUNDING: Duration = Duration::from_millis(20);

/// The options an accepted socket already has, so the session skips them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inherited {
    /// `TCP_NODELAY` is on.
    pub nodelay: bool,
    /// The send timeout, when known.
    pub send: Option<Duration>,
    /// The receive timeout, when known.
    pub recv: Option<Duration>,
}

/// The options of one listener and whether its sockets inherit them.
#[derive(Debug)]
pub struct ListenerOptions {
    /// What was set on the listener.
    set: Inherited,
    /// What accepted sockets have, once the first one was checked.
    checked: Option<Inherited>,
}

impl ListenerOptions {
    /// Sets `TCP_NODELAY` and the timeouts given on `listener` (none for
    /// non-blocking sockets); an option that cannot be set is left to the
    /// sessions.
    pub fn set(listener: &TcpListener, send: Option<Duration>, recv: Option<Duration>) -> Self {
        let timeout = |id, value: Option<Duration>| {
            let value = value?;
            sockopt::set_socket_timeout(listener, id, Some(value))
                .ok()
                .map(|()| value)
        };
        let set = Inherited {
            nodelay: sockopt::set_tcp_nodelay(listener, true).is_ok(),
            send: timeout(Timeout::Send, send),
            recv: timeout(Timeout::Recv, recv),
        };
        Self { set, checked: None }
    }

    /// Returns what `stream`, accepted from this listener, already has. The
    /// first call reads the options back; later calls trust that answer.
    pub fn of(&mut self, stream: &TcpStream) -> Inherited {
        if let Some(checked) = self.checked {
            return checked;
        }
        let checked = check(self.set, stream);
        self.checked = Some(checked);
        checked
    }
}

/// The part of `set` that `stream` really has.
fn check(set: Inherited, stream: &TcpStream) -> Inherited {
    let has = |id, want: Option<Duration>| {
        let want = want?;
        let got = sockopt::socket_timeout(stream, id).ok()??;
        (got.abs_diff(want) <= ROUNDING).then_some(want)
    };
    Inherited {
        nodelay: set.nodelay && sockopt::tcp_nodelay(stream).unwrap_or(false),
        send: has(Timeout::Send, set.send),
        recv: has(Timeout::Recv, set.recv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_report_what_they_inherited() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (send, recv) = (Duration::from_secs(300), Duration::from_secs(120));
        let mut opts = ListenerOptions::set(&listener, Some(send), Some(recv));
        let _client = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let has = opts.of(&accepted);
        // What the first socket reports is what it really has.
        assert_eq!(has.nodelay, accepted.nodelay().unwrap());
        assert_eq!(
            has.send.is_some(),
            accepted.write_timeout().unwrap() == Some(send)
        );
        assert_eq!(
            has.recv.is_some(),
            accepted.read_timeout().unwrap() == Some(recv)
        );
        #[cfg(target_os = "linux")]
        assert_eq!(
            has,
            Inherited {
                nodelay: true,
                send: Some(send),
                recv: Some(recv)
            }
        );
        // Later sockets are not asked again.
        accepted.set_nodelay(false).unwrap();
        assert_eq!(opts.of(&accepted), has);
    }

    #[test]
    fn a_socket_without_the_options_inherits_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let set = Inherited {
            nodelay: true,
            send: Some(Duration::from_secs(300)),
            recv: Some(Duration::from_secs(300)),
        };
        assert_eq!(check(set, &accepted), Inherited::default());
    }
}
