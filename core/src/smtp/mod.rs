//! SMTP (RFC 5321): addresses, commands, replies, the parsers, the
//! receiving session and the sending session.

pub mod address;
pub mod client;
pub mod command;
pub mod parse;
pub mod reply;
pub mod server;
