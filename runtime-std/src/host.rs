//! The server-wide state and the per-connection work that both front ends
//! share: admitting connections, answering the session's questions from
//! the shared policy state, turning session events into log lines
//! (DESIGN.md §5) and spool operations. Logging and answers here are cheap
//! and may run anywhere; [`Connection::perform`] and
//! [`Connection::write_body`] block on the file system, so `hato-smol` runs
//! them through `smol::unblock`.
//!
//! Shared policy ([`SharedPolicy`], saved in `data_dir/state/policy`):
//! - [`Server::admit`] refuses, before the session exists, an address in
//!   `deny.from`, one blocked for a spam trap and one penalised after a
//!   harvest attempt (`event=refuse stage=connect`);
//! - `Question::Connect` asks the same plus the DNS checks, `Question::Helo`
//!   the `deny.from` names, `Question::Mail` the per-host message rate,
//!   `Question::Greylist` greylisting;
//! - `Event::Penalize` and `Event::TrapHit` are recorded and logged
//!   (`event=penalize`, `event=trap`);
//! - at the end of data, a recipient that already got a message with the
//!   same Message-ID within `limits.duplicate_window` is marked done before
//!   delivery sees the message (`event=duplicate`).
//!
//! TLS and AUTH: the server loads (or generates) its certificate at start
//! ([`crate::tls_files`]); each connection gets a [`Link`]; `Question::Auth`
//! is checked by [`crate::auth::Authenticator`] (blocking, bounded) and
//! `Question::UserRate` counts `limits.messages_per_user`.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hato_core::config::{Config, DenyFrom};
use hato_core::message::message_id;
use hato_core::policy::ListenerKind;
use hato_core::policy::{deny, ConnectionTable, Destination, PolicySettings};
use hato_core::queue::{QueueEnvelope, QueuedRecipient};
use hato_core::refusal::RefuseReason;
use hato_core::smtp::server::{Event, Peer, Question, Secret, Session, Verdict};
use hato_core::time::UnixTime;
use hato_core::tls::TlsError;

use crate::auth::Authenticator;
use crate::control::{ControlServer, DataDirLock};
use crate::delivery::{log_maildir_delivery, original, DeliveryHandle, LocalDelivery};
use crate::direct::{self, Intake};
use crate::dkim::{load_signing_keys, DkimKeys};
use crate::dns::DnsClient;
use crate::dns_checks;
use crate::link::Link;
use crate::log::{unix_now, Line};
use crate::policy_store::{SharedPolicy, SAVE_EVERY};
use crate::store::owner::Owner;
use crate::store::{Store, UsersCache};
use crate::tls_files;

/// How much of the start of a message is kept to find its Message-ID:
/// the header block, or this much of it at most.
const HEAD_LIMIT: usize = 64 * 1024;

/// Everything a running server shares between connections.
#[derive(Debug)]
pub struct Server {
    /// The configuration in force.
    pub cfg: Arc<Config>,
    /// The data directory.
    pub store: Arc<Store>,
    /// The DKIM keys of the local domains, for remote delivery to sign
    /// with ([`DkimKeys::signer_for`]).
    pub dkim: Arc<DkimKeys>,
    users: UsersCache,
    delivery: DeliveryHandle,
    policy: Arc<SharedPolicy>,
    /// DNS, only when a check needs it (DNS block lists, `deny.from` names).
    dns: Option<DnsClient>,
    connections: Mutex<ConnectionTable>,
    next_session: AtomicU64,
    stopping: AtomicBool,
    /// The control socket of `hato queue flush|delete|bounce` (none when
    /// it could not be bound: the server runs, the commands say so).
    control: Option<ControlServer>,
    /// The certificate for STARTTLS and implicit TLS.
    /// Loaded when the first connection needs it (see `tls_files`).
    tls: tls_files::ServerTls,
    /// AUTH checks and the per-user message rate.
    auth: Authenticator,
    /// Held while the server runs: one server per data directory.
    _lock: DataDirLock,
}

