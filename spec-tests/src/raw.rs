//! A raw SMTP connection for tests that must see what a normal client
//! refuses: a 421 or 554 greeting, a reply that never comes, a close.
//! Every read is bounded; failures panic with the reason (test support).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one read may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that returns reply lines as text.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects without reading anything.
    ///
    /// # Panics
    /// When the connection fails.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .unwrap_or_else(|e| panic!("set_read_timeout: {e}"));
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and requires a 220 greeting.
    ///
    /// # Panics
    /// When the connection fails or the greeting is not 220.
    pub fn greeted(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr);
        let greeting = c.line();
        assert!(greeting.starts_with("220 "), "greeting: {greeting}");
        c
    }

    /// Sends `line` and CRLF.
    ///
    /// # Panics
    /// When the write fails.
    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("write {line:?}: {e}"));
    }

    /// Sends `line` and returns the last line of its reply.
    ///
    /// # Panics
    /// When the write or the read fails.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Returns the next reply's last line (continuation lines skipped), or
    /// "" once the server closed the connection.
    ///
    /// # Panics
    /// When the read fails or times out.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let line = String::from_utf8_lossy(&line[..pos]).into_owned();
                if line.as_bytes().get(3) == Some(&b'-') {
                    continue;
                }
                return line;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return String::new(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Tells whether the server closed the connection (after any reply
    /// still to be read, which is dropped).
    ///
    /// # Panics
    /// When the read fails or times out.
    pub fn closed(&mut self) -> bool {
        loop {
            if self.line().is_empty() {
                return true;
            }
        }
    }
}

/// Turns `("table.key", "toml value")` pairs into config overrides.
pub fn overrides(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Overrides for an untrusted client (the test client is 127.0.0.1, which
/// the default `relay.trusted_networks` trusts) without greet pause, plus
/// `more`.
pub fn untrusted(more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut o = overrides(&[
        ("relay.trusted_networks", "[]"),
        ("limits.greet_pause", "\"0s\""),
    ]);
    o.extend(overrides(more));
    o
}
