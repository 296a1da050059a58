//! The rules of message submission for an authenticated client (RFC 6409):
//! the envelope sender and the From: and Sender: header fields must be
//! addresses the user owns (§6.1; 553 5.7.1 otherwise), and a message
//! without Message-ID or Date gets them (§8.3, §8.6).
//!
//! The header block is held back from the spool until it is complete (at
//! most one body chunk); then it is checked and the missing fields are
//! added at its end. The From: check is decided here, and its refusal is
//! sent at the end of data, when the client listens again.

use mailparse::{addrparse_header, MailAddr, MailHeaderMap as _};

use crate::policy::user_owns;
use crate::refusal::RefuseReason;
use crate::smtp::address::ReversePath;
use crate::time::UnixTime;

use super::{Session, BODY_CHUNK};

/// The header block of a submitted message being held.
#[derive(Debug)]
pub(super) struct HeaderFix {
    /// Where the client's data starts in the body (after our Received).
    start: usize,
    /// The date of receipt, for a missing Date field.
    date: UnixTime,
}

impl HeaderFix {
    pub(super) fn new(start: usize, date: UnixTime) -> Self {
        Self { start, date }
    }
}

impl Session {
    /// MAIL FROM of an authenticated client: the address must be the user's.
    /// The null sender is allowed (it cannot impersonate anyone).
    pub(super) fn check_owned_sender(&self, from: &ReversePath) -> Result<(), RefuseReason> {
        let (Some(user), ReversePath::Mailbox(m)) = (&self.auth_user, from) else {
            return Ok(());
        };
        let address = m.to_string();
        if user_owns(&self.cfg, user, &address) {
            Ok(())
        } else {
            Err(RefuseReason::SenderNotOwned {
                user: user.clone(),
                address,
            })
        }
    }

    /// Looks for the end of the held header block; when found (or at the
    /// end of data, or when the hold would outgrow a body chunk) checks the
    /// senders, adds missing fields and releases the body.
    pub(super) fn scan_header(&mut self, ended: bool) {
        let Some(fix) = &self.header else {
            return;
        };
        let (start, date) = (fix.start, fix.date);
        let data = self.body.get(start..).unwrap_or_default();
        let (block_end, insert_at) = match header_end(data) {
            Some(end) => (end, start + end),
            None if ended => (data.len(), start + data.len()),
            // Too long to hold: check what there is, add fields up front.
            None if self.body.len() >= BODY_CHUNK => (last_line_end(data), start),
            None => return,
        };
        self.header = None;
        let block = self.body[start..start + block_end].to_vec();
        let Ok((fields, _)) = mailparse::parse_headers(&block) else {
            return;
        };
        if self.data_refusal.is_none() {
            self.data_refusal = self.header_senders_refusal(&fields);
        }
        let mut add = String::new();
        if fields.get_first_header("Message-ID").is_none() {
            let id = self.queue_id.as_deref().unwrap_or("msg");
            add.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.cfg.hostname));
        }
        if fields.get_first_header("Date").is_none() {
            add.push_str(&format!("Date: {}\r\n", date.rfc5322()));
        }
        if !add.is_empty() {
            self.body.splice(insert_at..insert_at, add.into_bytes());
        }
    }

    /// From: and Sender: must name only addresses the user owns.
    fn header_senders_refusal(&self, fields: &[mailparse::MailHeader<'_>]) -> Option<RefuseReason> {
        let user = self.auth_user.as_ref()?;
        let refuse = |address: String| RefuseReason::SenderNotOwned {
            user: user.clone(),
            address,
        };
        for field in fields {
            let key = field.get_key_ref();
            if !key.eq_ignore_ascii_case("From") && !key.eq_ignore_ascii_case("Sender") {
                continue;
            }
            let Ok(list) = addrparse_header(field) else {
                return Some(refuse(field.get_value()));
            };
            for addr in list.iter() {
                let addrs = match addr {
                    MailAddr::Single(one) => vec![one.addr.clone()],
                    MailAddr::Group(g) => g.addrs.iter().map(|a| a.addr.clone()).collect(),
                };
                if let Some(bad) = addrs.into_iter().find(|a| !user_owns(&self.cfg, user, a)) {
                    return Some(refuse(bad));
                }
            }
        }
        None
    }
}

/// Returns where the header block ends (after the CRLF of its last field,
/// before the empty line), if the empty line has arrived.
fn header_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\r\n") {
        return Some(0);
    }
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
}

/// Returns the end of the last complete line.
fn last_line_end(data: &[u8]) -> usize {
    data.windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |p| p + 2)
}