impl Server {
    /// Locks the data directory (`state/lock`, see [`crate::control`]),
    /// opens the store, loads the DKIM keys, loads the policy state (and starts saving it every
    /// [`SAVE_EVERY`]), starts local delivery (which first delivers what
    /// a previous run left in the queue) and the control socket.
    ///
    /// # Errors
    /// When the data directory cannot be created, opened or locked (another
    /// server uses it). A control socket that cannot be bound (a path
    /// over the 108 bytes of a Unix socket address) is logged, not fatal.
    pub fn start(cfg: Config) -> io::Result<Arc<Self>> {
        let cfg = Arc::new(cfg);
        for warning in cfg.warnings() {
            Line::new("warning").kv("config", warning).emit();
        }
        // The lock first: a second server must not clean up the queue of
        // a running one.
        let lock = DataDirLock::for_server(Store::attach(&cfg.data_dir)?.state_dir())?;
        let mut store = Store::open(&cfg.data_dir)?;
        if let Some(owner) = &cfg.delivery.mailbox_owner {
            let owner = Owner::resolve(owner).map_err(io::Error::other)?;
            store.set_mailbox_owner(owner)?;
            Line::new("mailbox-owner")
                .kv("uid", owner.uid)
                .kv("gid", owner.gid)
                .emit();
        }
        let store = Arc::new(store);
        // A DKIM key that cannot be used stops the start, as a bad
        // configuration does; `event=dkim_key` names each one in use.
        let dkim = Arc::new(load_signing_keys(&cfg).map_err(|e| io::Error::other(e.to_string()))?);
        dkim.log_loaded();
        let tls = tls_files::ServerTls::new(Arc::clone(&cfg))?;
        let auth = Authenticator::new(&cfg);
        let users = UsersCache::new(&cfg.data_dir)
            .map_err(|e| io::Error::other(format!("users file: {e}")))?;
        let policy = Arc::new(SharedPolicy::load(
            Arc::clone(&store),
            PolicySettings::from_config(&cfg),
        ));
        policy.start_saver(SAVE_EVERY)?;
        let delivery =
            LocalDelivery::spawn_signing(Arc::clone(&store), Arc::clone(&cfg), Arc::clone(&dkim))?;
        let control = {
            let delivery = delivery.clone();
            ControlServer::start(store.state_dir(), move |req| delivery.control(req))
                .map_err(|e| {
                    Line::new("error")
                        .kv("what", "control-socket")
                        .kv("error", e)
                        .kv(
                            "effect",
                            "hato queue flush|delete|bounce cannot reach this server",
                        )
                        .emit();
                })
                .ok()
        };
        let needs_dns = !cfg.dnsbl.zones.is_empty()
            || cfg.deny.from.iter().any(|e| matches!(e, DenyFrom::Name(_)));
        let dns = needs_dns.then(|| DnsClient::from_config(&cfg));
        Ok(Arc::new(Self {
            cfg,
            store,
            dkim,
            users,
            delivery,
            policy,
            dns,
            connections: Mutex::new(ConnectionTable::default()),
            next_session: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            control,
            tls,
            auth,
            _lock: lock,
        }))
    }

