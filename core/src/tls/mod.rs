//! TLS inside the core: RFC 3207 STARTTLS on the smtp and submission
//! listeners, RFC 8314 implicit TLS on the submissions listener, and
//! opportunistic STARTTLS for the sending client (RFC 7435).
//!
//! rustls is itself sans-IO, so [`TlsStream`] only moves bytes: the front
//! end hands it the ciphertext it read ([`TlsStream::read_ciphertext`],
//! which appends the plaintext it decrypted), hands it the plaintext the
//! SMTP session wants to send ([`TlsStream::write_plaintext`]) and writes
//! what [`TlsStream::poll_ciphertext`] returns. No sockets, no files:
//! certificates arrive as PEM bytes ([`server_config`]), the clock arrives
//! as a [`TimeProvider`] the front end implements.
//!
//! The crypto provider is always *ring*, chosen explicitly
//! (`builder_with_details`): with two providers compiled in, rustls'
//! process-wide default would panic, and aws-lc-rs needs CMake on 32-bit
//! ARM boards. `.ci/check-core-sans-io` checks that aws-lc-rs stays out.

mod config;
mod stream;

pub use config::{client_config, server_config, TlsConfigError};
pub use rustls::time_provider::TimeProvider;
pub use rustls::{ClientConfig, ServerConfig};
pub use stream::{TlsError, TlsInfo, TlsStream};

/// rustls' own time type, for [`TimeProvider`] implementations.
pub use rustls::pki_types::UnixTime as TlsTime;

#[cfg(test)]
mod tests;
