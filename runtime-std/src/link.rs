//! The bytes between a socket and a session, shared by both front ends so
//! that STARTTLS is one code path: plaintext, or TLS after STARTTLS
//! (RFC 3207) or from the first byte on an implicit-TLS listener
//! (RFC 8314). The front end reads from the socket into
//! [`Link::received`], offers [`Link::pending`] to the session and
//! [`Link::consume`]s what it took, and writes what [`Link::outgoing`]
//! produces. All TLS work happens in the core's [`TlsStream`].

use std::sync::Arc;
use std::time::Instant;

use hato_core::smtp::server::{Event, Session};
use hato_core::tls::{ServerConfig, TlsError, TlsStream};

/// One connection's byte path.
#[derive(Debug)]
pub struct Link {
    /// The certificate for STARTTLS (none: STARTTLS is not offered).
    config: Option<Arc<ServerConfig>>,
    tls: Option<TlsStream>,
    /// Plaintext read and not yet taken by the session.
    plain: Vec<u8>,
    start: usize,
}

impl Link {
    /// A plaintext connection that may switch to TLS on STARTTLS.
    pub fn plain(config: Option<Arc<ServerConfig>>) -> Self {
        Self {
            config,
            tls: None,
            plain: Vec::new(),
            start: 0,
        }
    }

    /// A connection that runs TLS from its first byte (RFC 8314).
    ///
    /// # Errors
    /// rustls refuses the configuration.
    pub fn implicit(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let tls = TlsStream::server(Arc::clone(&config))?;
        Ok(Self {
            config: Some(config),
            tls: Some(tls),
            plain: Vec::new(),
            start: 0,
        })
    }

    /// Tells whether the session may offer STARTTLS on this link.
    pub fn can_starttls(&self) -> bool {
        self.config.is_some() && self.tls.is_none()
    }

    /// Takes bytes read from the socket. Through TLS, a finished handshake
    /// is reported to the session (which forgets what it knew) before any
    /// plaintext behind it is offered.
    ///
    /// # Errors
    /// TLS failed: the session has been told (it closes); send what
    /// [`Link::outgoing`] still has (the alert) and log the error.
    pub fn received(
        &mut self,
        now: Instant,
        bytes: &[u8],
        session: &mut Session,
    ) -> Result<(), TlsError> {
        let Some(tls) = &mut self.tls else {
            self.plain.extend_from_slice(bytes);
            return Ok(());
        };
        if let Err(e) = tls.read_ciphertext(bytes, &mut self.plain) {
            session.tls_failed(now);
            return Err(e);
        }
        if let Some(info) = tls.take_established() {
            session.tls_established(now, info);
        }
        Ok(())
    }

    /// Returns the plaintext the session has not taken yet.
    pub fn pending(&self) -> &[u8] {
        &self.plain[self.start..]
    }

    /// Marks `n` bytes of [`Link::pending`] as taken.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.plain.len());
        if self.start == self.plain.len() {
            self.plain.clear();
            self.start = 0;
        }
    }

    /// Moves the session's replies (`plain`, emptied) into `wire`, the
    /// bytes to write to the socket: as they are, or encrypted, with any
    /// handshake messages TLS has to send.
    ///
    /// # Errors
    /// TLS failed earlier or its send buffer is full: close the connection.
    pub fn outgoing(&mut self, plain: &mut Vec<u8>, wire: &mut Vec<u8>) -> Result<(), TlsError> {
        match &mut self.tls {
            None => wire.append(plain),
            Some(tls) => {
                if !plain.is_empty() {
                    let written = tls.write_plaintext(plain);
                    plain.clear();
                    written?;
                }
                tls.poll_ciphertext(wire);
            }
        }
        Ok(())
    }

    /// Acts on a session event before the host sees it: on
    /// [`Event::StartTls`] (the 220 has been written) the link switches to
    /// TLS; plaintext still pending was pipelined behind STARTTLS and is
    /// dropped (the session has dropped it already).
    ///
    /// # Errors
    /// No certificate, or rustls refused it: close the connection.
    pub fn on_event(&mut self, event: &Event) -> Result<(), TlsError> {
        if !matches!(event, Event::StartTls) {
            return Ok(());
        }
        let config = self
            .config
            .clone()
            .ok_or_else(|| TlsError::Setup("STARTTLS without a certificate".into()))?;
        self.plain.clear();
        self.start = 0;
        self.tls = Some(TlsStream::server(config)?);
        Ok(())
    }

    /// Queues TLS' close_notify before the connection closes.
    pub fn close(&mut self, wire: &mut Vec<u8>) {
        if let Some(tls) = &mut self.tls {
            tls.close();
            tls.poll_ciphertext(wire);
        }
    }
}
