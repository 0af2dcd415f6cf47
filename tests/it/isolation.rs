//! `--isolation process` (the default): programs run in pre-started worker processes that
//! locked themselves down. These tests prove the lockdown from outside, kill workers
//! mid-run, and count what 1,000 runs leave behind.

use crate::common;

use std::time::{Duration, Instant};

use common::{BIN, children, start};
use serde_json::json;

/// The worker running an endless loop: the child of `server` that has used more than a
/// second of CPU time. A worker starting up or waiting in the pool uses a few milliseconds
/// of it however slow or loaded the machine is (CPU time, not wall time), so no other
/// child can be taken for it. Polls for at most 30 s.
async fn busy_worker(server: u32) -> i32 {
    // SAFETY: sysconf(3) reads a constant of the system.
    let ticks_per_second =
        u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    common::poll_until("a worker that used a second of CPU", || {
        let found = children(server)
            .into_iter()
            .find(|(_, state, ticks)| *state != 'Z' && *ticks > ticks_per_second)
            .map(|(pid, _, _)| pid);
        async move {
            if found.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            found
        }
    })
    .await
}

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
    // The program calls a tool first, so it has surely started in its worker; the worker
    // is found by the CPU time its endless loop uses (see `busy_worker`).
    let dir = common::scratch_dir("isolation-kill");
    let config = common::write_config(
        &dir,
        // A wall clock no loaded machine reaches before the loop has used its second of
        // CPU (a call's timeoutMs can only lower the server's).
        &json!({ "codemode": { "state": { "enabled": true }, "limits": { "timeoutMs": 120_000 } } }),
    );
    let server = start(&["--concurrency", "1", "--config", &config]).await;
    server.assert_alive().await;
    for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGSEGV, "SIGSEGV")] {
        let run = server
            .execute("await tools.state.set({ key: 'started', value: true });\nwhile (true) {}");
        let killer = async {
            // The worker running the endless loop is the child that keeps burning CPU.
            let busy = busy_worker(server.pid).await;
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
    // One native call that checks no interrupt: it visits 1e8 holes, seconds of work on
    // any machine, while joining empty strings allocates nothing (the heap cap cannot fire
    // first).
    let ran = server
        .execute_with(json!({"code": "return new Array(1e8).join('').length", "timeoutMs": 300}))
        .await;
    assert_eq!(ran.error_kind(), "timeout", "{ran:?}");
    assert!(
        ran.error_message().contains("worker process was killed"),
        "{ran:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
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
    // The count to compare against is taken once the pool has settled: no zombie, and the
    // same workers and open files in two samples 200 ms apart.
    let pid = server.pid;
    let fds_before = common::poll_until("the worker pool to settle", move || async move {
        let kids = children(pid);
        let fds = open_fds(pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = children(pid);
        let pids = |k: &[(i32, char, u64)]| k.iter().map(|(pid, _, _)| *pid).collect::<Vec<_>>();
        let settled = kids.iter().all(|(_, state, _)| *state != 'Z')
            && pids(&kids) == pids(&again)
            && open_fds(pid) == fds;
        settled.then_some(fds)
    })
    .await;
    let started = Instant::now();
    for i in 0..1000 {
        let ran = server.execute(&format!("return {i}")).await;
        assert_eq!(ran.result(), &json!(i), "{ran:?}");
    }
    eprintln!("1000 runs in {:?}", started.elapsed());
    // Retired workers are reaped in the background, within about a second on a quiet
    // machine; a loaded one gets up to 30 s.
    let settled = Instant::now();
    loop {
        let kids = children(server.pid);
        let zombies = kids.iter().filter(|(_, state, _)| *state == 'Z').count();
        let fds = open_fds(server.pid);
        if zombies == 0 && fds <= fds_before {
            break;
        }
        assert!(
            settled.elapsed() < common::POLL_CEILING,
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
