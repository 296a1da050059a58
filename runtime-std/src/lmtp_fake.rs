//! A scripted LMTP server on a loopback socket, for tests of LMTP
//! delivery without Dovecot (the interop tests use the real one). It
//! speaks RFC 2033 as Dovecot does: LHLO with PIPELINING, 550 at RCPT for
//! unknown users, and after the final `.` one reply per accepted
//! recipient, taken from its script.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// What the fake server does.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    /// Recipients that get 550 5.1.1 at RCPT.
    pub(crate) unknown: Vec<String>,
    /// Replies after the final dot for some recipients (default `250 2.0.0 saved`).
    pub(crate) after_data: BTreeMap<String, String>,
    /// Close the connection instead of answering after the final dot for
    /// this recipient.
    pub(crate) hang_up_at: Option<String>,
}

/// One received message: the envelope and the (still dot-stuffed) data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) lhlo: String,
    pub(crate) from: String,
    pub(crate) to: Vec<String>,
    pub(crate) data: Vec<u8>,
}

/// The running server: its address and what it received.
pub(crate) struct FakeLmtp {
    pub(crate) addr: SocketAddr,
    pub(crate) received: Arc<Mutex<Vec<Received>>>,
    _thread: JoinHandle<()>,
}

impl FakeLmtp {
    /// Starts a server that answers every connection with `script`.
    pub(crate) fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                serve(conn, &script, &log);
            }
        });
        Self {
            addr,
            received,
            _thread: thread,
        }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, script: &Script, log: &Mutex<Vec<Received>>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut msg = Received::default();
    let mut accepted: Vec<String> = Vec::new();
    let _ = w.write_all(b"220 fake LMTP ready\r\n");
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("LHLO ") {
            msg.lhlo = cmd[5..].to_owned();
            "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            msg.from = cmd[10..].to_owned();
            "250 2.1.0 OK\r\n".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            let to = cmd[8..].trim_matches(['<', '>']).to_owned();
            if script.unknown.contains(&to) {
                format!("550 5.1.1 <{to}> User doesn't exist\r\n")
            } else {
                msg.to.push(to.clone());
                accepted.push(to);
                "250 2.1.5 OK\r\n".to_owned()
            }
        } else if upper == "DATA" {
            let _ = w.write_all(b"354 OK\r\n");
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                msg.data.extend_from_slice(line.as_bytes());
            }
            log.lock().unwrap().push(msg.clone());
            let mut out = String::new();
            for to in &accepted {
                if script.hang_up_at.as_ref() == Some(to) {
                    let _ = w.write_all(out.as_bytes());
                    return;
                }
                let default = format!("250 2.0.0 <{to}> saved");
                let r = script.after_data.get(to).unwrap_or(&default);
                out.push_str(r);
                out.push_str("\r\n");
            }
            out
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 2.0.0 Bye\r\n");
            return;
        } else if upper == "RSET" {
            accepted.clear();
            "250 2.0.0 OK\r\n".to_owned()
        } else {
            "500 5.5.1 Unknown command\r\n".to_owned()
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
