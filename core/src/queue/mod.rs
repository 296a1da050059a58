//! The queue: the on-disk format of a queued message's envelope, and the
//! delivery scheduler (pure, in virtual time). The front end owns the
//! files; this module only encodes, decodes and decides.

mod envelope;
mod retry;
mod route;
mod schedule;
#[cfg(test)]
mod sim_tests;

pub use envelope::{
    header_len, is_valid_queue_id, QueueEnvelope, QueueFileError, QueuedRecipient,
    MAX_QUEUE_ID_LEN, VERSION_LINE,
};
pub use retry::Settings;
pub use route::{route, Route, Target};
pub use schedule::{AlreadyQueued, AttemptResult, NewMessage, SchedEvent, Scheduler, Work};
