//! Header fields hato writes into messages.

mod received;

pub use received::{received_header, ReceivedInfo};
