//! A tiny blocking SMTP client for tests: one command, one reply, every
//! read and write bounded by a timeout. It sends exactly what it is given
//! (no pipelining, no extensions beyond what the caller writes), so a test
//! knows what went over the wire.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long [`SmtpClient`] waits for a reply, or for a write to proceed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, after the code and its separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// Returns the queue id of a `250 ... queued as ID` reply.
    pub fn queue_id(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let (_, rest) = l.split_once("queued as ")?;
            rest.split_whitespace().next()
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// The connection failed, timed out or was closed.
    Io(io::Error),
    /// The server answered, but not with the expected code.
    Unexpected {
        /// What the client was doing (`MAIL`, `end of data`, ...).
        what: String,
        /// What the server said.
        reply: Reply,
    },
    /// The server sent something that is not an SMTP reply.
    Malformed(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection: {e}"),
            Self::Unexpected { what, reply } => write!(f, "{what}: unexpected reply {reply}"),
            Self::Malformed(s) => write!(f, "malformed reply: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A connection to an SMTP server.
#[derive(Debug)]
pub struct SmtpClient {
    stream: TcpStream,
    /// Received bytes not yet taken as a reply.
    buf: Vec<u8>,
    timeout: Duration,
}

impl SmtpClient {
    /// Connects to `addr` and reads the greeting, which must be 220.
    ///
    /// # Errors
    /// The connection failed or the greeting is not 220.
    pub fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        Self::connect_timeout(addr, CLIENT_TIMEOUT)
    }

    /// [`SmtpClient::connect`] with another timeout for every read and write.
    ///
    /// # Errors
    /// The connection failed or the greeting is not 220.
    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let mut client = Self {
            stream,
            buf: Vec::new(),
            timeout,
        };
        let greeting = client.read_reply()?;
        expect("greeting", greeting, 220)?;
        Ok(client)
    }

    /// Sends `line` and CRLF, and reads one reply.
    ///
    /// # Errors
    /// The connection failed or the reply is malformed.
    pub fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.stream.write_all(&bytes)?;
        self.read_reply()
    }

    /// Sends `line` and requires the reply code `code`.
    ///
    /// # Errors
    /// The connection failed or the reply has another code.
    pub fn expect(&mut self, line: &str, code: u16) -> Result<Reply, ClientError> {
        let reply = self.command(line)?;
        let what = line.split_whitespace().next().unwrap_or(line).to_owned();
        expect(&what, reply, code)
    }

    /// Sends EHLO `name`; requires 250.
    ///
    /// # Errors
    /// The connection failed or the reply is not 250.
    pub fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        self.expect(&format!("EHLO {name}"), 250)
    }

    /// One mail transaction: MAIL FROM, one RCPT TO per recipient, DATA and
    /// `message` (CRLF line endings; dot-stuffed and ended here), each
    /// answered before the next is sent. Returns the reply after the end
    /// of data, which must be 250.
    ///
    /// # Errors
    /// The connection failed, or a reply was not the positive one.
    pub fn send_mail(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> Result<Reply, ClientError> {
        self.send_mail_with(&format!("<{from}>"), to, message)
    }

    /// As [`SmtpClient::send_mail`], with `MAIL FROM:` followed by `from`
    /// as given: the path and any parameters (`<a@b> BODY=8BITMIME`).
    ///
    /// # Errors
    /// As [`SmtpClient::send_mail`].
    pub fn send_mail_with(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> Result<Reply, ClientError> {
        self.expect(&format!("MAIL FROM:{from}"), 250)?;
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), 250)?;
        }
        self.expect("DATA", 354)?;
        self.stream.write_all(&dot_stuff(message))?;
        let reply = self.read_reply()?;
        expect("end of data", reply, 250)
    }

    /// Sends QUIT and reads the reply (which should be 221).
    ///
    /// # Errors
    /// The connection failed.
    pub fn quit(mut self) -> Result<Reply, ClientError> {
        self.command("QUIT")
    }

    /// Reads one complete reply, waiting at most the client's timeout.
    ///
    /// # Errors
    /// The connection failed or closed, the wait timed out, or the server
    /// sent something that is not a reply.
    pub fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(ErrorKind::TimedOut, "no reply in time").into());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )
                    .into())
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn expect(what: &str, reply: Reply, code: u16) -> Result<Reply, ClientError> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(ClientError::Unexpected {
            what: what.to_owned(),
            reply,
        })
    }
}

