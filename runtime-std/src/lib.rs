//! hato's blocking front end, and the pieces both front ends share: the
//! store (spool, queue, Maildir, users file), local delivery, logging and
//! the command line. Blocking file work is written once, here; `hato-smol`
//! calls it through `smol::unblock`.

pub mod cli;
pub mod delivery;
pub mod host;
pub mod log;
pub mod serve;
pub mod signals;
pub mod store;
