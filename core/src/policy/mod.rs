//! Every accept / refuse decision, as pure functions of the configuration,
//! the mailbox directory and the client. Each refusal carries a
//! [`RefuseReason`](crate::refusal::RefuseReason) that is logged.

mod auth_limits;
mod connections;
pub mod deny;
mod recipient;
mod sender;
pub mod state;

pub use auth_limits::AuthLimits;
pub use connections::ConnectionTable;
pub use recipient::{check_recipient, Destination};
pub use sender::user_owns;
pub use state::{PolicySettings, PolicyState};

use std::net::IpAddr;

/// Which kind of listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Mail exchange (port 25 style): anyone may send to our domains.
    Smtp,
    /// Message submission (RFC 6409): authentication required before MAIL.
    Submission,
    /// Submission over implicit TLS (RFC 8314 §3.3, port 465):
    /// TLS from the first byte, authentication required before MAIL.
    Submissions,
}

impl ListenerKind {
    /// Returns the name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Submission => "submission",
            Self::Submissions => "submissions",
        }
    }
}

/// What policy knows about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's IP address.
    pub ip: IpAddr,
    /// Our address the client connected to: an address literal naming it
    /// (`user@[192.0.2.1]`) means a local mailbox.
    pub local_ip: IpAddr,
    /// The listener it connected to.
    pub listener: ListenerKind,
    /// Whether it authenticated (SMTP AUTH; the seam for a later change).
    pub authenticated: bool,
}
