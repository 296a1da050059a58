//! A real Postfix as a receiving peer for the remote-delivery interop
//! tests: a private instance (Debian's `postfix` package; its own
//! `config_directory`, `queue_directory` and log under a temporary
//! directory, nothing shared with a system Postfix) whose only listener is
//! smtpd on the test's loopback address and port. It is the final
//! destination of one virtual domain: each mailbox given at start gets a
//! Maildir (`virtual(8)`), every other address of the domain is refused
//! at RCPT with Postfix's own `550 5.1.1 ... User unknown in virtual
//! mailbox table`.
//!
//! The master runs in the foreground (`master -d`) as the test's child:
//! SIGTERM on drop stops it and its daemons. Needs root (the master
//! starts as root and runs its daemons as `postfix`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long Postfix may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Debian installs the Postfix daemons.
const DAEMON_DIRECTORY: &str = "/usr/lib/postfix/sbin";

/// The services of `master.cf` besides smtpd: what a message needs from
/// RCPT to the Maildir, and the bounce and log services.
const SERVICES: &str = "\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A running private Postfix; stopped, and its directory removed, on drop.
#[derive(Debug)]
pub struct Postfix {
    master: Child,
    dir: PathBuf,
    addr: SocketAddr,
    domain: String,
}

impl Postfix {
    /// Starts Postfix on `addr` as the destination of `domain`, with a
    /// Maildir for each of `mailboxes` (local parts), and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// Postfix is not installed, its configuration check failed, or it did
    /// not listen in time (its log is in the message).
    pub fn start(addr: SocketAddr, domain: &str, mailboxes: &[&str]) -> Result<Self, String> {
        Self::start_with(addr, domain, mailboxes, &[])
    }

    /// As [`Postfix::start`], with `settings` (`main.cf` lines such as
    /// `message_size_limit = 100000`), which replace standard lines of the
    /// same key.
    ///
    /// # Errors
    /// As [`Postfix::start`].
    pub fn start_with(
        addr: SocketAddr,
        domain: &str,
        mailboxes: &[&str],
        settings: &[&str],
    ) -> Result<Self, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hato-postfix-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let master =
            match prepare(&dir, addr, domain, mailboxes, settings).and_then(|()| spawn(&dir)) {
                Ok(m) => m,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
        let pf = Self {
            master,
            dir,
            addr,
            domain: domain.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "Postfix did not listen on {addr} within {START_TIMEOUT:?}:\n{}",
                    pf.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pf)
    }

    /// Returns the address smtpd listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the messages delivered to `local`'s Maildir (`new/`), in
    /// name order.
    pub fn delivered(&self, local: &str) -> Vec<PathBuf> {
        let new = self
            .dir
            .join("vmail")
            .join(&self.domain)
            .join(local)
            .join("new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits until `local` has a message or `timeout` passed; returns the
    /// first message's bytes.
    ///
    /// # Errors
    /// Nothing arrived in time (Postfix's log is in the message), or the
    /// file cannot be read.
    pub fn wait_mail(&self, local: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.delivered(local).first() {
                return std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nothing for {local}@{} within {timeout:?}; Postfix's log:\n{}",
                    self.domain,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postfix.log")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // SIGTERM: the master stops its daemons; SIGKILL if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.master.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the configuration and creates the directories of an instance
/// in `dir`.
fn prepare(
    dir: &Path,
    addr: SocketAddr,
    domain: &str,
    mailboxes: &[&str],
    settings: &[&str],
) -> Result<(), String> {
    for sub in ["conf", "queue", "data", "vmail"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let conf = dir.join("conf");
    let keys: Vec<&str> = settings
        .iter()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .collect();
    let mut main: String = main_cf(dir, addr, domain)
        .lines()
        .filter(|l| !keys.contains(&l.split('=').next().unwrap_or("").trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    for line in settings {
        main.push_str(line);
        main.push('\n');
    }
    write(&conf.join("main.cf"), &main)?;
    write(
        &conf.join("master.cf"),
        &format!("{addr} inet n - n - - smtpd\n{SERVICES}"),
    )?;
    let table: String = mailboxes
        .iter()
        .map(|m| format!("{m}@{domain} {domain}/{m}/\n"))
        .collect();
    write(&conf.join("vmailbox"), &table)?;
    // The data directory belongs to the mail owner; virtual(8) writes
    // the Maildirs as nobody.
    run(Command::new("chown").arg("postfix").arg(dir.join("data")))?;
    run(Command::new("chmod").arg("0777").arg(dir.join("vmail")))?;
    // `postfix check` creates the queue's subdirectories.
    run(Command::new("/usr/sbin/postfix")
        .arg("-c")
        .arg(&conf)
        .arg("check"))?;
    Ok(())
}

/// Starts the master of the instance in `dir`, in the foreground.
fn spawn(dir: &Path) -> Result<Child, String> {
    Command::new(Path::new(DAEMON_DIRECTORY).join("master"))
        .arg("-c")
        .arg(dir.join("conf"))
        .arg("-d")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the Postfix master: {e} (apt-get install postfix)"))
}

/// `main.cf`: final destination of `domain` as a virtual mailbox domain,
/// no other local delivery, no DNS, no relaying, logging to a file.
fn main_cf(dir: &Path, addr: SocketAddr, domain: &str) -> String {
    let d = dir.display();
    format!(
        "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
daemon_directory = {DAEMON_DIRECTORY}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{domain}
mydomain = {domain}
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
# The listener is master.cf's {addr}; loopback-only only passes the
# check that every address in inet_interfaces is the machine's own.
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# hato is a remote client: no header rewriting (no added Date: etc.).
local_header_rewrite_clients =
smtpd_banner = $myhostname ESMTP Postfix
smtpd_peername_lookup = no
disable_dns_lookups = yes
biff = no
smtputf8_enable = no
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {d}/vmail
virtual_mailbox_maps = texthash:{d}/conf/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
"
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Runs a set-up command to its end; its output is in the error.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("run {cmd:?}: {e} (apt-get install postfix)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
