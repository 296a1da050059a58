//! A receiving SMTP server for the remote-delivery interop tests: Python's
//! aiosmtpd (Debian's `python3-aiosmtpd`) in a subprocess started and
//! killed by the test, listening on a loopback address of the test's
//! choosing (127.0.0.2, 127.0.0.3, ...: the whole of 127.0.0.0/8 is
//! loopback on Linux), so that MX records can name distinct hosts on one
//! port. Each message it accepts becomes one file in a directory of its
//! own: the envelope (`helo`, `from`, `option` and `rcpt` lines), a blank
//! line, then the message as received, dot-unstuffed (RFC 5321 §4.5.2).
//! Recipients listed at start are refused with `550 5.1.1`, or deferred
//! once with `451 4.3.0` (accepted from the second try on).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The server: argv is HOST PORT DIR [550:RECIPIENT | 451:RECIPIENT ...];
/// prints "ready" once it accepts connections.
const SCRIPT: &str = r#"
import os, sys, time
from aiosmtpd.controller import Controller

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
refused = {a[4:].lower() for a in sys.argv[4:] if a.startswith("550:")}
deferred = {a[4:].lower() for a in sys.argv[4:] if a.startswith("451:")}

class Sink:
    count = 0

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.lower() in refused:
            return "550 5.1.1 <%s>: no such user here" % address
        if address.lower() in deferred:
            deferred.discard(address.lower())
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        name = "%06d" % Sink.count
        head = ["helo %s" % session.host_name, "from <%s>" % envelope.mail_from]
        head += ["option %s" % o for o in envelope.mail_options]
        head += ["rcpt <%s>" % r for r in envelope.rcpt_tos]
        tmp = os.path.join(out, "." + name)
        with open(tmp, "wb") as f:
            f.write(("\n".join(head) + "\n\n").encode("utf-8", "surrogateescape"))
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(out, name))
        return "250 2.0.0 OK queued as %s" % name

c = Controller(Sink(), hostname=host, port=port, server_hostname="sink-" + host,
               decode_data=False)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The EHLO / HELO name the client gave.
    pub helo: String,
    /// `MAIL FROM`, in angle brackets.
    pub from: String,
    /// The `MAIL FROM` parameters (`SIZE=...`, `BODY=8BITMIME`).
    pub options: Vec<String>,
    /// The accepted `RCPT TO` addresses, in angle brackets.
    pub rcpts: Vec<String>,
    /// The message, as received and unstuffed.
    pub data: Vec<u8>,
}

/// A running aiosmtpd; killed, and its directory removed, on drop.
#[derive(Debug)]
pub struct AioSmtpd {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl AioSmtpd {
    /// Starts a server on `addr` that accepts every recipient but those in
    /// `refused` (compared without case), and waits until it is ready.
    ///
    /// # Errors
    /// python3 with aiosmtpd is missing, or the server did not start.
    pub fn start(addr: SocketAddr, refused: &[&str]) -> Result<Self, String> {
        Self::start_with(addr, refused, &[])
    }

    /// As [`AioSmtpd::start`], and each recipient in `deferred_once` gets
    /// `451 4.3.0` at its first RCPT, then is accepted.
    ///
    /// # Errors
    /// As [`AioSmtpd::start`].
    pub fn start_with(
        addr: SocketAddr,
        refused: &[&str],
        deferred_once: &[&str],
    ) -> Result<Self, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hato-aiosmtpd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut child = Command::new(python())
            .arg("-c")
            .arg(SCRIPT)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(&dir)
            .args(refused.iter().map(|a| format!("550:{a}")))
            .args(deferred_once.iter().map(|a| format!("451:{a}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let server = Self { child, dir, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "ready" => return Ok(server),
                Ok(_) => {}
                Err(_) => return Err(server.failed_start()),
            }
        }
    }

    /// Returns the address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the messages received so far, oldest first.
    ///
    /// # Errors
    /// The directory or a message file cannot be read.
    pub fn received(&self) -> Result<Vec<Received>, String> {
        read_dir_messages(&self.dir)
    }

    /// Waits until `n` messages arrived or `timeout` passed; returns what
    /// arrived.
    ///
    /// # Errors
    /// As [`AioSmtpd::received`].
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Received>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received()?;
            if got.len() >= n || Instant::now() >= deadline {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn failed_start(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        format!(
            "aiosmtpd on {} did not start within {START_TIMEOUT:?} \
             (apt-get install python3-aiosmtpd; .ci/interop does):\n{err}",
            self.addr
        )
    }
}

impl Drop for AioSmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The python3 that has aiosmtpd: Debian's (`/usr/bin/python3`, where
/// `python3-aiosmtpd` installs it) when there is one, else the first on
/// `PATH`.
fn python() -> PathBuf {
    let debian = Path::new("/usr/bin/python3");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// Reads the message files of `dir` (names not starting with a dot), in
/// name order.
fn read_dir_messages(dir: &Path) -> Result<Vec<Received>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let path = dir.join(n);
            let bytes =
                std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            parse_message_file(&bytes).ok_or_else(|| format!("{} is malformed", path.display()))
        })
        .collect()
}

/// Splits one message file into its envelope and data.
fn parse_message_file(bytes: &[u8]) -> Option<Received> {
    let split = bytes.windows(2).position(|w| w == b"\n\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let mut r = Received {
        helo: String::new(),
        from: String::new(),
        options: Vec::new(),
        rcpts: Vec::new(),
        data: bytes[split + 2..].to_vec(),
    };
    for line in head.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "helo" => r.helo = value.to_owned(),
            "from" => r.from = value.to_owned(),
            "option" => r.options.push(value.to_owned()),
            "rcpt" => r.rcpts.push(value.to_owned()),
            _ => return None,
        }
    }
    Some(r)
}

/// A TCP port free on every one of `ips` right now (for receivers that
/// must share a port, as MX hosts do: `delivery.smtp_port`).
pub fn free_port_on(ips: &[Ipv4Addr]) -> Option<u16> {
    let first = *ips.first()?;
    for _ in 0..50 {
        let Ok(l) = TcpListener::bind((first, 0)) else {
            continue;
        };
        let Ok(port) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        let rest_free = ips[1..]
            .iter()
            .all(|ip| TcpListener::bind(SocketAddr::new(IpAddr::V4(*ip), port)).is_ok());
        if rest_free {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_files_split_into_envelope_and_data() {
        let file = b"helo mail.example.test\nfrom <a@x.test>\noption SIZE=12\n\
            option BODY=8BITMIME\nrcpt <b@y.test>\nrcpt <c@y.test>\n\nSubject: x\r\n\r\n\nbody\r\n";
        let r = parse_message_file(file).unwrap_or_else(|| panic!("parse"));
        assert_eq!(r.helo, "mail.example.test");
        assert_eq!(r.from, "<a@x.test>");
        assert_eq!(r.options, ["SIZE=12", "BODY=8BITMIME"]);
        assert_eq!(r.rcpts, ["<b@y.test>", "<c@y.test>"]);
        assert_eq!(r.data, b"Subject: x\r\n\r\n\nbody\r\n");
        assert_eq!(parse_message_file(b"what\n\nx"), None);
    }
}
