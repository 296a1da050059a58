//! Generates one `#[test]` per transcript file, so each transcript is its
//! own test (run in parallel, reported and filtered by name).

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = manifest.join("transcripts");
    println!("cargo:rerun-if-changed=transcripts");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("transcript names must be UTF-8")?
                .to_owned();
            if !stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!("transcript name {stem:?}: use a-z, 0-9 and -").into());
            }
            names.push(stem);
        }
    }
    names.sort();
    let mut code = String::new();
    for name in &names {
        let ident = format!("t{}", name.replace('-', "_"));
        writeln!(code, "#[test]\nfn {ident}() {{\n    run({name:?});\n}}\n")?;
    }
    writeln!(code, "const TRANSCRIPTS: &[&str] = &{names:?};")?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("transcript_tests.rs");
    std::fs::write(out, code)?;
    Ok(())
}
