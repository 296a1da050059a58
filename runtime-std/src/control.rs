//! How `hato queue flush|delete|bounce` act on the live queue without
//! racing delivery: the running server owns the queue, and the command
//! asks it.
//!
//! * The server holds an exclusive lock (`flock`, std's `File::lock`) on
//!   `data_dir/state/lock` for as long as it runs; a second server on the
//!   same data directory waits for it, then gives up with an error.
//! * It listens on the Unix socket `data_dir/state/control` (mode 0600 in
//!   the 0700 `state/`: only its own user and root can talk to it). A
//!   request is one line, `flush`, `delete ID` or `bounce ID`; the answer
//!   one line, `ok TEXT` or `error TEXT`. Requests go to the delivery
//!   thread over its channel and run *between* two delivery attempts, on
//!   the thread that delivers: a message is never deleted or bounced while
//!   it is being delivered, and `flush` wakes the thread at once.
//! * When no server answers, the command takes the lock itself (so no
//!   server can start meanwhile) and works on the files directly.
//!
//! Read-only commands (`queue list`, `queue show`) need neither: a queue
//! file is written completely before it is renamed into `queue/`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

/// The lock file under `state/`.
pub const LOCK_FILE: &str = "lock";

/// The control socket under `state/`.
pub const SOCKET_FILE: &str = "control";

/// The longest request line read.
const MAX_REQUEST: u64 = 256;

/// How long a command or a starting server waits for the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long one request may take end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request to the queue's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Make every queued message due now.
    Flush,
    /// Remove a message.
    Delete(String),
    /// Fail a message's undelivered recipients and tell its sender.
    Bounce(String),
}

impl Request {
    /// Parses a request line (without its line end).
    ///
    /// # Errors
    /// An unknown command or a missing or extra word.
    pub fn parse(line: &str) -> Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["flush"] => Ok(Self::Flush),
            ["delete", id] => Ok(Self::Delete((*id).to_owned())),
            ["bounce", id] => Ok(Self::Bounce((*id).to_owned())),
            _ => Err(format!("unknown request {line:?}")),
        }
    }

    /// Returns the request line, without line end.
    pub fn line(&self) -> String {
        match self {
            Self::Flush => "flush".into(),
            Self::Delete(id) => format!("delete {id}"),
            Self::Bounce(id) => format!("bounce {id}"),
        }
    }
}

/// The data directory's lock, held while the value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, waiting up to `wait` while someone else holds it.
    /// `Ok(None)` when it stayed held.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked.
    pub fn acquire(state_dir: &Path, wait: Duration) -> io::Result<Option<Self>> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        opts.mode(0o600);
        let file = opts.open(state_dir.join(LOCK_FILE))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Self { _file: file })),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    /// Takes the lock for a server, waiting up to 10 s.
    ///
    /// # Errors
    /// Another server holds it, or the file cannot be locked.
    pub fn for_server(state_dir: &Path) -> io::Result<Self> {
        Self::acquire(state_dir, LOCK_WAIT)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another hato server is using this data directory ({} is locked)",
                    state_dir.join(LOCK_FILE).display()
                ),
            )
        })
    }
}

/// Sends `req` to the running server; when none runs, takes the lock and
/// calls `offline` with it held.
///
/// # Errors
/// The server runs but cannot be reached, or the lock cannot be taken.
pub fn request_or_else(
    state_dir: &Path,
    req: &Request,
    offline: impl FnOnce() -> Result<String, String>,
) -> Result<Result<String, String>, String> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match send(&state_dir.join(SOCKET_FILE), req) {
            Ok(answer) => return Ok(answer),
            Err(e) if !server_absent(&e) => {
                return Err(format!("cannot reach the server's control socket: {e}"))
            }
            Err(_) => {}
        }
        // Nobody listens: is a server there at all?
        let lock = DataDirLock::acquire(state_dir, Duration::ZERO)
            .map_err(|e| format!("cannot lock {}: {e}", state_dir.join(LOCK_FILE).display()))?;
        if let Some(_lock) = lock {
            return Ok(offline());
        }
        // A server holds the lock but does not answer yet: it is starting.
        if Instant::now() >= deadline {
            return Err(format!(
                "a server holds {} but its control socket does not answer",
                state_dir.join(LOCK_FILE).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn server_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(unix)]
fn send(socket: &Path, req: &Request) -> io::Result<Result<String, String>> {
    use std::os::unix::net::UnixStream;
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(format!("{}\n", req.line()).as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream.take(64 * 1024)).read_line(&mut line)?;
    let line = line.trim_end();
    if let Some(text) = line.strip_prefix("ok ") {
        Ok(Ok(text.to_owned()))
    } else if let Some(text) = line.strip_prefix("error ") {
        Ok(Err(text.to_owned()))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {line:?}"),
        ))
    }
}

