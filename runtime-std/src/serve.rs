//! The `hato` front end: blocking sessions run by a pool of worker threads
//! ([`crate::workers`], at most `limits.max_connections`, a few kept warm
//! when idle), small stacks, socket read timeouts taken from the session's
//! `poll_timeout` and set only when they must change. Made for low-end
//! hardware. Bytes pass through a [`Link`] (plaintext or TLS, shared with
//! `hato-smol`).
//!
//! What a connection costs beyond its SMTP traffic: `accept4` (which also
//! gives the peer's address), the `connect` log line, a wake-up of an idle
//! worker, and the close. The local address is the listener's unless it
//! listens on a wildcard address; `TCP_NODELAY`, the send timeout and the
//! first read timeout are set on the listener and inherited
//! ([`crate::inherited`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hato_core::config::Config;
use hato_core::smtp::server::{Session, BODY_CHUNK};

use crate::host::{Connection, Server};
use crate::inherited::Inherited;
use crate::link::Link;
use crate::listeners::{self, Accepting, Listener};
use crate::log::Line;
use crate::signals;
use crate::workers::{Settings, Workers};

/// Stack of a session worker: the session keeps its buffers on the heap.
const WORKER_STACK: usize = 256 * 1024;
/// Idle session workers kept when the others retire.
const WARM_WORKERS: usize = 2;
/// How long an idle session worker waits for a connection before it
/// retires (down to [`WARM_WORKERS`]).
const WORKER_IDLE: Duration = Duration::from_secs(10);
/// Socket read buffer per connection.
const READ_BUFFER: usize = 16 * 1024;

/// The sockets of live sessions, so that a stop can end their blocked
/// reads. They are shared with the session (no duplicated descriptor).
#[derive(Debug, Default)]
struct Live {
    next: AtomicU64,
    sockets: Mutex<HashMap<u64, Arc<TcpStream>>>,
}

