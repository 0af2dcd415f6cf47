//! `codemode-mcp run` and the command line, through the real binary.

use crate::common;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use common::BIN;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("CODEMODE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads stdin (a bad flag) closes it: not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_prints_result_and_logs_and_exits_zero() {
    let dir = common::scratch_dir("cli");
    let file = dir.join("job.ts");
    std::fs::write(
        &file,
        "const n: number = 21;\nconsole.log('doubling');\nreturn { answer: n * 2 };\n",
    )
    .unwrap();
    let out = run(&["run", file.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"answer\":42}\n\nlogs:\n[log] doubling\n"
    );
}

#[test]
fn run_reads_stdin_and_reports_errors_with_position_and_exit_one() {
    let out = run(
        &["run", "-"],
        "const a = 1;\nconst b: string = a.nope.deeper;\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("runtime error at 2:"), "{stderr}");
    assert!(stderr.contains("TypeError"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn run_json_prints_structured_output() {
    let out = run(&["run", "--json", "-"], "return [1, 2];");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["result"], serde_json::json!([1, 2]));
    assert!(value["durationMs"].is_u64());
}

#[test]
fn run_applies_limits_from_flags_and_from_the_config_file() {
    let out = run(&["run", "--timeout-ms", "100", "-"], "while (true) {}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("time limit of 100 ms"),
        "{}",
        text(&out.stderr)
    );

    let dir = common::scratch_dir("cli");
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"mcpServers": {}, "codemode": {"limits": {"timeoutMs": 150, "heapMiB": 8}}}"#,
    )
    .unwrap();
    let out = run(
        &["run", "--config", config.to_str().unwrap(), "-"],
        "while (true) {}",
    );
    assert!(
        text(&out.stderr).contains("time limit of 150 ms"),
        "{}",
        text(&out.stderr)
    );
    // The heap cap from the file, with a wall clock from the command line long enough that
    // only the heap cap can end the run, however slow the machine.
    let out = run(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--timeout-ms",
            "60000",
            "-",
        ],
        "const a = []; while (true) a.push(new Array(1000).fill(0));",
    );
    assert!(
        text(&out.stderr).contains("heap cap of 8 MiB"),
        "{}",
        text(&out.stderr)
    );
    // A flag wins over the file.
    let out = run(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--timeout-ms",
            "120",
            "-",
        ],
        "while (true) {}",
    );
    assert!(
        text(&out.stderr).contains("time limit of 120 ms"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_config_and_bad_flags_are_named() {
    let dir = common::scratch_dir("cli");
    let config = dir.join("bad.json");
    std::fs::write(&config, r#"{"codemode": {"limits": {"timeout": 5}}}"#).unwrap();
    let out = run(
        &["run", "--config", config.to_str().unwrap(), "-"],
        "return 1",
    );
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("codemode.limits"), "{stderr}");
    assert!(stderr.contains("unknown field `timeout`"), "{stderr}");

    let out = run(&["run", "--heap-mib", "1", "-"], "return 1");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("heapMiB: 1 is out of range: allowed 4 to 16384"),
        "{stderr}"
    );
}

#[test]
fn help_explains_every_limit() {
    let out = run(&["run", "--help"], "");
    let help = text(&out.stdout);
    for flag in [
        "--timeout-ms",
        "--heap-mib",
        "--stack-kib",
        "--output-kib",
        "--result-kib",
        "--concurrency",
        "--queue",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    assert!(help.contains("Default 30000"), "{help}");
}

#[test]
fn programs_wait_on_tools_alike_with_and_without_spinning() {
    // A timer, then a call answered by an upstream: in a worker process and in-process,
    // spinning or sleeping at once while it waits, the program gets the same answer.
    let dir = common::scratch_dir("cli-spin");
    let config = common::write_config(
        &dir,
        &serde_json::json!({ "mcpServers": { "toy": common::toy() } }),
    );
    let program = "await new Promise((r) => setTimeout(r, 5));\nreturn (await tools.toy.add({ a: 2, b: 3 })).sum * 10;";
    for isolation in ["process", "none"] {
        for spin in ["0", "200", "10000"] {
            let out = run(
                &[
                    "run",
                    "--config",
                    &config,
                    "--isolation",
                    isolation,
                    "--spin-us",
                    spin,
                    "-",
                ],
                program,
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "--isolation {isolation} --spin-us {spin}: {}",
                text(&out.stderr)
            );
            assert!(text(&out.stdout).contains("50"), "{}", text(&out.stdout));
        }
    }
    let out = run(&["run", "--spin-us", "20000", "-"], "return 1");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("spinMicros: 20000 is out of range: allowed 0 to 10000"),
        "{stderr}"
    );
}

/// The engine is chosen by `--engine` or `codemode.engine`; one the binary lacks is refused
/// with how to build it; the worker-reuse cap of the deno engine is enforced.
#[test]
fn engines_are_chosen_by_flag_or_config_and_missing_ones_are_named() {
    let (built, missing) = if cfg!(feature = "quickjs") {
        ("quickjs", "deno")
    } else {
        ("deno", "quickjs")
    };
    let help = text(
        &Command::new(BIN)
            .args(["serve", "--help"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(help.contains(&format!("- {built}")), "{help}");
    assert!(!help.contains(&format!("- {missing}:")), "{help}");

    let probe = "return typeof Deno;";
    for isolation in ["none", "process"] {
        let out = run(
            &["run", "--engine", built, "--isolation", isolation, "-"],
            probe,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "\"undefined\"");
    }

    let dir = common::scratch_dir("cli-engine");
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(r#"{{"codemode": {{"engine": "{built}"}}}}"#),
    )
    .unwrap();
    let out = run(
        &["run", "--config", config.to_str().unwrap(), "-"],
        "return 1;",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    std::fs::write(
        &config,
        format!(r#"{{"codemode": {{"engine": "{missing}"}}}}"#),
    )
    .unwrap();
    let out = run(
        &["run", "--config", config.to_str().unwrap(), "-"],
        "return 1;",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("codemode.engine"), "{stderr}");
    assert!(stderr.contains("this binary was built without"), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");

    let out = run(&["run", "--engine", missing, "-"], "return 1;");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid value"),
        "{}",
        text(&out.stderr)
    );

    if built == "deno" {
        let out = run(&["run", "--worker-reuse", "61", "-"], "return 1;");
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--worker-reuse") && stderr.contains("at most 60"),
            "{stderr}"
        );
        let out = run(&["run", "--worker-reuse", "60", "-"], "return 1;");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

#[test]
fn errors_are_words_without_a_backtrace_whatever_rust_backtrace_says() {
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/config.json"])
        .env("RUST_BACKTRACE", "1")
        .env("CODEMODE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Error: cannot read config file /nonexistent/config.json"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

#[test]
fn types_takes_the_file_and_one_off_commands_log_no_info_unless_asked() {
    let dir = common::scratch_dir("cli-quiet");
    let config = common::write_config(
        &dir,
        &serde_json::json!({ "mcpServers": { "toy": common::toy() } }),
    );
    let quiet = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_remove("CODEMODE_LOG")
            .output()
            .unwrap()
    };
    let types = quiet(&["types", &config]);
    assert!(types.status.success(), "{}", text(&types.stderr));
    assert!(
        text(&types.stdout).contains("function add("),
        "{}",
        text(&types.stdout)
    );
    assert!(
        !text(&types.stderr).contains(" INFO "),
        "{}",
        text(&types.stderr)
    );
    let checked = quiet(&["check-config", &config]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(
        !text(&checked.stderr).contains(" INFO "),
        "{}",
        text(&checked.stderr)
    );
    let verbose = quiet(&["check-config", "-v", &config]);
    assert!(
        text(&verbose.stderr).contains(" INFO "),
        "{}",
        text(&verbose.stderr)
    );
    // Each command's help lists its own flags, not the server's.
    for command in ["types", "check-config", "audit"] {
        let help = text(&quiet(&[command, "--help"]).stdout);
        assert!(
            !help.contains("--heap-mib") && !help.contains("--http"),
            "{command}: {help}"
        );
    }
}

/// The binary users install (the release profile) keeps no debug sections; the `profiling`
/// profile is the one with line tables. Symbols stay, so a panic's backtrace names functions.
#[test]
fn the_release_binary_has_no_debug_sections() {
    use object::{Object, ObjectSection};
    let bin = std::path::Path::new(BIN);
    if bin.parent().and_then(|dir| dir.file_name()) != Some("release".as_ref()) {
        eprintln!("skipped: {BIN} is not a release build");
        return;
    }
    let bytes = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*bytes).unwrap();
    let debug: Vec<String> = file
        .sections()
        .filter_map(|section| section.name().ok().map(str::to_owned))
        .filter(|name| name.starts_with(".debug_"))
        .collect();
    assert!(debug.is_empty(), "debug sections in {BIN}: {debug:?}");
    assert!(file.symbols().next().is_some(), "{BIN} lost its symbols");
}
