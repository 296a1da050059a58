//! Header fields hato writes into messages, and the ones it reads.

mod message_id;
mod received;

pub use message_id::{message_id, MAX_MESSAGE_ID_LEN};
pub use received::{received_header, ReceivedInfo};