    /// Admits a connection, or returns the reply to send before closing
    /// (the refusal is logged): 421 while stopping or over the connection
    /// limits; 554 for an address in `deny.from` or blocked for a spam
    /// trap; 421 for a penalised address.
    ///
    /// # Errors
    /// The bytes of the reply.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Result<Connection, Vec<u8>> {
        let id = format!("{:X}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let ip = peer.remote.ip();
        let admitted = if self.is_stopping() {
            Err(RefuseReason::ShuttingDown)
        } else {
            let allowed = self.policy.lock().check_connect(ip, unix_now());
            allowed.and_then(|()| {
                self.connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .admit(ip, &self.cfg.limits)
            })
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
            intake: None,
            spool_error: None,
            head: Vec::new(),
            queued: None,
            closed_logged: false,
            verified: OnceLock::new(),
            auth_user: None,
        })
    }

    /// Returns the shared policy state.
    pub fn policy(&self) -> &SharedPolicy {
        &self.policy
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
        if let Some(control) = &self.control {
            control.stop();
        }
        self.delivery.shutdown();
        // Progress files of delivered messages waiting for an fsync.
        if let Err(e) = self.store.flush_removals() {
            Line::new("error")
                .kv("what", "queue-remover")
                .kv("error", e)
                .emit();
        }
        self.policy.stop();
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
    /// Hold this envelope's data in memory for direct delivery (see
    /// `direct`), then answer `DataStart`: no disk work until the end of
    /// data, so a front end need not leave its event loop for it.
    Hold(Box<QueueEnvelope>),
    /// Make the spooled message durable, then answer `DataEnd`.
    Commit,
    /// Delete the spool file of a refused or cut-off message.
    Discard,
    /// Answer the session at once, without disk work.
    Answer(Verdict),
    /// Answer a question that may need DNS lookups (blocking).
    Lookup(Question),
    /// Check a password (blocking: argon2, bounded concurrency).
    Verify {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
}

impl Work {
    /// Tells whether [`Connection::perform`] would touch the disk.
    pub fn blocks(&self) -> bool {
        !matches!(self, Self::None | Self::Answer(_) | Self::Hold(_))
    }
}

/// One admitted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct Connection {
    server: Arc<Server>,
    id: String,
    peer: Peer,
    /// The message being received (see `direct`).
    intake: Option<Intake>,
    spool_error: Option<String>,
    /// The start of the message being received, up to the end of its
    /// header block (at most [`HEAD_LIMIT`]), for its Message-ID.
    head: Vec<u8>,
    queued: Option<QueuedInfo>,
    closed_logged: bool,
    /// The client's verified reverse-DNS name, once looked up.
    verified: OnceLock<Option<String>>,
    /// The user the client authenticated as (SMTP AUTH), kept in the queue
    /// file of what it sends (DKIM signs only mail of our own users).
    auth_user: Option<String>,
}

/// The recipients of a message that got the same Message-ID before.
#[derive(Debug, Default)]
struct Duplicates {
    message_id: String,
    recipients: Vec<usize>,
}

#[derive(Debug)]
struct QueuedInfo {
    id: String,
    from: String,
    recipients: Vec<QueuedRecipient>,
    size: u64,
}

impl Connection {
    /// Starts the SMTP session for this connection with the current users;
    /// it offers STARTTLS when `link` can switch to TLS.
    pub fn new_session(&self, now: Instant, link: &Link) -> Session {
        let mut session = Session::new(
            Arc::clone(&self.server.cfg),
            self.server.users.current(),
            self.peer,
            now,
        );
        if link.can_starttls() {
            session.offer_starttls();
        }
        session
    }

    /// Whether [`Connection::link`] may read or generate the certificate
    /// (the first connection after start): blocking work, which an async
    /// front end moves off its executor.
    pub fn link_blocks(&self) -> bool {
        !self.server.tls.is_loaded()
    }

    /// Returns this connection's byte path: TLS from the first byte on the
    /// submissions listener, plaintext (with STARTTLS) elsewhere.
    ///
    /// # Errors
    /// rustls refused the configuration (logged by the caller).
    pub fn link(&self) -> Result<Link, TlsError> {
        let tls = self.server.tls.get();
        match self.peer.listener {
            ListenerKind::Submissions => Link::implicit(
                tls.ok_or_else(|| TlsError::Setup("no usable TLS certificate".into()))?,
            ),
            ListenerKind::Smtp | ListenerKind::Submission => Ok(Link::plain(tls)),
        }
    }

