//! One TLS connection, server or client side, as a byte pump: ciphertext
//! in, plaintext out, plaintext in, ciphertext out (rustls' buffered
//! `Connection` fed from slices and drained into a `Vec`).

use std::fmt;
use std::io::Read as _;
use std::io::Write as _;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Why a TLS connection failed. Fatal: the front end sends what
/// [`TlsStream::poll_ciphertext`] still has (the alert) and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The peer broke the protocol or the handshake failed (rustls' words).
    Protocol(String),
    /// The server name for the client is not a valid DNS name or address.
    BadServerName(String),
    /// rustls could not be set up for this connection.
    Setup(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "TLS failed: {e}"),
            Self::BadServerName(n) => write!(f, "not a server name for TLS: {n}"),
            Self::Setup(e) => write!(f, "TLS setup failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// What the handshake agreed on, for logs and the Received header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3` or `TLSv1_2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// One TLS connection.
#[derive(Debug)]
pub struct TlsStream {
    conn: Connection,
    /// The handshake finished and [`TlsStream::take_established`] said so.
    reported: bool,
    /// The error that ended the connection (sticky, as rustls' own).
    failed: Option<TlsError>,
}

impl TlsStream {
    /// Starts the server side; the client speaks first.
    ///
    /// # Errors
    /// [`TlsError::Setup`] when rustls refuses the configuration.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    /// Starts the client side: the ClientHello (with `server_name` as SNI
    /// when it is a name) is ready in [`TlsStream::poll_ciphertext`].
    ///
    /// # Errors
    /// [`TlsError::BadServerName`] or [`TlsError::Setup`].
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::BadServerName(server_name.to_owned()))?;
        let conn =
            ClientConnection::new(config, name).map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(mut conn: Connection) -> Self {
        // Bounds what is buffered for sending (plaintext before the
        // handshake ends, ciphertext not yet written).
        conn.set_buffer_limit(Some(256 * 1024));
        Self {
            conn,
            reported: false,
            failed: None,
        }
    }

    /// Feeds ciphertext read from the peer and appends the plaintext it
    /// carried to `plain`. Consumes all of `input`.
    ///
    /// # Errors
    /// The handshake or a record failed; the error is sticky. Send what
    /// [`TlsStream::poll_ciphertext`] returns (the alert), then close.
    pub fn read_ciphertext(&mut self, input: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut rest = input;
        while !rest.is_empty() {
            let read = self.conn.read_tls(&mut rest);
            let processed = self.conn.process_new_packets();
            let state = match (read, processed) {
                (_, Err(e)) => return Err(self.fail(e.to_string())),
                (Err(e), _) => return Err(self.fail(e.to_string())),
                (Ok(_), Ok(state)) => state,
            };
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let at = plain.len();
                plain.resize(at + ready, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plain[at..]) {
                    plain.truncate(at);
                    return Err(self.fail(e.to_string()));
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: String) -> TlsError {
        let e = TlsError::Protocol(e);
        self.failed = Some(e.clone());
        e
    }

    /// Queues plaintext to send; before the handshake ends it waits
    /// inside rustls (bounded), then goes out encrypted.
    ///
    /// # Errors
    /// The connection failed before, or the send buffer is full.
    pub fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.conn.writer().write_all(data) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    /// Appends the ciphertext to send to `out`; returns how many bytes.
    pub fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let mut n = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    }

    /// Returns what the handshake agreed on, once, when it has finished.
    pub fn take_established(&mut self) -> Option<TlsInfo> {
        if self.reported || self.conn.is_handshaking() || self.failed.is_some() {
            return None;
        }
        self.reported = true;
        Some(self.info())
    }

    /// Tells whether the handshake has finished.
    pub fn is_established(&self) -> bool {
        !self.conn.is_handshaking() && self.failed.is_none()
    }

    /// Returns the version and cipher suite (placeholders before the
    /// handshake ends).
    pub fn info(&self) -> TlsInfo {
        let version = self
            .conn
            .protocol_version()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:?}"));
        let cipher = self
            .conn
            .negotiated_cipher_suite()
            .map_or_else(|| "-".to_owned(), |s| format!("{:?}", s.suite()));
        TlsInfo { version, cipher }
    }

    /// Queues a close_notify alert (send it with `poll_ciphertext`).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }
}
