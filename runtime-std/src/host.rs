//! The server-wide state and the per-connection work that both front ends
//! share: admitting connections, turning session events into log lines
//! (DESIGN.md §5) and spool operations. Logging here is cheap and may run
//! anywhere; [`Connection::perform`] and [`Connection::write_body`] block on
//! the file system, so `hato-smol` runs them through `smol::unblock`.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hato_core::config::Config;
use hato_core::policy::{ConnectionTable, Destination};
use hato_core::queue::QueueEnvelope;
use hato_core::refusal::RefuseReason;
use hato_core::smtp::server::{Event, Peer, Session, Verdict};

use crate::delivery::{DeliveryHandle, LocalDelivery};
use crate::log::{unix_now, Line};
use crate::store::{SpoolWriter, Store, UsersCache};

/// Everything a running server shares between connections.
#[derive(Debug)]
pub struct Server {
    /// The configuration in force.
    pub cfg: Arc<Config>,
    /// The data directory.
    pub store: Arc<Store>,
    users: UsersCache,
    delivery: DeliveryHandle,
    connections: Mutex<ConnectionTable>,
    next_session: AtomicU64,
    stopping: AtomicBool,
}

impl Server {
    /// Opens the store and starts local delivery (which first delivers what
    /// a previous run left in the queue).
    ///
    /// # Errors
    /// When the data directory cannot be created or opened.
    pub fn start(cfg: Config) -> io::Result<Arc<Self>> {
        let cfg = Arc::new(cfg);
        let store = Arc::new(Store::open(&cfg.data_dir)?);
        let users = UsersCache::new(&cfg.data_dir)
            .map_err(|e| io::Error::other(format!("users file: {e}")))?;
        let delivery = LocalDelivery::spawn(Arc::clone(&store), Arc::clone(&cfg))?;
        Ok(Arc::new(Self {
            cfg,
            store,
            users,
            delivery,
            connections: Mutex::new(ConnectionTable::default()),
            next_session: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
        }))
    }

    /// Admits a connection within the connection limits, or returns the
    /// 421 reply to send before closing (the refusal is logged).
    ///
    /// # Errors
    /// The bytes of the 421 reply.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Result<Connection, Vec<u8>> {
        let id = format!("{:X}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let admitted = if self.is_stopping() {
            Err(RefuseReason::ShuttingDown)
        } else {
            self.connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(peer.remote.ip(), &self.cfg.limits)
        };
        if let Err(reason) = admitted {
            let reply = reason.reply();
            log_refusal(&id, peer.remote.ip(), "connect", reply.code, &reason, None);
            let mut out = Vec::new();
            reply.write_to(&mut out);
            return Err(out);
        }
        Line::new("connect")
            .kv("session", &id)
            .kv("peer", peer.remote.ip())
            .kv("listener", peer.listener.as_str())
            .kv("local", peer.local)
            .emit();
        Ok(Connection {
            server: Arc::clone(self),
            id,
            peer,
            spool: None,
            spool_error: None,
            queued: None,
            closed_logged: false,
        })
    }

    /// Starts a graceful stop: new connections get 421 from now on; the
    /// front end tells live sessions to end with 421.
    pub fn begin_stop(&self, signal: &str) {
        self.stopping.store(true, Ordering::SeqCst);
        Line::new("stopping")
            .kv("signal", signal)
            .kv("live", self.live_connections())
            .emit();
    }

    /// Tells whether a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Returns how many connections are admitted and not yet closed.
    pub fn live_connections(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total()
    }

    /// Waits (bounded by [`STOP_GRACE`]) for live sessions to end, lets
    /// local delivery finish the message in hand, and logs the stop.
    /// Blocking: the caller exits afterwards.
    pub fn finish_stop(&self) {
        let deadline = Instant::now() + STOP_GRACE;
        while self.live_connections() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.live_connections();
        self.delivery.shutdown();
        Line::new("stopped")
            .kv("how", "graceful")
            .kv("abandoned", left)
            .emit();
    }

    /// Logs that a listener is ready; tests read the address from this line.
    pub fn log_listening(&self, listener: &str, addr: std::net::SocketAddr) {
        Line::new("listening")
            .kv("listener", listener)
            .kv("addr", addr)
            .kv("hostname", &self.cfg.hostname)
            .emit();
    }
}

/// How long a graceful stop waits for live sessions.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a session event asks the front end to do on disk.
#[derive(Debug)]
#[must_use]
pub enum Work {
    /// Nothing.
    None,
    /// Open a spool file for this envelope, then answer `DataStart`.
    OpenSpool(Box<QueueEnvelope>),
    /// Make the spooled message durable, then answer `DataEnd`.
    Commit,
    /// Delete the spool file of a refused or cut-off message.
    Discard,
    /// Answer the session at once, without disk work.
    Answer(Verdict),
}

impl Work {
    /// Tells whether [`Connection::perform`] would touch the disk.
    pub fn blocks(&self) -> bool {
        !matches!(self, Self::None | Self::Answer(_))
    }
}

/// One admitted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct Connection {
    server: Arc<Server>,
    id: String,
    peer: Peer,
    spool: Option<SpoolWriter>,
    spool_error: Option<String>,
    queued: Option<QueuedInfo>,
    closed_logged: bool,
}

#[derive(Debug)]
struct QueuedInfo {
    id: String,
    from: String,
    recipients: usize,
    size: u64,
}

impl Connection {
    /// Starts the SMTP session for this connection with the current users.
    pub fn new_session(&self, now: Instant) -> Session {
        Session::new(
            Arc::clone(&self.server.cfg),
            self.server.users.current(),
            self.peer,
            now,
        )
    }

    /// Returns the configuration in force.
    pub fn config(&self) -> &Config {
        &self.server.cfg
    }

