//! A scripted SMTP receiver on 127.0.0.1 for remote-delivery tests: a
//! real socket and a plain RFC 5321 server conversation (EHLO with
//! PIPELINING, 8BITMIME and SIZE; replies read in order, so pipelined
//! commands work), whose faults are scripted per connection: a 4xx or
//! 5xx for chosen recipients, silence (the client's timeout), or a
//! dropped connection in the middle of DATA, or a STARTTLS that breaks.
//!
//! Each connection takes the next [`Plan`] of the script; once the script
//! is used up, connections get [`Plan::Accept`]. Every message that
//! reached its final `.` is kept (envelope and unstuffed data).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How one connection behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Takes every message.
    Accept,
    /// Answers RCPT for addresses containing the first string with the
    /// second (a whole reply line such as `550 5.1.1 no such user`), and
    /// accepts the rest.
    RefuseRcpt(String, String),
    /// Greets, then never answers anything.
    Silent,
    /// Closes the connection after the 354, once some data arrived.
    DropInData,
    /// Offers STARTTLS, answers it with 220, then sends bytes that are
    /// not TLS: the client's handshake fails.
    BrokenStartTls,
}

/// A message that reached its final `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    /// MAIL FROM, as sent (`<a@b>`).
    pub from: String,
    /// The accepted RCPT TO paths, as sent.
    pub rcpts: Vec<String>,
    /// The message, dot-unstuffed, CRLF line endings.
    pub data: Vec<u8>,
}

/// The receiver; stops on drop.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts a receiver on 127.0.0.1 (any free port) with `script`.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn start(script: Vec<Plan>) -> Result<Self, String> {
        Self::start_on("127.0.0.1:0", script)
    }

    /// Starts a receiver on `addr` with `script`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start_on(addr: &str, script: Vec<Plan>) -> Result<Self, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let got = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let thread = {
            let (got, connections, stop) = (got.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let plan = script
                                .lock()
                                .ok()
                                .and_then(|mut s| s.next())
                                .unwrap_or(Plan::Accept);
                            let (got, stop) = (got.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, &plan, &got, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(Self {
            addr,
            got,
            connections,
            stop,
            thread: Some(thread),
        })
    }

    /// The messages received so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Waits until `n` messages arrived (or `timeout` passed); returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.got();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection's conversation.
fn serve(stream: TcpStream, plan: &Plan, got: &Mutex<Vec<Got>>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut say = |s: &str| out.write_all(s.as_bytes()).is_ok();
    if !say("220 sink.test ESMTP\r\n") {
        return;
    }
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        if !read_line(&mut reader, &mut line, stop) {
            return;
        }
        if *plan == Plan::Silent {
            continue;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" if *plan == Plan::BrokenStartTls => {
                say("250-sink.test\r\n250-STARTTLS\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
            }
            "EHLO" => {
                say("250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")
            }
            "STARTTLS" if *plan == Plan::BrokenStartTls => {
                say("220 2.0.0 go ahead\r\n");
                say("this is not a TLS record\r\n");
                return;
            }
            "HELO" => say("250 sink.test\r\n"),
            "MAIL" => {
                from = path_of(&text);
                rcpts.clear();
                say("250 2.1.0 ok\r\n")
            }
            "RCPT" => {
                let path = path_of(&text);
                match plan {
                    Plan::RefuseRcpt(who, reply) if path.contains(who.as_str()) => {
                        say(&format!("{reply}\r\n"))
                    }
                    _ => {
                        rcpts.push(path);
                        say("250 2.1.5 ok\r\n")
                    }
                }
            }
            "DATA" if rcpts.is_empty() => say("554 5.5.1 no valid recipients\r\n"),
            "DATA" => {
                if !say("354 go ahead\r\n") {
                    return;
                }
                if *plan == Plan::DropInData {
                    // Wait for the start of the data, then hang up.
                    let _ = read_line(&mut reader, &mut line, stop);
                    return;
                }
                let Some(data) = read_data(&mut reader, stop) else {
                    return;
                };
                if let Ok(mut g) = got.lock() {
                    g.push(Got {
                        from: from.clone(),
                        rcpts: std::mem::take(&mut rcpts),
                        data,
                    });
                }
                say("250 2.0.0 queued as SINK\r\n")
            }
            "RSET" => {
                rcpts.clear();
                say("250 2.0.0 ok\r\n")
            }
            "NOOP" => say("250 2.0.0 ok\r\n"),
            "QUIT" => {
                say("221 2.0.0 bye\r\n");
                return;
            }
            _ => say("500 5.5.2 what?\r\n"),
        };
        if !ok {
            return;
        }
    }
}

/// Reads one line (with its CRLF) into `line`; false at the end.
fn read_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>, stop: &AtomicBool) -> bool {
    line.clear();
    loop {
        match reader.read_until(b'\n', line) {
            Ok(0) => return false,
            Ok(_) if line.ends_with(b"\n") => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// Reads the data up to the line `.`, removing dot-stuffing.
fn read_data(reader: &mut BufReader<TcpStream>, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        if !read_line(reader, &mut line, stop) {
            return None;
        }
        if line == b".\r\n" {
            return Some(data);
        }
        let body = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(body);
    }
}

/// The path of a MAIL or RCPT command: from `<` to `>`.
fn path_of(text: &str) -> String {
    match (text.find('<'), text.find('>')) {
        (Some(a), Some(b)) if a < b => text[a..=b].to_owned(),
        _ => String::new(),
    }
}