/// Takes one complete reply from the start of `buf`; returns it and how
/// many bytes it took, or `None` when it is not complete yet.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ClientError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut pos = 0;
    while let Some(end) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[pos..pos + end];
        pos += end + 2;
        let text = String::from_utf8_lossy(line);
        let malformed = || ClientError::Malformed(format!("{text:?}"));
        let digits = text.get(..3).ok_or_else(malformed)?;
        let this: u16 = digits
            .parse()
            .ok()
            .filter(|c| (200..600).contains(c))
            .ok_or_else(malformed)?;
        if code.is_some_and(|c| c != this) {
            return Err(malformed());
        }
        code = Some(this);
        let sep = text.as_bytes().get(3).copied();
        lines.push(text.get(4..).unwrap_or("").to_owned());
        match sep {
            None | Some(b' ') => {
                return Ok(Some((Reply { code: this, lines }, pos)));
            }
            Some(b'-') => {}
            Some(_) => return Err(malformed()),
        }
    }
    Ok(None)
}

/// Returns `message` as DATA sends it: a line that starts with `.` gets
/// another `.` (RFC 5321 §4.5.2), a CRLF is added unless the message ends
/// with one, then `.` CRLF ends it.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The inverse of [`dot_stuff`] as a server applies it (RFC 5321 §4.5.2):
/// takes DATA as sent, up to and including the final `.` CRLF, and returns
/// the message.
///
/// # Errors
/// The data does not end with CRLF `.` CRLF.
pub fn dot_unstuff(data: &[u8]) -> Result<Vec<u8>, String> {
    let body = if data == b".\r\n" {
        &data[..0]
    } else {
        data.strip_suffix(b"\r\n.\r\n")
            .map(|b| &data[..b.len() + 2])
            .ok_or("DATA does not end with CRLF . CRLF")?
    };
    let mut out = Vec::with_capacity(body.len());
    let mut at_line_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if at_line_start && b == b'.' {
            // Drop the first dot of the line; the next byte is kept as is.
            i += 1;
            at_line_start = false;
            continue;
        }
        out.push(b);
        at_line_start = b == b'\n';
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    #[test]
    fn replies_are_parsed_single_and_multi_line() {
        let (r, used) = parse_reply(b"250-a\r\n250-b c\r\n250 d\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, ["a", "b c", "d"]);
        assert_eq!(used, 23);
        assert!(parse_reply(b"250-a\r\n250 d").unwrap().is_none());
        assert!(parse_reply(b"xyz\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
        let (r, _) = parse_reply(b"250 2.0.0 Ok: queued as 0ABC\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.queue_id(), Some("0ABC"));
    }

    #[test]
    fn dot_stuffing_round_trips() {
        for msg in [
            &b""[..],
            b"a\r\n",
            b".\r\n",
            b"..x\r\n.\r\nend",
            b"x\r\n.\r\n\r\n.y\r\n",
        ] {
            let wire = dot_stuff(msg);
            let mut want = msg.to_vec();
            if !want.is_empty() && !want.ends_with(b"\r\n") {
                want.extend_from_slice(b"\r\n");
            }
            if want.is_empty() {
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(dot_unstuff(&wire).unwrap(), want, "{msg:?}");
        }
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_unstuff(b".\r\n").unwrap(), b"");
        assert!(dot_unstuff(b"x\r\n").is_err());
    }

    #[test]
    fn a_transaction_against_a_fake_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"220 hi\r\n").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut seen = Vec::new();
            for reply in [&b"250 ok\r\n"[..], b"250 ok\r\n", b"354 go\r\n"] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                seen.push(line);
                s.write_all(reply).unwrap();
            }
            let mut data = Vec::new();
            while !data.ends_with(b"\r\n.\r\n") {
                r.read_until(b'\n', &mut data).unwrap();
            }
            s.write_all(b"250 2.0.0 Ok: queued as 0XYZ\r\n").unwrap();
            (seen, data)
        });
        let mut c = SmtpClient::connect(addr).unwrap();
        let reply = c
            .send_mail("a@b.example", &["c@d.example"], b".x\r\n")
            .unwrap();
        assert_eq!(reply.queue_id(), Some("0XYZ"));
        let (seen, data) = server.join().unwrap();
        assert_eq!(
            seen,
            [
                "MAIL FROM:<a@b.example>\r\n",
                "RCPT TO:<c@d.example>\r\n",
                "DATA\r\n"
            ]
        );
        assert_eq!(data, b"..x\r\n.\r\n");
    }
}
