//! `--isolation process` (the default): programs run in pre-started worker processes that
//! locked themselves down. These tests prove the lockdown from outside, kill workers
//! mid-run, and count what 1,000 runs leave behind.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, children, start};
use serde_json::json;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn sandbox_check_proves_the_lockdown() {
    let out = std::process::Command::new(BIN)
        .arg("sandbox-check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "rlimits:    enforced",
        "namespaces: enforced",
        "landlock:   enforced",
        "seccomp:    enforced",
        "try to open a file: refused: the worker was killed by seccomp (SIGSYS)",
        "try to create a socket: refused: the worker was killed by seccomp (SIGSYS)",
        "try to start a program: refused: the worker was killed by seccomp (SIGSYS)",
        "try to read the host's environment: refused: the worker's environment is empty",
        "lockdown: complete",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn a_worker_killed_mid_run_fails_only_that_run() {
    let server = start(&["--concurrency", "1"]).await;
    server.assert_alive().await;
    for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGSEGV, "SIGSEGV")] {
        let run = server.execute("while (true) {}");
        let killer = async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            // The worker running the endless loop is the child burning CPU.
            let (busy, _, _) = children(server.pid)
                .into_iter()
                .max_by_key(|(_, _, ticks)| *ticks)
                .expect("a worker process");
            // SAFETY: kill(2) on a child of the server under test.
            assert_eq!(unsafe { libc::kill(busy, signal) }, 0);
        };
        let (ran, ()) = tokio::join!(run, killer);
        assert_eq!(ran.error_kind(), "crashed", "{ran:?}");
        assert!(ran.error_message().contains(name), "{ran:?}");
        assert!(
            ran.error_message().contains("run the program again")
                || ran.error_message().contains("Run the program again")
        );
        server.assert_alive().await;
    }
}

#[tokio::test]
async fn a_native_builtin_past_the_deadline_is_killed_and_frees_its_slot() {
    let server = start(&["--concurrency", "1", "--queue", "0"]).await;
    let started = Instant::now();
    let ran = server
        .execute_with(json!({"code": "return new Array(1e8).join('x').length", "timeoutMs": 300}))
        .await;
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");
    assert!(
        ran.error_message().contains("worker process was killed"),
        "{ran:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The slot is free at once: the next run is not `busy`.
    let next = server.execute("return 'next'").await;
    assert_eq!(next.result(), &json!("next"), "{next:?}");
}

#[tokio::test]
async fn a_thousand_runs_leave_no_zombies_and_no_open_files() {
    let server = start(&[]).await;
    server.assert_alive().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_before = open_fds(server.pid);
    let started = Instant::now();
    for i in 0..1000 {
        let ran = server.execute(&format!("return {i}")).await;
        assert_eq!(ran.result(), &json!(i), "{ran:?}");
    }
    eprintln!("1000 runs in {:?}", started.elapsed());
    // Retired workers are reaped in the background, within about a second.
    let settled = Instant::now();
    loop {
        let kids = children(server.pid);
        let zombies = kids.iter().filter(|(_, state, _)| *state == 'Z').count();
        let fds = open_fds(server.pid);
        if zombies == 0 && fds <= fds_before {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "{zombies} zombies, {fds} open fds (before: {fds_before}), children {kids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_reused_worker_still_gives_each_program_a_fresh_isolate() {
    let server = start(&["--worker-reuse", "5", "--concurrency", "1"]).await;
    for _ in 0..6 {
        let ran = server
            .execute(
                "const seen = globalThis.marker; globalThis.marker = 1; return seen ?? 'fresh';",
            )
            .await;
        assert_eq!(ran.result(), &json!("fresh"), "{ran:?}");
    }
}

#[tokio::test]
async fn isolation_none_runs_programs_in_process() {
    let server = start(&["--isolation", "none"]).await;
    assert!(children(server.pid).is_empty(), "no worker processes");
    server.assert_alive().await;
    let ran = server
        .execute_with(json!({"code": "while (true) {}", "timeoutMs": 200}))
        .await;
    assert_eq!(ran.error_kind(), "timeout");
    server.assert_alive().await;
}
