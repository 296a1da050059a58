//! Builds the rustls configurations from bytes: the server's certificate
//! chain and key in PEM (RFC 7468), read by the front end from the files
//! `tls.certificate` and `tls.key` name (or generated), and the
//! opportunistic client configuration of RFC 7435.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfigError {
    /// The certificate file holds no `CERTIFICATE` block, or a broken one.
    Certificate(String),
    /// The key file holds no private key (PKCS#8, PKCS#1 or SEC1), or a broken one.
    Key(String),
    /// rustls refused the pair (the key does not match the certificate, ...).
    Rejected(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => write!(f, "certificate: {e}"),
            Self::Key(e) => write!(f, "private key: {e}"),
            Self::Rejected(e) => write!(f, "certificate and key refused: {e}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Builds the server configuration: TLS 1.2 and 1.3 (rustls' safe
/// defaults), no client certificates, the chain in `cert_pem` (leaf
/// first) and the key in `key_pem`.
///
/// # Errors
/// A [`TlsConfigError`] saying which part is wrong.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    time: Arc<dyn TimeProvider>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsConfigError::Certificate(
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsConfigError::Key(e.to_string()))?;
    let config = ServerConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsConfigError::Rejected(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Builds the opportunistic client configuration of RFC 7435 for
/// outbound STARTTLS: the connection is encrypted against passive
/// eavesdroppers, but the server's certificate is **not** verified (any
/// certificate, self-signed or expired, is accepted), because SMTP between
/// MTAs falls back to plaintext anyway when TLS fails. The handshake
/// signatures are still checked, so the server must hold the key of the
/// certificate it shows.
///
/// # Errors
/// Only if rustls refuses its own safe defaults (never in practice).
pub fn client_config(time: Arc<dyn TimeProvider>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = provider();
    let verifier = Arc::new(Opportunistic {
        provider: Arc::clone(&provider),
    });
    let config = ClientConfig::builder_with_details(provider, time)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rejected(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (RFC 7435 opportunistic security) but
/// checks the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct Opportunistic {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Opportunistic {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
