//! hato's blocking front end, and the pieces both front ends share: the
//! store (spool, queue, Maildir, users file), local delivery, logging,
//! the DNS client and its checks, and the command line. Blocking file and
//! network work is written once, here; `hato-smol` calls it through
//! `smol::unblock`.

pub mod auth;
pub mod cli;
pub mod control;
pub mod delivery;
pub mod direct;
pub mod dkim;
pub mod dns;
pub mod dns_checks;
pub mod host;
pub mod inherited;
pub mod link;
pub mod listeners;
pub mod lmtp;
#[cfg(test)]
pub(crate) mod lmtp_fake;
pub mod log;
pub mod policy_store;
pub mod queue_admin;
pub mod remote;
pub mod reports;
pub mod serve;
pub mod signals;
pub mod store;
pub mod tls_files;
pub mod workers;
