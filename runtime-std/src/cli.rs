//! The command line of both binaries (DESIGN.md §2): `serve`,
//! `check-config`, `user add|del|passwd|list`, `queue
//! list|show|flush|delete|bounce`, `dkim keygen|record`. Each binary passes its own `serve`
//! function; everything else is shared. The queue commands that change
//! the queue ask the running server through its control socket, or work
//! on the files under the data directory's lock when none runs
//! ([`crate::control`]).

use std::io::{self, BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hato_core::config::{Config, Overrides};
use hato_core::directory::validate_mailbox_name;

use crate::control::{self, Request};
use crate::dkim::command::{keygen_command, record_command, DkimArgs};
use crate::log::unix_now;
use crate::queue_admin;
use crate::store::{users, Store};

const USAGE: &str = "\
usage:
  {p} serve [--config FILE] [--hostname NAME] [--data-dir DIR]
  {p} check-config [--config FILE] [--hostname NAME] [--data-dir DIR]
  {p} user add ADDRESS [--password-stdin | --no-password] [--config FILE | --data-dir DIR]
  {p} user passwd ADDRESS [--password-stdin] [--config FILE | --data-dir DIR]
  {p} user del ADDRESS [--config FILE | --data-dir DIR]
  {p} user list [--config FILE | --data-dir DIR]
  {p} queue list [--config FILE | --data-dir DIR]
  {p} queue show ID [--config FILE | --data-dir DIR]
  {p} queue flush [--config FILE | --data-dir DIR]
  {p} queue delete ID [--config FILE | --data-dir DIR]
  {p} queue bounce ID [--config FILE | --data-dir DIR]
  {p} dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519] [--bits 2048]
        [--config FILE | --data-dir DIR]
  {p} dkim record DOMAIN [--selector S] [--config FILE | --data-dir DIR]

With no --config, hato runs on its embedded defaults: SMTP on 127.0.0.1:2525,
submission on 127.0.0.1:2587, data in ./hato-data, mail accepted for the
host name and its parent domain, relay only for loopback clients.";

/// Runs the command line with `serve` as the server's main loop.
pub fn main_with(program: &str, serve: fn(Config) -> io::Result<()>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(program, &args, serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Options common to every command.
#[derive(Debug, Default)]
struct Options {
    config: Option<PathBuf>,
    overrides: Overrides,
    password_stdin: bool,
    no_password: bool,
    dkim: DkimArgs,
    words: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" | "-c" => o.config = Some(value("--config")?.into()),
            "--hostname" => o.overrides.hostname = Some(value("--hostname")?),
            "--data-dir" => o.overrides.data_dir = Some(value("--data-dir")?.into()),
            "--password-stdin" => o.password_stdin = true,
            "--no-password" => o.no_password = true,
            "--selector" => o.dkim.selector = Some(value("--selector")?),
            "--algorithm" => o.dkim.algorithm = Some(value("--algorithm")?),
            "--bits" => o.dkim.bits = Some(value("--bits")?),
            "-h" | "--help" => o.words.push("help".into()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            word => o.words.push(word.to_owned()),
        }
    }
    Ok(o)
}

fn run(program: &str, args: &[String], serve: fn(Config) -> io::Result<()>) -> Result<(), String> {
    let o = parse_options(args)?;
    let words: Vec<&str> = o.words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["serve"] => serve(load_config(&o)?).map_err(|e| e.to_string()),
        ["check-config"] => {
            let cfg = load_config(&o)?;
            print!("{}", cfg.explain());
            let keys = crate::dkim::load_signing_keys(&cfg).map_err(|e| e.to_string())?;
            for (domain, key) in keys.domains() {
                println!("{}", crate::dkim::describe(domain, keys.selector(), key));
            }
            if let Some(checked) =
                crate::tls_files::check_configured(&cfg).map_err(|e| e.to_string())?
            {
                println!("{checked}");
            }
            println!("The configuration is valid.");
            Ok(())
        }
        ["user", "add", address] => user_add(&o, address),
        ["user", "passwd", address] => {
            let password = read_password(&o, address)?;
            users::set_password(&data_dir(&o)?, address, Some(&password))
                .map_err(|e| e.to_string())?;
            println!("password of {address} changed");
            Ok(())
        }
        ["user", "del", address] => {
            users::remove(&data_dir(&o)?, address).map_err(|e| e.to_string())?;
            println!("removed {address} (its Maildir is kept)");
            Ok(())
        }
        ["user", "list"] => {
            for entry in users::list(&data_dir(&o)?).map_err(|e| e.to_string())? {
                let kind = if entry.has_password() {
                    "login"
                } else {
                    "receive-only"
                };
                println!("{}\t{kind}", entry.address);
            }
            Ok(())
        }
        ["queue", "list"] => queue_list(&data_dir(&o)?),
        ["dkim", "keygen", domain] => {
            let cfg = o.config.is_some().then(|| load_config(&o)).transpose()?;
            print!(
                "{}",
                keygen_command(&data_dir(&o)?, cfg.as_ref(), domain, &o.dkim)?
            );
            Ok(())
        }
        ["dkim", "record", domain] => {
            let cfg = o.config.is_some().then(|| load_config(&o)).transpose()?;
            print!(
                "{}",
                record_command(&data_dir(&o)?, cfg.as_ref(), domain, &o.dkim)?
            );
            Ok(())
        }
        ["queue", "show", id] => {
            let dir = data_dir(&o)?;
            let store = attach(&dir)?;
            let text = queue_admin::show(&store, id).map_err(|e| not_queued(id, &e))?;
            print!("{text}");
            Ok(())
        }
        ["queue", "flush"] => queue_change(&o, Request::Flush),
        ["queue", "delete", id] => queue_change(&o, Request::Delete((*id).to_owned())),
        ["queue", "bounce", id] => queue_change(&o, Request::Bounce((*id).to_owned())),
        [] | ["help"] => {
            println!("{}", USAGE.replace("{p}", program));
            Ok(())
        }
        _ => Err(format!(
            "unknown command: {}\n{}",
            words.join(" "),
            USAGE.replace("{p}", program)
        )),
    }
}

