//! Interop: the official Python SDK client (`mcp` from PyPI) against the real binary.
//! The README's test command installs it into a venv and points CODEMODE_TEST_PYTHON there.

mod common;

use std::process::Command;

#[test]
fn official_python_sdk_client_drives_the_server() {
    let python = std::env::var("CODEMODE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CODEMODE_TEST_PYTHON is not set: it must name a Python with the `mcp` package. \
             Run the tests with ./scripts/test, which installs it"
        )
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(common::BIN)
        .output()
        .expect("run the Python interop client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: the server keeps serving"), "{stdout}");
}
