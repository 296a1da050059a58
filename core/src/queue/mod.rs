//! The queue: the on-disk format of a queued message's envelope. The
//! front end owns the files; this module only encodes and decodes.

mod envelope;

pub use envelope::{
    header_len, is_valid_queue_id, QueueEnvelope, QueueFileError, QueuedRecipient,
    MAX_QUEUE_ID_LEN, VERSION_LINE,
};
