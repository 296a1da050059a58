//! DKIM signatures checked by an independent verifier: Python's dkimpy
//! (`dkim.verify(message, dnsfunc=...)`, with the public key handed over
//! in place of DNS). Messages are signed through hato's real code (keys
//! from `hato dkim keygen`'s code or the binaries themselves, the signer
//! fed in small chunks as remote delivery will feed it) with both
//! algorithms; tampered copies must fail, whitespace-only changes pass
//! (relaxed canonicalization, RFC 6376 §3.4.2, §3.4.4).
//!
//! The dkimpy tests need `pip install dkimpy dnspython pynacl`; they are
//! `#[ignore]`d so that a machine with only Rust and python3 passes the
//! plain `cargo test`, and `.ci/interop` installs dkimpy and runs them
//! with `--ignored`. The key-file checks that need no dkimpy always run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hato_core::config::{Config, Overrides};
use hato_core::message::dkim::Algorithm;
use hato_runtime_std::dkim::{keygen, load_signing_keys, record_value, Signed};
use hato_runtime_std::log::unix_now;
use hato_spec_tests::python::run_python;
use hato_spec_tests::server::{Binary, DataDir};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// argv: record file, expected DNS name, message files. Prints one line
/// per message: its file name and pass or fail.
const VERIFY: &str = r#"
import logging, os, sys
import dkim

logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
record = open(sys.argv[1], "rb").read().strip()
expected = sys.argv[2].encode()

def dns(name, timeout=5):
    if name.rstrip(b".") != expected:
        print("unexpected DNS name", name, file=sys.stderr)
        return None
    return record

for path in sys.argv[3:]:
    msg = open(path, "rb").read()
    d = dkim.DKIM(msg, logger=logging.getLogger(os.path.basename(path)))
    try:
        ok = d.verify(dnsfunc=dns)
    except dkim.DKIMException as e:
        print(os.path.basename(path), "says", e, file=sys.stderr)
        ok = False
    print(os.path.basename(path), "pass" if ok else "fail")
"#;

fn config(dir: &Path) -> Config {
    let text = format!(
        "hostname = \"mail.example.org\"\ndata_dir = \"{}\"\n",
        dir.display()
    );
    Config::load(Some(&text), &Overrides::default()).unwrap()
}

/// Messages that exercise the canonicalization: (name, bytes).
fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let head = "From: Alice <alice@example.org>\r\nTo: Bob <bob@partner.example>\r\n\
                Subject: Lunch\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
                Message-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n\
                Content-Type: text/plain; charset=utf-8\r\n";
    let long_line = "x".repeat(990);
    let long_subject = (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        (
            "plain",
            format!("{head}\r\nHello Bob,\r\n.\r\n..dots\r\nsee you at noon.\r\n").into_bytes(),
        ),
        (
            "folded",
            "From: Alice\r\n <alice@example.org>\r\nTo: bob@partner.example,\r\n\tcarol@partner.example\r\n\
             Subject: a subject that is\r\n\tfolded over\r\n   three lines\r\n\
             References: <1@example.org>\r\n <2@example.org>\r\n\r\nbody\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "trailing-whitespace",
            "From: alice@example.org \t\r\nSubject:   spaced   out  \r\nTo:bob@partner.example\r\n\r\n\
             line with trailing   \t\r\n  indented\t\tline\r\n \t\r\n\r\n\r\n"
                .as_bytes()
                .to_vec(),
        ),
        ("empty-body", format!("{head}\r\n").into_bytes()),
        (
            "no-final-crlf",
            format!("{head}\r\nfirst line\r\nlast line without its end").into_bytes(),
        ),
        (
            "long-lines",
            format!(
                "From: alice@example.org\r\nSubject: {}\r\n\r\n{long_line}\r\n{long_line} {long_line}\r\n",
                long_subject
            )
            .into_bytes(),
        ),
        (
            "eight-bit",
            "From: Zoë <zoe@example.org>\r\nSubject: Grüße\r\n\r\nÜber café\r\n"
                .as_bytes()
                .to_vec(),
        ),
    ]
}