fn load_config(o: &Options) -> Result<Config, String> {
    let text = match &o.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    Config::load(text.as_deref(), &o.overrides).map_err(|e| match &o.config {
        Some(path) => format!("{}: {e}", path.display()),
        None => format!("{e} (give --hostname NAME or --config FILE)"),
    })
}

/// The data directory for user and queue commands: from the config when
/// one is given, else `--data-dir`, else `./hato-data`.
fn data_dir(o: &Options) -> Result<PathBuf, String> {
    if o.config.is_some() {
        return Ok(load_config(o)?.data_dir);
    }
    Ok(o.overrides
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("hato-data")))
}

fn user_add(o: &Options, address: &str) -> Result<(), String> {
    let address = address.to_ascii_lowercase();
    validate_mailbox_name(&address).map_err(|e| format!("{address}: {e}"))?;
    if o.config.is_some() {
        let cfg = load_config(o)?;
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        if !cfg.is_local_domain(domain) {
            return Err(format!(
                "{domain} is not a local domain ({}); add it to `domains` first",
                cfg.domains.join(", ")
            ));
        }
    }
    let password = if o.no_password {
        None
    } else {
        Some(read_password(o, &address)?)
    };
    let dir = data_dir(o)?;
    users::add(&dir, &address, password.as_deref()).map_err(|e| e.to_string())?;
    let kind = if password.is_some() {
        "with a password"
    } else {
        "receive-only"
    };
    println!(
        "added {address} ({kind}); mail goes to {}",
        mailbox_path(&dir, &address).display()
    );
    Ok(())
}

fn mailbox_path(data_dir: &Path, address: &str) -> PathBuf {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    data_dir.join("mailboxes").join(domain).join(local)
}

fn read_password(o: &Options, address: &str) -> Result<String, String> {
    let password = if o.password_stdin || !io::stdin().is_terminal() {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("password for {address}: "))
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    if password.is_empty() {
        return Err("empty password (use --no-password for a receive-only mailbox)".into());
    }
    Ok(password)
}

fn attach(data_dir: &Path) -> Result<Store, String> {
    Store::attach(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))
}

fn not_queued(id: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        format!("no message {id} in the queue")
    } else {
        format!("{id}: {e}")
    }
}

/// `queue flush|delete|bounce`: asks the running server, or does it on
/// the files (under the lock) when none runs.
fn queue_change(o: &Options, req: Request) -> Result<(), String> {
    // A bounce composes a report: it needs the host name and domains, so
    // the configuration when one is given.
    let cfg = match (&req, o.config.is_some()) {
        (Request::Bounce(_), true) => Some(load_config(o)?),
        _ => None,
    };
    let dir = data_dir(o)?;
    let store = attach(&dir)?;
    let answer = control::request_or_else(store.state_dir(), &req, || {
        offline(&store, cfg.as_ref(), o, &req)
    })?;
    let text = answer?;
    println!("{text}");
    Ok(())
}

/// Does a queue request with no server running (the caller holds the lock).
fn offline(
    store: &Store,
    cfg: Option<&Config>,
    o: &Options,
    req: &Request,
) -> Result<String, String> {
    match req {
        Request::Flush => {
            Ok("no server is running; every queued message is tried when it starts".into())
        }
        Request::Delete(id) => {
            queue_admin::delete(store, id).map_err(|e| not_queued(id, &e))?;
            Ok(format!("deleted {id}"))
        }
        Request::Bounce(id) => {
            let loaded;
            let cfg = match cfg {
                Some(c) => c,
                None => {
                    loaded = load_config(o)?;
                    &loaded
                }
            };
            let out =
                queue_admin::bounce(store, cfg, id, unix_now()).map_err(|e| not_queued(id, &e))?;
            Ok(match out.report {
                Some((dsn, to, _)) => format!(
                    "bounced {id}: {} recipients failed; report {dsn} queued for <{to}> \
                     (delivered when the server starts)",
                    out.failed
                ),
                None => format!(
                    "bounced {id}: {} recipients failed; no report ({})",
                    out.failed,
                    out.no_report.unwrap_or("none needed")
                ),
            })
        }
    }
}

fn queue_list(data_dir: &Path) -> Result<(), String> {
    let store = attach(data_dir)?;
    let list = store.list_summary().map_err(|e| e.to_string())?;
    if list.is_empty() {
        println!("the queue is empty");
    }
    for m in list {
        println!(
            "{}  {}  {} bytes  from {}",
            m.id,
            m.received.rfc3339(),
            m.size,
            m.from
        );
        for (original, destination, state) in &m.recipients {
            println!("    {original}  {destination:?}  {}", state.as_str());
        }
    }
    Ok(())
}