#[cfg(not(unix))]
fn send(_socket: &Path, _req: &Request) -> io::Result<Result<String, String>> {
    Err(io::Error::from(io::ErrorKind::NotFound))
}

/// The server's side: a thread that answers requests on the socket by
/// handing them to `handle` (the delivery thread's mailbox).
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `state/control` (replacing a socket file left by a previous
    /// run: the caller holds the lock, so no other server uses it) and
    /// starts answering.
    ///
    /// # Errors
    /// The socket cannot be bound or the thread started.
    #[cfg(unix)]
    pub fn start(
        state_dir: &Path,
        handle: impl Fn(Request) -> Result<String, String> + Send + 'static,
    ) -> io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::UnixListener;
        let path = state_dir.join(SOCKET_FILE);
        crate::store::remove_file_if_exists(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => serve_one(stream, &handle),
                        Err(e) => {
                            crate::log::Line::new("error")
                                .kv("what", "control")
                                .kv("error", e)
                                .emit();
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Self { path })
    }

    /// Without Unix sockets there is no control socket: queue commands
    /// then need the server stopped.
    ///
    /// # Errors
    /// Never.
    #[cfg(not(unix))]
    pub fn start(
        state_dir: &Path,
        _handle: impl Fn(Request) -> Result<String, String> + Send + 'static,
    ) -> io::Result<Self> {
        Ok(Self {
            path: state_dir.join(SOCKET_FILE),
        })
    }

    /// Removes the socket: later commands find no server (and wait for
    /// the lock until the process has exited).
    pub fn stop(&self) {
        let _ = crate::store::remove_file_if_exists(&self.path);
    }
}

#[cfg(unix)]
fn serve_one(
    stream: std::os::unix::net::UnixStream,
    handle: &impl Fn(Request) -> Result<String, String>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    let answer = match read {
        Ok(_) if line.ends_with('\n') => Request::parse(line.trim_end()).and_then(handle),
        Ok(_) => Err("request too long or not ended by a newline".into()),
        Err(e) => Err(format!("cannot read the request: {e}")),
    };
    let text = match answer {
        Ok(t) => format!("ok {}\n", one_line(&t)),
        Err(t) => format!("error {}\n", one_line(&t)),
    };
    let _ = (&stream).write_all(text.as_bytes());
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::store::testdir::TestDir;

    #[test]
    fn requests_round_trip_as_lines() {
        for r in [
            Request::Flush,
            Request::Delete("0ABC".into()),
            Request::Bounce("0DEF".into()),
        ] {
            assert_eq!(Request::parse(&r.line()), Ok(r));
        }
        assert!(Request::parse("delete").is_err());
        assert!(Request::parse("rm 0ABC").is_err());
        assert!(Request::parse("flush now").is_err());
    }

    #[test]
    fn a_request_reaches_the_server_and_its_answer_comes_back() {
        let t = TestDir::new("control-socket");
        let (tx, rx) = mpsc::channel();
        let server = ControlServer::start(t.path(), move |req| {
            let _ = tx.send(req.clone());
            match req {
                Request::Delete(id) if id == "0GONE" => Err(format!("no message {id}")),
                r => Ok(format!("did {}", r.line())),
            }
        })
        .unwrap();
        let _lock = DataDirLock::for_server(t.path()).unwrap();
        let never = || -> Result<String, String> { panic!("the server runs") };
        assert_eq!(
            request_or_else(t.path(), &Request::Flush, never),
            Ok(Ok("did flush".into()))
        );
        assert_eq!(
            request_or_else(t.path(), &Request::Delete("0GONE".into()), never),
            Ok(Err("no message 0GONE".into()))
        );
        assert_eq!(rx.recv().unwrap(), Request::Flush);
        server.stop();
    }

    #[test]
    fn without_a_server_the_caller_works_offline_under_the_lock() {
        let t = TestDir::new("control-offline");
        let answer = request_or_else(t.path(), &Request::Flush, || {
            // The lock is held meanwhile: a server could not start.
            assert!(DataDirLock::acquire(t.path(), Duration::ZERO)
                .unwrap()
                .is_none());
            Ok("offline".into())
        });
        assert_eq!(answer, Ok(Ok("offline".into())));
        // A stale socket file (a crashed server) counts as no server.
        std::os::unix::net::UnixListener::bind(t.path().join(SOCKET_FILE)).unwrap();
        let answer = request_or_else(t.path(), &Request::Flush, || Ok("offline".into()));
        assert_eq!(answer, Ok(Ok("offline".into())));
    }

    #[test]
    fn a_second_server_does_not_get_the_lock() {
        let t = TestDir::new("control-lock");
        let first = DataDirLock::for_server(t.path()).unwrap();
        assert!(DataDirLock::acquire(t.path(), Duration::from_millis(100))
            .unwrap()
            .is_none());
        drop(first);
        assert!(DataDirLock::acquire(t.path(), Duration::ZERO)
            .unwrap()
            .is_some());
    }
}
