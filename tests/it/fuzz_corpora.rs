//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the entry points
//! the cargo-fuzz targets call (`codemode_mcp::fuzzing`), so every test run checks that no
//! input the fuzzers kept makes them panic. Fuzzing itself: see README.md.

use std::path::PathBuf;

use codemode_mcp::fuzzing;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{target}: {} panics", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: the corpus is empty");
}

#[test]
fn worker_message() {
    replay("worker_message", fuzzing::worker_message);
}

#[test]
fn call_arguments() {
    replay("call_arguments", fuzzing::call_arguments);
}

#[test]
fn tool_result() {
    replay("tool_result", fuzzing::tool_result);
}

#[test]
fn typegen() {
    replay("typegen", fuzzing::typegen);
}

#[test]
fn config() {
    replay("config", fuzzing::config);
}

#[test]
fn fetch_request() {
    replay("fetch_request", fuzzing::fetch_request);
}

#[test]
fn preflight() {
    replay("preflight", fuzzing::preflight);
}
