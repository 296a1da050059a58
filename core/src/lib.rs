//! hato-core: the sans-IO heart of the hato mail server.
//!
//! Nothing in this crate opens a socket or a file, starts a thread or reads
//! a clock. Every state machine takes bytes and the current time as input
//! and is asked for its output; the front ends (`hato`, `hato-smol`) move
//! the bytes and do the file work.
//!
//! # The run loop
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Instant;
//! use hato_core::config::Config;
//! use hato_core::directory::Directory;
//! use hato_core::policy::ListenerKind;
//! use hato_core::smtp::server::{Event, Peer, Session, Verdict};
//!
//! let cfg = Arc::new(Config::defaults("mail.example.test"));
//! let dir = Arc::new(Directory::default());
//! let peer = Peer {
//!     remote: "192.0.2.1:40000".parse().unwrap(),
//!     local: "127.0.0.1:2525".parse().unwrap(),
//!     listener: ListenerKind::Smtp,
//! };
//! let mut session = Session::new(cfg, dir, peer, Instant::now());
//! let mut out = Vec::new();
//! let mut body = Vec::new();
//! loop {
//!     // 1. Send what the session wants to say.
//!     let _ = session.poll_transmit(&mut out); // write `out` to the socket
//!     // 2. Take message data, then events (DataEnd comes after the last chunk).
//!     session.take_body(&mut body); // append `body` to the spool file
//!     while let Some(event) = session.poll_event() {
//!         if let Event::DataEnd { .. } = event {
//!             // fsync, then:
//!             session.handle_verdict(Instant::now(), Verdict::Queued).unwrap();
//!         }
//!     }
//!     if session.is_closed() { break; }
//!     // 3. Block until input or `session.poll_timeout()`, then feed it:
//!     let input = b"QUIT\r\n";
//!     let used = session.handle_input(Instant::now(), input);
//!     let _ = used; // keep the unused rest; 0 means: drain outputs first
//! }
//! ```
//!
//! # Modules
//! - [`smtp`]: addresses, commands, replies, parsers, the server and client sessions.
//! - [`policy`]: every accept / refuse decision.
//! - [`config`]: `hato.toml` into a typed [`config::Config`].
//! - [`directory`]: the users file format.
//! - [`dns`]: DNS queries, answers, the resolver and MX selection.
//! - [`message`]: headers hato writes (Received), bounces (RFC 3464 DSNs),
//!   DKIM signing (RFC 6376, RFC 8463).
//! - [`queue`]: the queue file format and the delivery scheduler.
//! - [`refusal`]: the reasons for refusals and their replies.
//! - [`time`], [`net`]: timers, dates, CIDR networks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod directory;
pub mod dns;
pub mod message;
pub mod net;
pub mod policy;
pub mod queue;
pub mod refusal;
pub mod smtp;
pub mod time;
pub mod tls;
