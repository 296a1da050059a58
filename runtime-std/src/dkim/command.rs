//! The `hato dkim` subcommands: `keygen` makes a key and prints the DNS
//! record to publish; `record` prints it again for an existing key.

use std::path::Path;

use hato_core::config::{parse_algorithm, Config, DEFAULT_SELECTOR};
use hato_core::message::dkim::Algorithm;

use super::{domain_key, keygen, load_key_file, record_value, zone_line};

/// What the command line gave.
#[derive(Debug, Default)]
pub struct DkimArgs {
    /// `--selector`
    pub selector: Option<String>,
    /// `--algorithm`
    pub algorithm: Option<String>,
    /// `--bits`
    pub bits: Option<String>,
}

/// `hato dkim keygen DOMAIN`: returns what to print.
///
/// # Errors
/// A bad argument, a domain that is not local (when a configuration is
/// given), an existing key, or a write failure; in words.
pub fn keygen_command(
    data_dir: &Path,
    cfg: Option<&Config>,
    domain: &str,
    args: &DkimArgs,
) -> Result<String, String> {
    let domain = domain_key(domain);
    if let Some(cfg) = cfg {
        if !cfg.is_local_domain(&domain) {
            return Err(format!(
                "{domain} is not a local domain ({}); hato signs only the mail of its own \
                 domains, so add it to `domains` first",
                cfg.domains.join(", ")
            ));
        }
    }
    let selector = selector(cfg, args);
    let algorithm = match (&args.algorithm, cfg) {
        (Some(a), _) => parse_algorithm(a)?,
        (None, Some(cfg)) => cfg.dkim.algorithm,
        (None, None) => Algorithm::RsaSha256,
    };
    let bits = match &args.bits {
        Some(b) if algorithm == Algorithm::Ed25519Sha256 => {
            return Err(format!(
                "--bits {b} is for RSA keys; Ed25519 keys have a fixed size"
            ))
        }
        Some(b) => b
            .parse::<usize>()
            .map_err(|_| format!("--bits {b}: write a number of bits, e.g. 2048"))?,
        None => 2048,
    };
    let g = keygen(data_dir, &domain, &selector, algorithm, bits).map_err(|e| e.to_string())?;
    let kind = match g.key.rsa_bits() {
        Some(bits) => format!("rsa, {bits} bits"),
        None => "ed25519".to_owned(),
    };
    let mut out = format!("wrote {} ({kind}, mode 0600)\n", g.path.display());
    if let Some(cfg) = cfg {
        if cfg.dkim.keys.contains_key(&domain) {
            out.push_str(&format!(
                "note: dkim.keys names another file for {domain}; remove that line to use \
                 this key\n"
            ));
        }
    }
    out.push_str(&publish_text(&domain, &selector, &record_value(&g.key)));
    Ok(out)
}

/// `hato dkim record DOMAIN`: the DNS record of the existing key.
///
/// # Errors
/// No key for that domain and selector, or an unusable one; in words.
pub fn record_command(
    data_dir: &Path,
    cfg: Option<&Config>,
    domain: &str,
    args: &DkimArgs,
) -> Result<String, String> {
    let domain = domain_key(domain);
    let selector = selector(cfg, args);
    let path = match cfg {
        Some(cfg) if args.selector.is_none() => cfg.dkim.key_file(data_dir, &domain),
        _ => hato_core::config::Dkim::default_key_file(data_dir, &domain, &selector),
    };
    let key = load_key_file(&path).map_err(|e| match e {
        super::KeyLoadError::Missing { .. } => format!(
            "no DKIM key {}; make one with `hato dkim keygen {domain}`",
            path.display()
        ),
        e => e.to_string(),
    })?;
    Ok(publish_text(&domain, &selector, &record_value(&key)))
}

fn selector(cfg: Option<&Config>, args: &DkimArgs) -> String {
    match (&args.selector, cfg) {
        (Some(s), _) => s.to_ascii_lowercase(),
        (None, Some(cfg)) => cfg.dkim.selector.clone(),
        (None, None) => DEFAULT_SELECTOR.to_owned(),
    }
}

fn publish_text(domain: &str, selector: &str, value: &str) -> String {
    format!(
        "Publish this TXT record in the DNS zone of {domain}:\n{}\n\
         Mail from {domain} is signed once hato (re)starts with this key; receivers can \
         check it once the record is visible.\n",
        zone_line(selector, domain, value)
    )
}