    /// Tells whether the server is stopping (a read that ends now should
    /// end the session with 421, not as a client hang-up).
    pub fn is_stopping(&self) -> bool {
        self.server.is_stopping()
    }

    /// Returns the session id used in log lines.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Logs `event` and says what disk work it needs.
    pub fn on_event(&mut self, event: Event, session: &Session) -> Work {
        let ip = self.peer.remote.ip();
        match event {
            Event::Helo { name, extended } => {
                self.line("helo")
                    .kv("name", name)
                    .kv("proto", if extended { "ESMTP" } else { "SMTP" })
                    .emit();
                Work::None
            }
            Event::Mail { from } => {
                self.line("mail").kv("from", from).emit();
                Work::None
            }
            Event::Rcpt { to, destination } => {
                let (kind, target) = match &destination {
                    Destination::Local(m) => ("local", m),
                    Destination::Remote(a) => ("remote", a),
                };
                self.line("rcpt")
                    .kv("to", to)
                    .kv("dest", format!("{kind}:{target}"))
                    .emit();
                Work::None
            }
            Event::Refused {
                stage,
                code,
                reason,
            } => {
                let qid = self.queued.as_ref().map(|q| q.id.as_str());
                let qid = if stage == "data" { qid } else { None };
                log_refusal(&self.id, ip, stage, code, &reason, qid);
                Work::None
            }
            Event::DataStart => {
                let Some(envelope) = session.envelope() else {
                    // Cannot happen (DATA needs a transaction), but the
                    // session waits for an answer, so give one.
                    let e = "DATA without envelope".to_owned();
                    return Work::Answer(Verdict::Refuse(RefuseReason::QueueUnavailable(e)));
                };
                let id = self.server.store.new_queue_id();
                let env = QueueEnvelope::from_session(id.clone(), unix_now(), envelope);
                self.line("data").kv("id", &id).emit();
                self.queued = Some(QueuedInfo {
                    id,
                    from: envelope.from.to_string(),
                    recipients: envelope.recipients.len(),
                    size: 0,
                });
                Work::OpenSpool(Box::new(env))
            }
            Event::DataEnd { size } => {
                if let Some(q) = &mut self.queued {
                    q.size = size;
                }
                Work::Commit
            }
            Event::DataDiscarded => Work::Discard,
            // Shared policy state is not kept yet: every question is
            // answered "allowed", as before the questions existed.
            Event::Ask(_) => Work::Answer(Verdict::Answer(Ok(()))),
            Event::Penalize | Event::TrapHit { .. } => Work::None,
            Event::Closed(reason) => {
                self.closed_logged = true;
                self.line("disconnect").kv("reason", reason).emit();
                Work::None
            }
        }
    }

    /// Does the disk work of [`Connection::on_event`]; returns the verdict
    /// to hand the session, if the event asked for one.
    pub fn perform(&mut self, work: Work) -> Option<Verdict> {
        match work {
            Work::None => None,
            Work::Answer(verdict) => Some(verdict),
            Work::OpenSpool(env) => Some(self.open_spool(&env)),
            Work::Commit => Some(self.commit()),
            Work::Discard => {
                if let Some(spool) = self.spool.take() {
                    spool.discard();
                }
                self.spool_error = None;
                None
            }
        }
    }

    /// Appends message data to the spool file. A write error is kept and
    /// reported at the end of data as 451, so the client retries later.
    pub fn write_body(&mut self, chunk: &[u8]) {
        let Some(spool) = &mut self.spool else {
            return;
        };
        if let Err(e) = spool.write(chunk) {
            self.spool_error = Some(e.to_string());
            if let Some(spool) = self.spool.take() {
                spool.discard();
            }
        }
    }

    fn open_spool(&mut self, env: &QueueEnvelope) -> Verdict {
        match self.server.store.spool(env) {
            Ok(spool) => {
                self.spool = Some(spool);
                self.spool_error = None;
                Verdict::DataAccepted {
                    queue_id: env.id.clone(),
                    date: env.received,
                }
            }
            Err(e) => Verdict::Refuse(RefuseReason::QueueUnavailable(e.to_string())),
        }
    }

    fn commit(&mut self) -> Verdict {
        let result = match (self.spool.take(), self.spool_error.take()) {
            (_, Some(e)) => Err(e),
            (None, None) => Err("no spool file".to_owned()),
            (Some(spool), None) => spool.commit().map_err(|e| e.to_string()),
        };
        match (result, &self.queued) {
            (Ok(()), Some(q)) => {
                self.line("queued")
                    .kv("id", &q.id)
                    .kv("from", &q.from)
                    .kv("size", q.size)
                    .kv("nrcpt", q.recipients)
                    .emit();
                self.server.delivery.submit(q.id.clone());
                Verdict::Queued
            }
            (Ok(()), None) => Verdict::Queued,
            (Err(e), _) => Verdict::Refuse(RefuseReason::QueueUnavailable(e)),
        }
    }

    fn line(&self, event: &str) -> Line {
        Line::new(event)
            .kv("session", &self.id)
            .kv("peer", self.peer.remote.ip())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(spool) = self.spool.take() {
            spool.discard();
        }
        if !self.closed_logged {
            self.line("disconnect")
                .kv("reason", "connection-lost")
                .emit();
        }
        self.server
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.peer.remote.ip());
    }
}

fn log_refusal(
    session: &str,
    ip: IpAddr,
    stage: &str,
    code: u16,
    reason: &RefuseReason,
    queue_id: Option<&str>,
) {
    Line::new("refuse")
        .kv("session", session)
        .kv("peer", ip)
        .kv("stage", stage)
        .kv("code", code)
        .opt("id", queue_id)
        .kv("reason", reason)
        .emit();
}