/// Signs `msg` with the key of example.org under `data_dir`, feeding the
/// signer 7 bytes at a time; returns the signed message.
fn sign(data_dir: &Path, msg: &[u8]) -> Vec<u8> {
    let keys = load_signing_keys(&config(data_dir)).unwrap();
    let mut signer = keys.signer_for("example.org", unix_now()).unwrap();
    for chunk in msg.chunks(7) {
        signer.feed(chunk);
    }
    let field = signer.finish().unwrap();
    assert!(field.ends_with("\r\n"));
    let mut out = field.into_bytes();
    out.extend_from_slice(msg);
    out
}

/// Runs dkimpy over `files` with `record` as the answer for
/// `hato._domainkey.example.org`; returns name → pass/fail.
fn verify(dir: &Path, record: &str, files: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let record_file = dir.join("record.txt");
    std::fs::write(&record_file, record).unwrap();
    let mut args = vec![
        record_file.to_str().unwrap().to_owned(),
        "hato._domainkey.example.org".to_owned(),
    ];
    for (name, bytes) in files {
        let path = dir.join(format!("{name}.eml"));
        std::fs::write(&path, bytes).unwrap();
        args.push(path.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python(VERIFY, &args, SCRIPT_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let results: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(f, r)| (f.trim_end_matches(".eml").to_owned(), r.to_owned()))
        .collect();
    assert_eq!(results.len(), files.len(), "{}\n{}", out.stdout, out.stderr);
    for ((name, _), (got, _)) in files.iter().zip(&results) {
        assert_eq!(name, got);
    }
    let wrong: Vec<_> = files
        .iter()
        .zip(&results)
        .filter(|((name, _), (_, r))| r != expect(name))
        .map(|((name, _), (_, r))| format!("{name}: {r}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}\n{}", out.stderr);
    eprintln!(
        "{}",
        out.stderr
            .lines()
            .filter(|l| l.contains(" says "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    results
}

/// Tampered messages must fail, everything else pass.
fn expect(name: &str) -> &'static str {
    if name.starts_with("tampered-") {
        "fail"
    } else {
        "pass"
    }
}

fn replace(haystack: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(haystack.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} not in message");
    text.replacen(from, to, 1).into_bytes()
}

fn dkimpy_verifies(algorithm: Algorithm) {
    let data = DataDir::new(&format!("dkim-{}", algorithm.key_type())).unwrap();
    let g = keygen(data.path(), "example.org", "hato", algorithm, 2048).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = messages()
        .into_iter()
        .map(|(name, msg)| (name.to_owned(), sign(data.path(), &msg)))
        .collect();
    let plain = files[0].1.clone();
    let field_end = plain.windows(7).position(|w| w == b"\r\nFrom:").unwrap() + 2;
    let (field, rest) = plain.split_at(field_end);
    assert!(String::from_utf8_lossy(field).contains(&format!("a={};", algorithm.name())));
    let tampered = [
        ("tampered-body", replace(&plain, "Hello Bob", "Hello Eve")),
        (
            "tampered-subject",
            replace(&plain, "Subject: Lunch", "Subject: Lunch!"),
        ),
        (
            "tampered-added-from",
            [field, b"From: mallory@attacker.example\r\n", rest].concat(),
        ),
        (
            "tampered-added-line",
            replace(
                &plain,
                "see you at noon.\r\n",
                "see you at noon.\r\nP.S. bring cash\r\n",
            ),
        ),
        (
            "relaxed-whitespace",
            replace(&plain, "Hello Bob,\r\n", "Hello   Bob,  \r\n"),
        ),
        ("relaxed-trailing-lines", [&plain[..], b"\r\n\r\n"].concat()),
    ];
    files.extend(tampered.into_iter().map(|(n, m)| (n.to_owned(), m)));
    verify(data.path(), &record_value(&g.key), &files);
}

#[test]
#[ignore = "needs dkimpy (pip install dkimpy dnspython pynacl); run by .ci/interop"]
fn dkimpy_verifies_rsa_sha256_and_catches_tampering() {
    dkimpy_verifies(Algorithm::RsaSha256);
}

#[test]
#[ignore = "needs dkimpy (pip install dkimpy dnspython pynacl); run by .ci/interop"]
fn dkimpy_verifies_ed25519_sha256_and_catches_tampering() {
    dkimpy_verifies(Algorithm::Ed25519Sha256);
}

/// Runs `binary dkim ARGS --data-dir DIR`; returns (success, stdout, stderr).
fn hato_dkim(binary: Binary, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary.path().unwrap())
        .arg("dkim")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The record text of the printed zone-file line: its quoted strings
/// joined (RFC 6376 §3.6.2.2).
fn printed_record(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("hato._domainkey.example.org. IN TXT "))
        .unwrap_or_else(|| panic!("no record line in {stdout}"));
    let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert!(strings.iter().all(|s| s.len() <= 255), "{line}");
    strings.concat()
}

/// Runs keygen through `binary`, checks the file and the refusal to
/// overwrite; returns the printed record and the key file.
fn cli_keygen(binary: Binary, dir: &Path, algorithm: &str) -> (String, PathBuf) {
    let (ok, stdout, stderr) = hato_dkim(
        binary,
        dir,
        &["keygen", "example.org", "--algorithm", algorithm],
    );
    assert!(ok, "{stdout}{stderr}");
    let key = dir.join("dkim/example.org.hato.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let record = printed_record(&stdout);
    assert!(record.starts_with(&format!(
        "v=DKIM1; k={}; p=",
        if algorithm == "rsa" { "rsa" } else { "ed25519" }
    )));
    // Never over an existing key.
    let (ok, _, stderr) = hato_dkim(binary, dir, &["keygen", "example.org"]);
    assert!(!ok);
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), pem);
    // `dkim record` prints the same record again.
    let (ok, stdout, stderr) = hato_dkim(binary, dir, &["record", "example.org"]);
    assert!(ok, "{stderr}");
    assert_eq!(printed_record(&stdout), record);
    (record, key)
}

#[test]
fn keygen_writes_a_private_key_and_prints_its_record_in_both_binaries() {
    for (binary, algorithm) in [(Binary::Hato, "ed25519"), (Binary::HatoSmol, "rsa")] {
        let data = DataDir::new(&format!("dkim-cli-{}", binary.name())).unwrap();
        cli_keygen(binary, data.path(), algorithm);
        let (ok, _, stderr) = hato_dkim(binary, data.path(), &["keygen", "bad domain"]);
        assert!(!ok);
        assert!(stderr.contains("not a domain name"), "{stderr}");
    }
}

#[test]
#[ignore = "needs dkimpy (pip install dkimpy dnspython pynacl); run by .ci/interop"]
fn the_printed_record_verifies_mail_signed_with_the_written_key() {
    for (binary, algorithm) in [(Binary::Hato, "rsa"), (Binary::HatoSmol, "ed25519")] {
        let data = DataDir::new(&format!("dkim-record-{}", binary.name())).unwrap();
        let (record, _) = cli_keygen(binary, data.path(), algorithm);
        // Signed as remote delivery does: read from a file by sign_message.
        let (name, msg) = messages().swap_remove(0);
        let file = data.path().join("spooled.eml");
        std::fs::write(&file, &msg).unwrap();
        let keys = load_signing_keys(&config(data.path())).unwrap();
        let mut reader = std::fs::File::open(&file).unwrap();
        let Signed::Field { domain, field } = keys
            .sign_message(Some("example.test"), unix_now(), &mut reader)
            .unwrap()
        else {
            panic!("not signed")
        };
        assert_eq!(domain, "example.org");
        let signed = [field.as_bytes(), &msg].concat();
        verify(data.path(), &record, &[(name.to_owned(), signed)]);
    }
}

#[test]
fn serve_loads_the_keys_and_refuses_one_others_can_read() {
    use hato_spec_tests::server::Server;
    for binary in Binary::ALL {
        let data = DataDir::new(&format!("dkim-serve-{}", binary.name())).unwrap();
        let g = keygen(
            data.path(),
            "example.test",
            "hato",
            Algorithm::Ed25519Sha256,
            0,
        )
        .unwrap();
        let mut server = Server::start_with(binary, data.clone(), &[]).unwrap();
        let lines = server.wait_events("dkim_key", 1);
        assert!(lines[0].contains("domain=example.test"), "{lines:?}");
        assert!(lines[0].contains("algorithm=ed25519-sha256"), "{lines:?}");
        server.kill().unwrap();
        drop(server);
        std::fs::set_permissions(&g.path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Server::start_with(binary, data, &[]).err().unwrap();
        assert!(err.contains("can be read by others"), "{err}");
    }
}

/// The zone-file record `hato dkim record DOMAIN` prints for `domain`.
fn record_of(binary: Binary, dir: &Path, domain: &str) -> String {
    let (ok, stdout, stderr) = hato_dkim(binary, dir, &["record", domain]);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("hato._domainkey.{domain}. IN TXT ")))
        .unwrap_or_else(|| panic!("no record line in {stdout}"));
    line.split('"')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .concat()
}

#[test]
#[ignore = "needs dkimpy (pip install dkimpy dnspython pynacl); run by .ci/interop"]
fn remote_delivery_signs_our_users_mail_and_dkimpy_verifies_it() {
    use hato_core::policy::ListenerKind;
    use hato_spec_tests::client::SmtpClient;
    use hato_spec_tests::server::Server;
    use hato_spec_tests::sink::Sink;

    for (binary, algorithm) in [(Binary::Hato, "rsa"), (Binary::HatoSmol, "ed25519")] {
        let data = DataDir::new(&format!("dkim-remote-{}", binary.name())).unwrap();
        let (ok, out, err) = hato_dkim(
            binary,
            data.path(),
            &["keygen", "example.test", "--algorithm", algorithm],
        );
        assert!(ok, "{out}{err}");
        let record = record_of(binary, data.path(), "example.test");
        let sink = Sink::start(Vec::new()).unwrap();
        let server = Server::start_with(
            binary,
            data.clone(),
            &[("delivery.smarthost".into(), format!("\"{}\"", sink.addr))],
        )
        .unwrap();
        let mut c = SmtpClient::connect(server.addr(ListenerKind::Smtp).unwrap()).unwrap();
        c.ehlo("client.example").unwrap();
        let msg = "From: Alice <alice@example.test>\r\nTo: carol@partner.test\r\nSubject: signed on the way out\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <signed@example.test>\r\n\r\nHello Carol.\r\n.dot line\r\n";
        c.send_mail(
            "alice@example.test",
            &["carol@partner.test"],
            msg.as_bytes(),
        )
        .unwrap();
        c.quit().unwrap();
        let got = sink.wait_for(1, SCRIPT_TIMEOUT);
        assert_eq!(got.len(), 1, "{}", server.log_text());
        let data_bytes = &got[0].data;
        assert!(
            data_bytes.starts_with(b"DKIM-Signature: v=1;"),
            "{}",
            String::from_utf8_lossy(data_bytes)
        );
        let record_file = data.path().join("record.txt");
        std::fs::write(&record_file, &record).unwrap();
        let signed = data.path().join("received.eml");
        std::fs::write(&signed, data_bytes).unwrap();
        let mut tampered = data_bytes.clone();
        let at = tampered.len() - 4;
        tampered[at] = b'X';
        let bad = data.path().join("tampered.eml");
        std::fs::write(&bad, &tampered).unwrap();
        let out = run_python(
            VERIFY,
            &[
                record_file.to_str().unwrap(),
                "hato._domainkey.example.test",
                signed.to_str().unwrap(),
                bad.to_str().unwrap(),
            ],
            SCRIPT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            ["received.eml pass", "tampered.eml fail"],
            "{}",
            out.stderr
        );
    }
}
