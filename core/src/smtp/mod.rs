//! SMTP (RFC 5321): addresses, commands, replies, the parsers and the
//! receiving session.

pub mod address;
pub mod command;
pub mod parse;
pub mod reply;
pub mod server;
