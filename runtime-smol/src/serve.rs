//! The async serve loop: one task per connection on a smol executor
//! (one thread), a timer per session from `poll_timeout` (re-armed
//! lazily, see `LazyTimer`), and the shared blocking work (spool writes,
//! fsync, password checks) moved off the executor with `smol::unblock`. Bytes pass through the shared
//! [`Link`](hato_runtime_std::link::Link) (plaintext or TLS).
//! `TCP_NODELAY` is set on the listener and inherited by its sockets
//! ([`hato_runtime_std::inherited`]); the local address of a connection is
//! the listener's unless it listens on a wildcard address.

use std::io::{self, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hato_core::config::Config;
use hato_core::smtp::server::{Peer, Session, BODY_CHUNK};
use hato_runtime_std::host::{Connection, Server};
use hato_runtime_std::link::Link;
use hato_runtime_std::listeners::{self, Accepting, Listener};
use hato_runtime_std::log::Line;
use hato_runtime_std::signals;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{Async, Executor, Timer};

/// Socket read buffer of a connection that is sending a message.
const READ_BUFFER: usize = 16 * 1024;
/// Socket read buffer of a new connection: commands are short, and an idle
/// connection should cost little (10,000 of them are a target).
const FIRST_READ_BUFFER: usize = 1024;

/// Runs the server until SIGTERM or SIGINT, then stops gracefully: the
/// listeners close, live sessions get 421, local delivery finishes the
/// message in hand, and `run` returns.
///
/// # Errors
/// When the data directory cannot be opened or a listener cannot bind.
pub(crate) fn run(cfg: Config) -> io::Result<()> {
    let server = Server::start(cfg)?;
    // Every task holds the receiver; dropping the sender wakes them all.
    let (stop_tx, stop) = smol::channel::bounded::<()>(1);
    {
        let server = Arc::clone(&server);
        signals::on_terminate(move |signal| {
            server.begin_stop(signal);
            drop(stop_tx);
        })?;
    }
    let ex = Arc::new(Executor::new());
    // Non-blocking sockets: no socket timeouts, only TCP_NODELAY.
    for Listener { socket, accepting } in listeners::bind_all(&server, None)? {
        let listener = Async::new(socket)?;
        let task = accept_loop(
            Arc::clone(&server),
            Arc::clone(&ex),
            listener,
            accepting,
            stop.clone(),
        );
        ex.spawn(task).detach();
    }
    // One executor thread: sessions, TLS and timers run here; disk work
    // and password checks go to smol's blocking pool. A second executor
    // thread cost more than it gave on the two-core machines hato is for:
    // tasks woken on one thread and run on the other, each hand-over a
    // futex wake, made a single session ~20 % slower (bench/notes.md).
    smol::block_on(ex.run(async {
        let _ = stop.recv().await;
        // The executor keeps running the sessions' tasks while the stop
        // waits for them on the blocking pool.
        let server = Arc::clone(&server);
        smol::unblock(move || server.finish_stop()).await;
    }));
    Ok(())
}

async fn accept_loop(
    server: Arc<Server>,
    ex: Arc<Executor<'static>>,
    listener: Async<TcpListener>,
    mut accepting: Accepting,
    stop: Receiver<()>,
) {
    loop {
        let accepted = async { Some(listener.accept().await) }
            .or(async {
                let _ = stop.recv().await;
                None
            })
            .await;
        let Some(accepted) = accepted else {
            return;
        };
        match accepted {
            Ok((stream, remote)) => {
                let Some(peer) = accepting.peer(stream.get_ref(), remote) else {
                    continue;
                };
                let nodelay = accepting.options.of(stream.get_ref()).nodelay;
                let server = Arc::clone(&server);
                let stop = stop.clone();
                ex.spawn(async move {
                    if let Err(e) = connection(server, stream, peer, nodelay, stop).await {
                        Line::new("error")
                            .kv("what", "connection")
                            .kv("error", e)
                            .emit();
                    }
                })
                .detach();
            }
            Err(e) => {
                Line::new("error")
                    .kv("what", "accept")
                    .kv("error", e)
                    .emit();
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Admits an accepted socket (`nodelay`: `TCP_NODELAY` came from the
/// listener) and runs its session, or sends the refusal and closes it.
async fn connection(
    server: Arc<Server>,
    mut stream: Async<TcpStream>,
    peer: Peer,
    nodelay: bool,
    stop: Receiver<()>,
) -> io::Result<()> {
    let conn = match server.admit(peer) {
        Ok(conn) => conn,
        Err(reply) => {
            let _ = stream.write_all(&reply).await;
            let _ = stream.get_ref().shutdown(Shutdown::Both);
            return Ok(());
        }
    };
    if !nodelay {
        stream.get_ref().set_nodelay(true)?;
    }
    drive(conn, stream, stop).await
}

/// What woke the session up.
enum Wake {
    Read(io::Result<usize>),
    Timeout,
    Stop,
}

async fn drive(
    conn: Connection,
    mut stream: Async<TcpStream>,
    stop: Receiver<()>,
) -> io::Result<()> {
    let write_timeout = conn.config().timeouts.command;
    // The first connection loads (or generates) the certificate: on the
    // blocking pool, not on the executor every session shares.
    let (conn, link) = if conn.link_blocks() {
        smol::unblock(move || {
            let link = conn.link();
            (conn, link)
        })
        .await
    } else {
        let link = conn.link();
        (conn, link)
    };
    let mut link = link.map_err(io::Error::other)?;
    let mut session = conn.new_session(Instant::now(), &link);
    let mut host = Some(conn);
    let mut buf = vec![0u8; FIRST_READ_BUFFER];
    let mut out = Vec::new();
    let mut wire = Vec::new();
    let mut body = Vec::new();
    let mut timer = LazyTimer::default();
    loop {
        let io = Io {
            link: &mut link,
            stream: &mut stream,
            out: &mut out,
            wire: &mut wire,
            write_timeout,
        };
        // Boxed: the drain's state (disk work on the blocking pool, TLS
        // writes) lives on the heap only while it runs, so an idle
        // connection's future stays small (10,000 of them are held).
        Box::pin(drain(&mut host, &mut session, io, &mut body)).await?;
        if session.is_closed() {
            link.close(&mut wire);
            let _ = Box::pin(write_all(&mut stream, &wire, write_timeout)).await;
            Box::pin(linger_close(&mut stream)).await;
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
                Timer::at(deadline).await;
                session.handle_timeout(Instant::now());
            }
            continue;
        }
        timer.arm(session.poll_timeout().map(|(d, _)| d));
        let wake = async { Wake::Read(stream.read(&mut buf).await) }
            .or(async {
                timer.fired().await;
                Wake::Timeout
            })
            .or(async {
                let _ = stop.recv().await;
                Wake::Stop
            })
            .await;
        match wake {
            Wake::Stop => session.shutdown(Instant::now()),
            Wake::Read(Ok(0)) => session.handle_eof(Instant::now()),
            Wake::Read(Ok(n)) => {
                if let Err(e) = link.received(Instant::now(), &buf[..n], &mut session) {
                    if let Some(conn) = &host {
                        conn.tls_failed(&e);
                    }
                }
                // A full read means bulk data (DATA): grow once.
                if n == buf.len() && buf.len() < READ_BUFFER {
                    buf.resize(READ_BUFFER, 0);
                }
            }
            Wake::Read(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Wake::Read(Err(_)) => session.handle_eof(Instant::now()),
            Wake::Timeout => {
                // The timer may be armed for an earlier deadline than the
                // session's current one (see `LazyTimer`).
                let now = Instant::now();
                if session.poll_timeout().is_some_and(|(d, _)| d <= now) {
                    session.handle_timeout(now);
                }
            }
        }
    }
}

/// A session's timer, re-armed only when its deadline comes sooner.
///
/// Every command moves the session's deadline (the command timeout starts
/// again), and registering a timer with async-io's reactor wakes the
/// reactor thread. So the timer stays armed for the deadline it has while
/// the new one is later: it then fires early, the loop sees that the
/// session's deadline is still ahead, and arms it for that. A connection
/// registers a timer about once per timeout period, not once per command.
#[derive(Default)]
struct LazyTimer {
    timer: Option<Timer>,
    /// The deadline the timer is armed for, until it fires.
    armed: Option<Instant>,
}

impl LazyTimer {
    /// Makes sure the timer fires no later than `deadline`.
    fn arm(&mut self, deadline: Option<Instant>) {
        let Some(deadline) = deadline else {
            return;
        };
        if self.armed.is_some_and(|armed| armed <= deadline) {
            return;
        }
        match &mut self.timer {
            Some(timer) => timer.set_at(deadline),
            None => self.timer = Some(Timer::at(deadline)),
        }
        self.armed = Some(deadline);
    }

    /// Completes when the armed deadline passes; never when none is armed.
    async fn fired(&mut self) {
        match (&mut self.timer, self.armed) {
            (Some(timer), Some(_)) => {
                timer.await;
                self.armed = None;
            }
            _ => smol::future::pending().await,
        }
    }
}

/// The byte path of one connection, borrowed for a drain.
struct Io<'a> {
    link: &'a mut Link,
    stream: &'a mut Async<TcpStream>,
    /// The session's plaintext replies.
    out: &'a mut Vec<u8>,
    /// What goes on the socket.
    wire: &'a mut Vec<u8>,
    write_timeout: Duration,
}

/// Writes `bytes`: at once while the socket takes them (replies are small
/// and usually fit its buffer, so no timer is registered), else waiting
/// for the socket with `write_timeout` as the bound.
async fn write_all(
    stream: &mut Async<TcpStream>,
    bytes: &[u8],
    write_timeout: Duration,
) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        // The socket is non-blocking (Async made it so).
        match stream.get_ref().write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if rest.is_empty() {
        return Ok(());
    }
    stream
        .write_all(rest)
        .or(async {
            Timer::after(write_timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await
}

/// Sends replies, spools data and answers events until the session has
/// nothing more to say. Disk work (and password checks) run on smol's
/// blocking pool; the connection state travels there and back with it.
async fn drain(
    host: &mut Option<Connection>,
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
            let sent = write_all(io.stream, io.wire, io.write_timeout).await;
            io.wire.clear();
            sent?;
        }
        // Message data is written in chunks of BODY_CHUNK, and what is
        // left together with the disk work of the next event (the end of
        // data): a small message costs one trip to the blocking pool, not
        // two. The data always precedes the event it comes with.
        let event = session.poll_event();
        if event.is_some() || session.body_len() >= BODY_CHUNK {
            session.take_body(body);
        }
        let Some(event) = event else {
            if body.is_empty() {
                return Ok(());
            }
            write_body(host, body).await?;
            continue;
        };
        io.link.on_event(&event).map_err(io::Error::other)?;
        let conn = host.as_mut().ok_or_else(lost)?;
        let work = conn.on_event(event, session);
        let verdict = if work.blocks() || !body.is_empty() {
            let (mut conn, chunk) = (take(host)?, std::mem::take(body));
            let (conn, mut chunk, verdict) = smol::unblock(move || {
                if !chunk.is_empty() {
                    conn.write_body(&chunk);
                }
                let verdict = conn.perform(work);
                (conn, chunk, verdict)
            })
            .await;
            chunk.clear();
            *body = chunk;
            *host = Some(conn);
            verdict
        } else {
            conn.perform(work)
        };
        if let Some(verdict) = verdict {
            session
                .handle_verdict(Instant::now(), verdict)
                .map_err(io::Error::other)?;
        }
    }
}

/// Appends a chunk of message data to the spool file on the blocking pool.
async fn write_body(host: &mut Option<Connection>, body: &mut Vec<u8>) -> io::Result<()> {
    let (mut conn, chunk) = (take(host)?, std::mem::take(body));
    let (conn, mut chunk) = smol::unblock(move || {
        conn.write_body(&chunk);
        (conn, chunk)
    })
    .await;
    chunk.clear();
    *body = chunk;
    *host = Some(conn);
    Ok(())
}

/// How long a closing connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(1);
/// How much unread input a closing connection drains at most.
const LINGER_BYTES: usize = 64 * 1024;

/// Closes after the last reply without a TCP reset (see the blocking front
/// end's `linger_close`): half-close, then drain leftovers for a bounded time.
async fn linger_close(stream: &mut Async<TcpStream>) {
    let _ = stream.get_ref().shutdown(Shutdown::Write);
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    drain
        .or(async {
            Timer::after(LINGER).await;
        })
        .await;
}

fn take(host: &mut Option<Connection>) -> io::Result<Connection> {
    host.take().ok_or_else(lost)
}

fn lost() -> io::Error {
    io::Error::other("connection state lost")
}
