//! Runs a transcript against a running server over TCP on loopback, reading
//! after each step as many replies as the core produced for it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::core_run::CoreRun;
use crate::render::{count_replies, Conversation};
use crate::transcript::{Step, Transcript};

/// How long the client waits for the replies of one step, or for EOF.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `t` against the server at `addr`; `core` says how many replies each
/// step must bring and when the server should close.
///
/// # Errors
/// The connection could not be made.
pub fn run_tcp(t: &Transcript, addr: SocketAddr, core: &CoreRun) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .map_err(|e| format!("set_write_timeout: {e}"))?;
    let mut conv = Conversation::default();
    let want = |stage: usize| core.replies.get(stage).copied().unwrap_or(0);

    let mut closed = read_stage(
        &mut stream,
        &mut conv,
        want(0),
        core.closed_after == Some(0),
    );
    for (i, step) in t.steps.iter().enumerate() {
        match step {
            Step::Send { bytes, shown } => {
                conv.client(shown);
                if closed {
                    continue;
                }
                if let Err(e) = stream.write_all(bytes) {
                    conv.note(&format!("write failed: {}", e.kind()));
                }
            }
            Step::Wait { duration, shown } => {
                conv.wait(shown);
                if closed {
                    continue;
                }
                std::thread::sleep(*duration);
            }
        }
        if !closed {
            closed = read_stage(
                &mut stream,
                &mut conv,
                want(i + 1),
                core.closed_after == Some(i + 1),
            );
        }
    }
    if !closed {
        conv.note("client hangs up");
        let _ = stream.shutdown(Shutdown::Write);
        let (bytes, end) = read_replies(&mut stream, usize::MAX, true);
        conv.server(&bytes);
        if end != End::Eof {
            conv.note("server did not close within 5 s");
        }
    }
    Ok(conv.into_string())
}

/// Reads one stage's replies into `conv`; returns whether the server closed.
fn read_stage(
    stream: &mut TcpStream,
    conv: &mut Conversation,
    want: usize,
    until_eof: bool,
) -> bool {
    let (bytes, end) = read_replies(stream, want, until_eof);
    conv.server(&bytes);
    match end {
        End::Eof => {
            conv.note("closed");
            true
        }
        End::Enough => false,
        End::Timeout => {
            let got = count_replies(&bytes);
            if until_eof {
                conv.note(&format!("no EOF within 5 s ({got} of {want} replies)"));
            } else {
                conv.note(&format!("timed out with {got} of {want} replies"));
            }
            false
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Enough,
    Eof,
    Timeout,
}

/// Reads until `want` complete replies have arrived (or, with `until_eof`,
/// until EOF), or [`REPLY_TIMEOUT`] passes. A reset counts as EOF.
fn read_replies(stream: &mut TcpStream, want: usize, until_eof: bool) -> (Vec<u8>, End) {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if !until_eof && count_replies(&buf) >= want {
            return (buf, End::Enough);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return (buf, End::Timeout);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (buf, End::Eof),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (buf, End::Timeout)
            }
            Err(_) => return (buf, End::Eof),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A fake server: greets, then answers each line with the next reply
    /// of `script`, and closes after the last one.
    fn fake_server(script: &'static [&'static str]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"220 hi\r\n").unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            for reply in script {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        addr
    }

    fn core(replies: Vec<usize>, closed_after: Option<usize>) -> CoreRun {
        CoreRun {
            conversation: String::new(),
            replies,
            closed_after,
            bodies: Vec::new(),
            received: Vec::new(),
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn replies_and_close_are_written_down() {
        let t = Transcript::parse("x", "# RFC 5321\nC: NOOP\nC: QUIT\n").unwrap();
        let addr = fake_server(&["250-a\r\n250 b\r\n", "221 bye\r\n"]);
        let got = run_tcp(&t, addr, &core(vec![1, 1, 1], Some(2))).unwrap();
        assert_eq!(
            got,
            "S: 220 hi\nC: NOOP\nS: 250-a\nS: 250 b\nC: QUIT\nS: 221 bye\n-- closed\n"
        );
    }

    #[test]
    fn extra_replies_and_early_close_show_up() {
        let t = Transcript::parse("x", "# RFC 5321\nC: NOOP\nC: NOOP\n").unwrap();
        // One reply too many for the first NOOP, then the server closes.
        let addr = fake_server(&["250 a\r\n250 extra\r\n"]);
        let got = run_tcp(&t, addr, &core(vec![1, 1, 1], None)).unwrap();
        assert!(got.contains("S: 250 extra\n"), "{got}");
        assert!(got.contains("-- closed\n"), "{got}");
    }
}