impl Live {
    /// Lists `stream` until the returned guard is dropped.
    fn add(self: &Arc<Self>, stream: &Arc<TcpStream>) -> Listed {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Arc::clone(stream));
        Listed {
            live: Arc::clone(self),
            key,
        }
    }

    /// Ends every blocked read: each session then answers 421 and closes.
    fn stop_reading(&self) {
        for socket in self.lock().values() {
            let _ = socket.shutdown(Shutdown::Read);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<TcpStream>>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A socket's entry in [`Live`], removed when dropped.
struct Listed {
    live: Arc<Live>,
    key: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.live.lock().remove(&self.key);
    }
}

/// An admitted connection waiting for (or run by) a session worker.
struct Job {
    conn: Connection,
    stream: Arc<TcpStream>,
    /// The options the socket has from its listener.
    has: Inherited,
    listed: Listed,
}

/// Runs the server until SIGTERM or SIGINT, then stops gracefully: new
/// connections and live sessions get 421, local delivery finishes the
/// message in hand, and the process exits.
///
/// # Errors
/// When the data directory cannot be opened or a listener cannot bind.
pub fn run(cfg: Config) -> io::Result<()> {
    let server = Server::start(cfg)?;
    let live = Arc::new(Live::default());
    {
        let (server, live) = (Arc::clone(&server), Arc::clone(&live));
        signals::on_terminate(move |signal| {
            server.begin_stop(signal);
            live.stop_reading();
            server.finish_stop();
            std::process::exit(0);
        })?;
    }
    let workers = {
        let settings = Settings {
            name: "smtp-session",
            stack: WORKER_STACK,
            max: server.cfg.limits.max_connections.max(1),
            warm: WARM_WORKERS,
            idle: WORKER_IDLE,
        };
        Arc::new(Workers::new(settings, |job: Job| {
            let Job {
                conn,
                stream,
                has,
                listed,
            } = job;
            if let Err(e) = drive(conn, &stream, has) {
                Line::new("error")
                    .kv("what", "connection")
                    .kv("error", e)
                    .emit();
            }
            drop(listed);
        }))
    };
    // The session's first read waits for a command.
    let timeout = server.cfg.timeouts.command;
    let mut acceptors = Vec::new();
    for Listener { socket, accepting } in listeners::bind_all(&server, Some(timeout))? {
        let name = format!("accept-{}", accepting.kind.as_str());
        let mut acceptor = Acceptor {
            server: Arc::clone(&server),
            live: Arc::clone(&live),
            workers: Arc::clone(&workers),
            accepting,
        };
        acceptors.push(
            thread::Builder::new()
                .name(name)
                .spawn(move || acceptor.run(&socket))?,
        );
    }
    for a in acceptors {
        let _ = a.join();
    }
    Ok(())
}

/// The accepting side of one listener.
struct Acceptor {
    server: Arc<Server>,
    live: Arc<Live>,
    workers: Arc<Workers<Job>>,
    accepting: Accepting,
}

impl Acceptor {
    fn run(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((stream, remote)) => self.admit(stream, remote),
                Err(e) => {
                    Line::new("error")
                        .kv("what", "accept")
                        .kv("error", e)
                        .emit();
                    // Out of file descriptors and the like: breathe, then go on.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Admits a connection and hands it to a session worker, or sends the
    /// refusal and closes it.
    fn admit(&mut self, mut stream: TcpStream, remote: SocketAddr) {
        let Some(peer) = self.accepting.peer(&stream, remote) else {
            return;
        };
        let conn = match self.server.admit(peer) {
            Ok(conn) => conn,
            Err(reply) => {
                let _ = stream.write_all(&reply);
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        };
        let has = self.accepting.options.of(&stream);
        let stream = Arc::new(stream);
        // Registered before a worker takes it, so a stop that begins
        // meanwhile ends its first read too.
        let listed = self.live.add(&stream);
        let job = Job {
            conn,
            stream,
            has,
            listed,
        };
        if let Err(e) = self.workers.submit(job) {
            Line::new("error").kv("what", "spawn").kv("error", e).emit();
        }
    }
}

/// Runs one session over a blocking socket until it closes.
/// `has` tells which socket options the listener passed on already.
fn drive(mut conn: Connection, mut stream: &TcpStream, has: Inherited) -> io::Result<()> {
    if !has.nodelay {
        stream.set_nodelay(true)?;
    }
    // A client that stops reading must not pin a thread forever.
    let send = Some(conn.config().timeouts.command);
    if has.send != send {
        stream.set_write_timeout(send)?;
    }
    let mut link = conn.link().map_err(io::Error::other)?;
    let mut session = conn.new_session(Instant::now(), &link);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out = Vec::with_capacity(1024);
    let mut wire = Vec::with_capacity(1024);
    let mut body = Vec::new();
    // The read timeout the socket has now (outer None: not known).
    let mut armed: Option<Option<Duration>> = has.recv.map(Some);
    loop {
        let io = Io {
            link: &mut link,
            stream,
            out: &mut out,
            wire: &mut wire,
        };
        drain(&mut conn, &mut session, io, &mut body)?;
        if session.is_closed() {
            link.close(&mut wire);
            let _ = stream.write_all(&wire);
            linger_close(stream);
            return Ok(());
        }
        if !link.pending().is_empty() {
            let used = session.handle_input(Instant::now(), link.pending());
            link.consume(used);
            if used == 0 {
                // Outputs were drained, so the session waits for a timer
                // (a reply held by the throttle): sit it out, then go on.
                let Some((deadline, _)) = session.poll_timeout() else {
                    return Err(io::Error::other("session stalled"));
                };
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                session.handle_timeout(Instant::now());
            }
            continue;
        }
        let now = Instant::now();
        let timeout = match session.poll_timeout() {
            Some((deadline, _)) if deadline <= now => {
                session.handle_timeout(now);
                continue;
            }
            Some((deadline, _)) => Some(deadline - now),
            None => None,
        };
        if !armed.is_some_and(|set| close_enough(set, timeout)) {
            stream.set_read_timeout(timeout)?;
            armed = Some(timeout);
        }
        match stream.read(&mut buf) {
            Ok(0) if conn.is_stopping() => session.shutdown(Instant::now()),
            Ok(0) => session.handle_eof(Instant::now()),
            Ok(n) => {
                if let Err(e) = link.received(Instant::now(), &buf[..n], &mut session) {
                    conn.tls_failed(&e);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => session.handle_eof(Instant::now()),
        }
    }
}

/// How much later than the session's deadline a read may time out.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// Tells whether the read timeout `set` on the socket will do for a read
/// that should end by `want`: not more than [`TIMEOUT_SLACK`] late, and
/// not before half of `want` (waking early is harmless: the loop finds no
/// timer due and sets the socket again). Saves a setsockopt per command:
/// each command re-arms the session's timer to nearly the same length.
fn close_enough(set: Option<Duration>, want: Option<Duration>) -> bool {
    match (set, want) {
        (None, None) => true,
        (Some(set), Some(want)) => set <= want + TIMEOUT_SLACK && set >= want / 2,
        _ => false,
    }
}

/// The byte path of one connection, borrowed for a drain.
struct Io<'a> {
    link: &'a mut Link,
    stream: &'a TcpStream,
    /// The session's plaintext replies.
    out: &'a mut Vec<u8>,
    /// What goes on the socket.
    wire: &'a mut Vec<u8>,
}

/// Sends replies, spools data and answers events until the session has
/// nothing more to say.
fn drain(
    conn: &mut Connection,
    session: &mut Session,
    io: Io<'_>,
    body: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let _ = session.poll_transmit(io.out);
        io.link
            .outgoing(io.out, io.wire)
            .map_err(io::Error::other)?;
        if !io.wire.is_empty() {
            let mut socket = io.stream;
            let sent = socket.write_all(io.wire);
            io.wire.clear();
            sent?;
        }
        // Message data is written in chunks of BODY_CHUNK, and what is
        // left before the next event (the end of data): one write for a
        // small message. The data always precedes the event it comes with.
        let event = session.poll_event();
        if event.is_some() || session.body_len() >= BODY_CHUNK {
            session.take_body(body);
            if !body.is_empty() {
                conn.write_body(body);
                body.clear();
            }
        }
        let Some(event) = event else {
            return Ok(());
        };
        io.link.on_event(&event).map_err(io::Error::other)?;
        let work = conn.on_event(event, session);
        if let Some(verdict) = conn.perform(work) {
            session
                .handle_verdict(Instant::now(), verdict)
                .map_err(io::Error::other)?;
        }
    }
}

/// How long a closing connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(1);
/// How much unread input a closing connection drains at most.
const LINGER_BYTES: usize = 64 * 1024;

/// Closes after the last reply without a TCP reset: closing a socket that
/// still holds unread input (pipelined commands after QUIT, a client that
/// kept talking after 421) makes the kernel send a reset, which can destroy
/// the final reply before the client reads it. So: half-close, then drain
/// the client's leftovers for a bounded time.
fn linger_close(mut stream: &TcpStream) {
    if let Err(e) = stream.shutdown(Shutdown::Write) {
        // The client is gone (it reset the connection): nothing to drain.
        if e.kind() == io::ErrorKind::NotConnected {
            return;
        }
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_timeout_is_kept_only_when_never_late_and_not_too_early() {
        let s = Duration::from_secs;
        assert!(close_enough(Some(s(300)), Some(s(300))));
        assert!(close_enough(
            Some(s(300)),
            Some(Duration::from_millis(299_995))
        ));
        assert!(!close_enough(Some(s(300)), Some(s(299)))); // would be late
        assert!(close_enough(Some(s(300)), Some(s(600)))); // early, once
        assert!(!close_enough(Some(s(300)), Some(s(601))));
        assert!(close_enough(None, None));
        assert!(!close_enough(None, Some(s(1))));
        assert!(!close_enough(Some(s(1)), None));
    }
}
