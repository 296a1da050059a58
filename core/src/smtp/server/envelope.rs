//! The envelope of the message being received (RFC 5321 §2.3.1): who
//! sent it, to whom, and from where.

use std::net::IpAddr;

use crate::policy::Destination;
use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::command::MailParams;

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path as the client gave it.
    pub path: ForwardPath,
    /// Where policy decided it goes.
    pub destination: Destination,
}

/// The mail transaction in progress: MAIL, then RCPTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The HELO / EHLO name.
    pub helo: String,
    /// Whether the client used EHLO.
    pub extended: bool,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The reverse-path of MAIL FROM.
    pub from: ReversePath,
    /// MAIL FROM parameters.
    pub params: MailParams,
    /// Accepted recipients, in order.
    pub recipients: Vec<Recipient>,
}
