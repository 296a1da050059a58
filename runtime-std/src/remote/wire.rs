//! One SMTP client connection, driven over a blocking `TcpStream`: the
//! thin loop around the sans-IO [`ClientSession`] (write its transmits,
//! answer its events, read with its deadline as the socket timeout).
//!
//! [`Wire::connect`] waits for the greeting and EHLO; [`Wire::send`] runs
//! one transaction and leaves the connection idle, so the caller may send
//! another message on it (connection reuse) or [`Wire::quit`].
//!
//! With a TLS client configuration, the session uses STARTTLS when the
//! server offers it (RFC 3207; opportunistic, RFC 7435): after the 220 the
//! bytes go through `hato_core::tls::TlsStream`, and the session starts
//! again with EHLO inside TLS. A failed handshake ends the connection
//! ([`CloseReason::TlsFailed`]); the caller then tries the same host again
//! in plaintext.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use std::sync::Arc;

use hato_core::smtp::client::{
    ClientConfig, ClientEvent, ClientSession, CloseReason, Failure, Outcome, Transaction,
};
use hato_core::tls::{self, TlsInfo, TlsStream};

/// The most a read takes from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// How long a write may block before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection ready for transactions.
#[derive(Debug)]
pub(crate) struct Wire {
    stream: TcpStream,
    session: ClientSession,
    /// The peer, for logs and bounces: `name[ip]:port`.
    pub(crate) peer: String,
    /// The server's host name, as the DSN's `Remote-MTA` names it.
    pub(crate) mta: String,
    /// What TLS agreed on, once STARTTLS succeeded.
    pub(crate) tls_info: Option<TlsInfo>,
    tls: Option<TlsStream>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    cipher: Vec<u8>,
}

