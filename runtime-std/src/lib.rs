//! hato's blocking front end, and the pieces both front ends share: the
//! store (spool, queue, Maildir, users file), local delivery, logging and
//! the command line. Blocking file work is written once, here; `hato-smol`
//! calls it through `smol::unblock`.

pub mod delivery;
pub mod log;
pub mod store;
pub mod cli;
pub mod host;
pub mod serve;
