//! Header fields hato writes into messages, the ones it reads, the
//! bounces it composes, and DKIM signatures of outgoing mail.

pub mod dkim;
pub mod dsn;
mod fold;
mod hops;
mod message_id;
mod received;

pub use hops::count_received;
pub use message_id::{message_id, MAX_MESSAGE_ID_LEN};
pub use received::{received_header, ReceivedInfo};
