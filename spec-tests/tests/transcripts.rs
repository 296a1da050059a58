//! One test per transcript in `transcripts/`: the core's conversation must
//! match its insta snapshot, and `hato` and `hato-smol` over TCP must
//! produce exactly the core's conversation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hato_spec_tests::core_run::{run_core, CoreRun};
use hato_spec_tests::render::explain_difference;
use hato_spec_tests::server::{Binary, Server};
use hato_spec_tests::tcp::run_tcp;
use hato_spec_tests::transcript::{escape, Transcript};
use hato_spec_tests::{load, transcripts_dir};

include!(concat!(env!("OUT_DIR"), "/transcript_tests.rs"));

fn run(name: &str) {
    let t = load(name).unwrap_or_else(|e| panic!("{e}"));
    let core = run_core(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        core.errors.is_empty(),
        "{name}: driver misuse: {:?}",
        core.errors
    );

    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(t.header.join("\n"));
    settings.set_input_file(transcripts_dir().join(format!("{name}.txt")));
    settings.bind(|| insta::assert_snapshot!(name, core.conversation));

    if !t.bodies.is_empty() {
        let got: Vec<String> = core.bodies.iter().map(|b| escape(b)).collect();
        let want: Vec<String> = t.bodies.iter().map(|b| escape(b)).collect();
        assert_eq!(
            got, want,
            "{name}: queued bodies (Received header stripped)"
        );
    }
    for header in &core.received {
        assert!(
            header.starts_with(b"Received: from ") && header.ends_with(b"\r\n"),
            "{name}: the message does not start with a Received header: {}",
            escape(header)
        );
    }

    let (t, core) = (&t, &core);
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = Binary::ALL
            .iter()
            .map(|&b| s.spawn(move || over_tcp(b, t, core)))
            .collect();
        runs.into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("runner panicked".into()))
                    .err()
            })
            .collect()
    });
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n\n"));
}

/// Runs `t` against a fresh `binary` server; `Err` describes the difference.
fn over_tcp(binary: Binary, t: &Transcript, core: &CoreRun) -> Result<(), String> {
    let server = Server::start(binary, t)?;
    let addr = server.addr(t.listener)?;
    let got = run_tcp(t, addr, core)?;
    if got == core.conversation {
        Ok(())
    } else {
        let mut msg = explain_difference(binary.name(), &core.conversation, &got);
        msg.push_str(&format!(
            "--- {} stderr ---\n{}\n",
            binary.name(),
            server.log_text()
        ));
        Err(msg)
    }
}

#[test]
fn no_snapshot_is_orphaned_and_there_are_enough_transcripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut orphans = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".snap") {
                if !TRANSCRIPTS.contains(&stem) {
                    orphans.push(file);
                }
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots without a transcript: {orphans:?}"
    );
    assert!(
        TRANSCRIPTS.len() >= 40,
        "only {} transcripts",
        TRANSCRIPTS.len()
    );
}