    /// Logs a TLS failure (`event=tls-failed`): a handshake a client
    /// abandoned, plaintext on the implicit-TLS port, a bad record.
    pub fn tls_failed(&self, error: &TlsError) {
        self.line("tls-failed").kv("reason", error).emit();
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
                let mut env = QueueEnvelope::from_session(id.clone(), unix_now(), envelope);
                env.auth.clone_from(&self.auth_user);
                self.line("data").kv("id", &id).emit();
                self.queued = Some(QueuedInfo {
                    id,
                    from: envelope.from.to_string(),
                    recipients: env.recipients.clone(),
                    size: 0,
                });
                if direct::eligible(&self.server.cfg, &env) {
                    Work::Hold(Box::new(env))
                } else {
                    Work::OpenSpool(Box::new(env))
                }
            }
            Event::DataEnd { size } => {
                if let Some(q) = &mut self.queued {
                    q.size = size;
                }
                Work::Commit
            }
            Event::DataDiscarded => Work::Discard,
            // Connect and HELO may need DNS (block lists, the verified
            // client name): that blocks, so it is work for `perform`.
            Event::Ask(question @ (Question::Connect | Question::Helo { .. })) => {
                Work::Lookup(question)
            }
            Event::Ask(Question::Auth { user, password, .. }) => Work::Verify { user, password },
            Event::Ask(question) => Work::Answer(Verdict::Answer(self.answer(question))),
            Event::StartTls => {
                self.line("starttls").emit();
                Work::None
            }
            Event::TlsEstablished(info) => {
                // The session forgot everything before TLS (RFC 3207 §4.2).
                self.auth_user = None;
                self.line("tls")
                    .kv("version", info.version)
                    .kv("cipher", info.cipher)
                    .emit();
                Work::None
            }
            Event::Discarded { bytes } => {
                self.line("discard")
                    .kv("stage", "starttls")
                    .kv("bytes", bytes)
                    .kv(
                        "reason",
                        "input pipelined behind STARTTLS dropped (RFC 3207 §6 injection guard)",
                    )
                    .emit();
                Work::None
            }
            Event::Authenticated { user, mechanism } => {
                self.auth_user = Some(user.clone());
                self.line("auth")
                    .kv("user", user)
                    .kv("mechanism", mechanism)
                    .emit();
                Work::None
            }
            Event::Penalize => {
                let now = unix_now();
                let until = {
                    let mut policy = self.server.policy.lock();
                    policy.penalize(ip, now);
                    policy.penalized_until(ip, now)
                };
                self.line("penalize")
                    .kv("for", secs(self.server.cfg.limits.bad_recipients_penalty))
                    .opt("until", until.map(UnixTime::rfc3339))
                    .kv("reason", "too many unknown recipients")
                    .emit();
                Work::None
            }
            Event::TrapHit { trap } => {
                let now = unix_now();
                let until = {
                    let mut policy = self.server.policy.lock();
                    policy.trap_hit(ip, now);
                    policy.trap_blocked_until(ip, now)
                };
                self.line("trap")
                    .kv("trap", trap)
                    .kv("for", secs(self.server.cfg.deny.trap_block))
                    .opt("until", until.map(UnixTime::rfc3339))
                    .emit();
                Work::None
            }
            Event::Closed(reason) => {
                self.closed_logged = true;
                self.line("disconnect").kv("reason", reason).emit();
                Work::None
            }
        }
    }

    /// Answers a question of the session from the shared policy state.
    fn answer(&self, question: Question) -> Result<(), RefuseReason> {
        let ip = self.peer.remote.ip();
        let cfg = &self.server.cfg;
        match question {
            Question::Connect => {
                self.server.policy.lock().check_connect(ip, unix_now())?;
                self.dns_checks()
            }
            // deny.from names: the HELO name, then the client's verified
            // (forward-confirmed) reverse-DNS name.
            Question::Helo { name } => {
                deny::check_name(&cfg.deny, &name)?;
                match self.verified_name() {
                    Some(verified) => deny::check_name(&cfg.deny, &verified),
                    None => Ok(()),
                }
            }
            Question::Mail { .. } => self.server.policy.lock().check_message_rate(ip, unix_now()),
            Question::UserRate { user } => self.server.auth.check_user_rate(&user),
            Question::Auth { user, password, .. } => {
                self.server
                    .auth
                    .verify(&self.server.users, ip, &user, &password.0)
            }
            Question::Greylist { from, to } => {
                // The session asks only for untrusted clients; the check
                // here keeps that promise whatever the session does.
                if cfg.relay.trusted_networks.iter().any(|n| n.contains(ip)) {
                    return Ok(());
                }
                self.server
                    .policy
                    .lock()
                    .check_greylist(ip, &from, &to, unix_now())
            }
        }
    }

    /// The checks that need DNS (block lists in `dnsbl.zones`, the
    /// client's verified reverse-DNS name against `deny.from` names), asked
    /// with `Question::Connect`: the DNS block lists (`dnsbl.zones`; a DNS
    /// failure fails open and is logged). Trusted networks are not looked up.
    fn dns_checks(&self) -> Result<(), RefuseReason> {
        let (Some(dns), cfg) = (&self.server.dns, &self.server.cfg) else {
            return Ok(());
        };
        let ip = self.peer.remote.ip();
        if cfg.dnsbl.zones.is_empty() || cfg.relay.trusted_networks.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        dns_checks::dnsbl(dns, ip, &cfg.dnsbl.zones)
    }

    /// Returns the client's forward-confirmed reverse-DNS name, looked up
    /// once per connection (blocking).
    fn verified_name(&self) -> Option<String> {
        let dns = self.server.dns.as_ref()?;
        self.verified
            .get_or_init(|| {
                let name = dns_checks::verified_name(dns, self.peer.remote.ip());
                self.line("client-name")
                    .kv("verified", name.as_deref().unwrap_or("-"))
                    .emit();
                name
            })
            .clone()
    }

    /// Does the disk work of [`Connection::on_event`]; returns the verdict
    /// to hand the session, if the event asked for one.
    pub fn perform(&mut self, work: Work) -> Option<Verdict> {
        match work {
            Work::None => None,
            Work::Answer(verdict) => Some(verdict),
            Work::Lookup(question) => Some(Verdict::Answer(self.answer(question))),
            Work::Verify { user, password } => Some(Verdict::Answer(self.server.auth.verify(
                &self.server.users,
                self.peer.remote.ip(),
                &user,
                &password.0,
            ))),
            Work::OpenSpool(env) => {
                let (id, date) = (env.id.clone(), env.received);
                let intake = Intake::spooled(&self.server.store, &env);
                Some(self.begin_data(id, date, intake))
            }
            Work::Hold(env) => {
                let (id, date) = (env.id.clone(), env.received);
                Some(self.begin_data(id, date, Ok(Intake::held(env))))
            }
            Work::Commit => Some(self.commit()),
            Work::Discard => {
                if let Some(intake) = self.intake.take() {
                    intake.discard();
                }
                self.spool_error = None;
                None
            }
        }
    }

    /// Appends message data to the spool file. A write error is kept and
    /// reported at the end of data as 451, so the client retries later.
    pub fn write_body(&mut self, chunk: &[u8]) {
        let Some(intake) = &mut self.intake else {
            return;
        };
        keep_head(&mut self.head, chunk);
        if let Err(e) = intake.write(&self.server.store, chunk) {
            self.spool_error = Some(e.to_string());
            if let Some(intake) = self.intake.take() {
                intake.discard();
            }
        }
    }

    /// Takes the message's intake (held or spooled) and answers DATA.
    fn begin_data(
        &mut self,
        queue_id: String,
        date: UnixTime,
        intake: io::Result<Intake>,
    ) -> Verdict {
        match intake {
            Ok(intake) => {
                self.intake = Some(intake);
                self.spool_error = None;
                self.head.clear();
                Verdict::DataAccepted { queue_id, date }
            }
            Err(e) => Verdict::Refuse(RefuseReason::QueueUnavailable(e.to_string())),
        }
    }

    fn commit(&mut self) -> Verdict {
        let head = std::mem::take(&mut self.head);
        let intake = match (self.intake.take(), self.spool_error.take()) {
            (_, Some(e)) => Err(e),
            (None, None) => Err("no spool file".to_owned()),
            (Some(intake), None) => Ok(intake),
        };
        let result = match intake {
            Ok(Intake::Spooled(spool)) => spool.commit().map_err(|e| e.to_string()),
            Ok(Intake::Held { env, body }) => return self.deliver_direct(&env, &body, &head),
            Err(e) => Err(e),
        };
        match (result, &self.queued) {
            (Ok(()), Some(q)) => {
                self.log_queued(q, false);
                let dups = self.duplicates(q, &head);
                for &idx in &dups.recipients {
                    self.mark_duplicate(q, &dups.message_id, idx);
                }
                self.server.delivery.submit(q.id.clone());
                Verdict::Queued
            }
            (Ok(()), None) => Verdict::Queued,
            (Err(e), _) => Verdict::Refuse(RefuseReason::QueueUnavailable(e)),
        }
    }

    /// Delivers a held message straight into its Maildirs (see `direct`);
    /// when a Maildir cannot be written, queues it with the recipients
    /// delivered so far marked done, for the local-delivery role to retry.
    fn deliver_direct(&self, env: &QueueEnvelope, body: &[u8], head: &[u8]) -> Verdict {
        let Some(q) = &self.queued else {
            return Verdict::Refuse(RefuseReason::QueueUnavailable("no envelope".into()));
        };
        let dups = self.duplicates(q, head);
        let skip = &dups.recipients;
        let out = direct::deliver(
            &self.server.store,
            &self.server.cfg.hostname,
            env,
            body,
            skip,
        );
        let Some((failed_idx, why)) = out.failed else {
            self.log_queued(q, true);
            self.log_direct(q, &out.delivered);
            for &idx in skip {
                self.log_duplicate(q, &dups.message_id, idx);
            }
            crate::reports::log_dequeued(&q.id, false);
            return Verdict::Queued;
        };
        // Queue it after all: the spool file, then the done marks, then
        // the hand-over, so that delivery never sees a recipient done
        // here as open.
        let queued = self.server.store.spool(env).and_then(|mut spool| {
            spool.write(body)?;
            spool.commit()
        });
        if let Err(e) = queued {
            // Nothing is acknowledged: the client sends it again. The
            // copies already in Maildirs will then be there twice, which
            // is better than a loss.
            return Verdict::Refuse(RefuseReason::QueueUnavailable(format!(
                "{why}; and it cannot be queued: {e}"
            )));
        }
        self.log_queued(q, false);
        for d in &out.delivered {
            if let Err(e) = self.server.store.mark_delivered(&q.id, d.idx) {
                self.line("error")
                    .kv("id", &q.id)
                    .kv("reason", format!("delivered, but cannot record it: {e}"))
                    .emit();
            }
        }
        for &idx in skip {
            self.mark_duplicate(q, &dups.message_id, idx);
        }
        self.log_direct(q, &out.delivered);
        let to = original(&q.recipients, failed_idx);
        self.line("defer")
            .kv("id", &q.id)
            .kv("to", to)
            .kv("reason", &why)
            .emit();
        self.server.delivery.submit(q.id.clone());
        Verdict::Queued
    }

    /// Logs a message accepted for delivery (`event=queued`); `direct`
    /// when it went straight into its Maildirs.
    fn log_queued(&self, q: &QueuedInfo, direct: bool) {
        self.line("queued")
            .kv("id", &q.id)
            .kv("from", &q.from)
            .kv("size", q.size)
            .kv("nrcpt", q.recipients.len())
            .opt("direct", direct.then_some("yes"))
            .emit();
    }

    /// Logs the deliveries of a direct delivery as the local-delivery role
    /// logs its own.
    fn log_direct(&self, q: &QueuedInfo, delivered: &[direct::Delivered]) {
        for d in delivered {
            let to = original(&q.recipients, d.idx);
            log_maildir_delivery(&q.id, to, &d.mailbox, &d.file, Some("direct"));
        }
    }

    /// Marks recipient `idx` of a queued message done as a duplicate, so
    /// delivery skips it. When the mark cannot be written the copy is
    /// delivered (a duplicate is better than a loss).
    fn mark_duplicate(&self, q: &QueuedInfo, message_id: &str, idx: usize) {
        match self.server.store.mark_delivered(&q.id, idx) {
            Ok(()) => self.log_duplicate(q, message_id, idx),
            Err(e) => {
                let to = original(&q.recipients, idx);
                self.line("error")
                    .kv("id", &q.id)
                    .kv("to", to)
                    .kv(
                        "reason",
                        format!("cannot drop a duplicate, delivering it: {e}"),
                    )
                    .emit();
            }
        }
    }

    fn log_duplicate(&self, q: &QueuedInfo, message_id: &str, idx: usize) {
        let to = original(&q.recipients, idx);
        self.line("duplicate")
            .kv("id", &q.id)
            .kv("to", to)
            .kv("message_id", message_id)
            .kv(
                "reason",
                "same Message-ID to this recipient delivered already",
            )
            .emit();
    }

    /// Duplicate suppression: the recipients of the accepted message that
    /// got a message with the same Message-ID within
    /// `limits.duplicate_window` (they are skipped). A message without
    /// Message-ID is never suppressed.
    fn duplicates(&self, q: &QueuedInfo, head: &[u8]) -> Duplicates {
        let Some(message_id) = message_id(head) else {
            return Duplicates::default();
        };
        let now = unix_now();
        let mut policy = self.server.policy.lock();
        // Local mailboxes only: a remote recipient's copy that comes back
        // is a mail loop, which must end in a bounce at delivery.max_hops,
        // not vanish as a duplicate.
        let recipients = q
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.destination, Destination::Local(_)))
            .filter(|(_, r)| policy.seen_before(&message_id, destination(r), now))
            .map(|(idx, _)| idx)
            .collect();
        Duplicates {
            message_id,
            recipients,
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
        if let Some(intake) = self.intake.take() {
            intake.discard();
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

/// The address a recipient is delivered to: the mailbox (after aliases)
/// or the remote address. Duplicates are told apart by it.
fn destination(r: &QueuedRecipient) -> &str {
    match &r.destination {
        Destination::Local(a) | Destination::Remote(a) => a,
    }
}

/// Appends the part of `chunk` that still belongs to the header block
/// (up to and including the blank line that ends it, at most
/// [`HEAD_LIMIT`] bytes in all) to `head`.
fn keep_head(head: &mut Vec<u8>, chunk: &[u8]) {
    const END: &[u8] = b"\r\n\r\n";
    if head.len() >= HEAD_LIMIT || (head.len() >= END.len() && head.ends_with(END)) {
        return;
    }
    let room = HEAD_LIMIT - head.len();
    let take = &chunk[..chunk.len().min(room)];
    // Look for the end of the header block across the boundary too.
    let from = head.len().saturating_sub(END.len() - 1);
    head.extend_from_slice(take);
    if let Some(pos) = head[from..].windows(END.len()).position(|w| w == END) {
        head.truncate(from + pos + END.len());
    }
}

/// Writes a duration in whole seconds for a log line: `600s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_blank_line_even_across_chunks() {
        let mut head = Vec::new();
        keep_head(&mut head, b"Received: x\r\nMessage-ID: <a@b>\r");
        keep_head(&mut head, b"\n\r");
        keep_head(&mut head, b"\nbody\r\n");
        keep_head(&mut head, b"more body\r\n");
        assert_eq!(head, b"Received: x\r\nMessage-ID: <a@b>\r\n\r\n");
    }

    #[test]
    fn the_head_is_bounded() {
        let mut head = Vec::new();
        for _ in 0..100 {
            keep_head(&mut head, &[b'x'; 4096]);
        }
        assert_eq!(head.len(), HEAD_LIMIT);
    }
}