/// Why a connection could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// TCP could not connect.
    Connect(String),
    /// The session ended before it was ready (refused greeting or EHLO,
    /// 421, timeout, protocol error, closed).
    Closed(CloseReason),
    /// Writing or reading failed.
    Io(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Closed(r) => write!(f, "{}", close_text(r)),
            Self::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// Words for why a session closed.
pub(crate) fn close_text(r: &CloseReason) -> String {
    match r {
        CloseReason::Quit => "the server ended the session".into(),
        CloseReason::Refused(reply) => format!("the server refused the session: {reply}"),
        CloseReason::Timeout(stage) => format!("timeout waiting for {}", stage.as_str()),
        CloseReason::Protocol(e) => format!("protocol error: {e}"),
        CloseReason::PeerClosed => "the server closed the connection".into(),
        CloseReason::TlsFailed => "the TLS handshake after STARTTLS failed".into(),
    }
}

/// What one transaction gave.
#[derive(Debug)]
pub(crate) struct Sent {
    /// One outcome per recipient, in order.
    pub(crate) outcomes: Vec<Outcome>,
    /// Whether any of the body went out (a lost connection after that
    /// may have delivered the message: do not try another host now).
    pub(crate) body_started: bool,
}

impl Wire {
    /// Connects to `addr` and waits until the session is ready (greeting
    /// and EHLO / HELO done, and STARTTLS when `tls` is given and the
    /// server offers it).
    pub(crate) fn connect(
        addr: SocketAddr,
        name: &str,
        mut cfg: ClientConfig,
        tls: Option<&Arc<tls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Result<Self, WireError> {
        let stream = TcpStream::connect_timeout(&addr, connect_timeout)
            .map_err(|e| WireError::Connect(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(|e| WireError::Io(e.to_string()))?;
        cfg.starttls = tls.is_some();
        let mut wire = Self {
            stream,
            session: ClientSession::new(cfg, Instant::now()),
            peer: format!("{name}[{}]:{}", addr.ip(), addr.port()),
            mta: name.to_owned(),
            tls_info: None,
            tls: None,
            inbuf: Vec::new(),
            out: Vec::new(),
            cipher: Vec::new(),
        };
        loop {
            wire.flush()?;
            match wire.session.poll_event() {
                Some(ClientEvent::Ready) => return Ok(wire),
                Some(ClientEvent::Closed { reason }) => {
                    let _ = wire.flush();
                    return Err(WireError::Closed(reason));
                }
                Some(ClientEvent::StartTls) => {
                    let Some(config) = tls else {
                        return Err(WireError::Io("STARTTLS without a TLS setup".into()));
                    };
                    wire.start_tls(config, name, addr)?;
                }
                Some(_) => {}
                None => wire.read_some()?,
            }
        }
    }

    /// Starts the TLS client after the server's 220 to STARTTLS; what the
    /// server sent behind the 220 in plaintext is dropped.
    fn start_tls(
        &mut self,
        config: &Arc<tls::ClientConfig>,
        name: &str,
        addr: SocketAddr,
    ) -> Result<(), WireError> {
        self.inbuf.clear();
        // SNI names the host; an address route has no name to send.
        let server_name = if name.parse::<std::net::IpAddr>().is_ok() {
            addr.ip().to_string()
        } else {
            name.to_owned()
        };
        match TlsStream::client(Arc::clone(config), &server_name) {
            Ok(t) => {
                self.tls = Some(t);
                self.flush()
            }
            Err(_) => {
                let _ = self.session.tls_failed(Instant::now());
                Ok(())
            }
        }
    }

    /// Tells whether the session is still open and idle.
    pub(crate) fn is_usable(&self) -> bool {
        !self.session.is_closed()
    }

    /// Runs one transaction, streaming `body` (CRLF text, not stuffed).
    /// The outcomes say what became of each recipient; a failed
    /// connection fails them temporarily.
    pub(crate) fn send(&mut self, tx: Transaction, mut body: impl Read) -> Sent {
        let n = tx.recipients.len();
        let mut body_started = false;
        let lost = || Outcome::Temporary(Failure::ConnectionLost);
        if self.session.send(Instant::now(), tx).is_err() {
            return Sent {
                outcomes: (0..n).map(|_| lost()).collect(),
                body_started,
            };
        }
        loop {
            if self.flush().is_err() {
                // The session learns of it and fails the transaction.
                self.session.handle_eof(Instant::now());
            }
            match self.session.poll_event() {
                Some(ClientEvent::TransactionDone { outcomes }) => {
                    return Sent {
                        outcomes,
                        body_started,
                    }
                }
                Some(ClientEvent::WantBody) => {
                    body_started = true;
                    if self.stream_body(&mut body).is_err() {
                        // A broken connection or an unreadable queue file:
                        // end the session, which fails the transaction.
                        self.session.handle_eof(Instant::now());
                    }
                }
                Some(_) => {}
                None if self.session.is_closed() => {
                    return Sent {
                        outcomes: (0..n).map(|_| lost()).collect(),
                        body_started,
                    };
                }
                None => {
                    if self.read_some().is_err() {
                        self.session.handle_eof(Instant::now());
                    }
                }
            }
        }
    }

    /// Ends the session with QUIT (best effort, bounded by the session's
    /// own timer) and closes the connection.
    pub(crate) fn quit(mut self) {
        if self.session.quit(Instant::now()).is_err() {
            return;
        }
        for _ in 0..64 {
            if self.flush().is_err() {
                return;
            }
            match self.session.poll_event() {
                Some(ClientEvent::Closed { .. }) => return,
                Some(_) => {}
                None => {
                    if self.read_some().is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Feeds the body to the session, writing as its buffer fills.
    fn stream_body(&mut self, body: &mut impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let took = self
                    .session
                    .push_body(Instant::now(), rest)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                rest = &rest[took..];
                self.flush().map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        self.session
            .end_body(Instant::now())
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(())
    }

    /// Writes out what the session has to send (encrypted once TLS runs,
    /// with what the handshake itself has to send).
    fn flush(&mut self) -> Result<(), WireError> {
        let _ = self.session.poll_transmit(&mut self.out);
        let bytes = match &mut self.tls {
            Some(t) => {
                if !self.out.is_empty() {
                    let r = t.write_plaintext(&self.out);
                    self.out.clear();
                    r.map_err(|e| WireError::Io(e.to_string()))?;
                }
                t.poll_ciphertext(&mut self.cipher);
                &mut self.cipher
            }
            None => &mut self.out,
        };
        if !bytes.is_empty() {
            let r = self.stream.write_all(bytes);
            bytes.clear();
            r.map_err(|e| WireError::Io(e.to_string()))?;
        }
        Ok(())
    }

    /// Gives the session buffered input, else reads from the socket until
    /// its deadline (firing the timer when it passes).
    fn read_some(&mut self) -> Result<(), WireError> {
        if !self.inbuf.is_empty() {
            let used = self.session.handle_input(Instant::now(), &self.inbuf);
            self.inbuf.drain(..used);
            if used > 0 {
                return Ok(());
            }
        }
        let wait = match self.session.poll_timeout() {
            Some((at, _)) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(1),
        };
        if wait.is_zero() {
            self.session.handle_timeout(Instant::now());
            return Ok(());
        }
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| WireError::Io(e.to_string()))?;
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                if self.tls.is_some() && self.tls_info.is_none() {
                    // Closed in the middle of the handshake.
                    let _ = self.session.tls_failed(Instant::now());
                } else {
                    self.session.handle_eof(Instant::now());
                }
                Ok(())
            }
            Ok(n) => match &mut self.tls {
                None => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    Ok(())
                }
                Some(t) => {
                    let read = t.read_ciphertext(&buf[..n], &mut self.inbuf);
                    if let Some(info) = t.take_established() {
                        self.tls_info = Some(info);
                        let _ = self.session.tls_established(Instant::now());
                    }
                    if read.is_err() {
                        // The alert goes out; the session ends.
                        let _ = self.flush();
                        if self.tls_info.is_none() {
                            let _ = self.session.tls_failed(Instant::now());
                        } else {
                            self.session.handle_eof(Instant::now());
                        }
                    }
                    // Handshake messages to answer.
                    self.flush()
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.session.handle_timeout(Instant::now());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => {
                self.session.handle_eof(Instant::now());
                Err(WireError::Io(e.to_string()))
            }
        }
    }
}
