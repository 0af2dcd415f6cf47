//! The examples run, and say what README says they say; the example configs load.

use std::{path::PathBuf, process::Command};

use codemode_mcp::config::Config;

/// `target/<profile>/examples/NAME`, built by `cargo test` beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

fn run(name: &str) -> String {
    let out = Command::new(example(name))
        .env("CODEMODE_LOG", "warn")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run example {name}: {e}. `cargo test` builds the examples unless targets are \
                 filtered: run all tests, or `cargo build --release --examples` first"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn embed_calls_a_rust_tool_from_a_program() {
    let out = run("embed");
    assert!(out.contains("declare namespace tools.weather"), "{out}");
    assert!(out.contains("function forecast("), "{out}");
    assert!(
        !out.contains("format: double"),
        "Rust number formats stay out:\n{out}"
    );
    assert!(
        out.contains(r#"result: [{"city":"Oslo","warmest":"#),
        "{out}"
    );
    assert!(out.contains("tool calls: 3"), "{out}");
    assert!(
        out.contains("invalid arguments: args.days: 9 is greater than the maximum of 7"),
        "{out}"
    );
    assert!(
        out.contains("schema path /properties/days/maximum"),
        "{out}"
    );
}

#[test]
fn agent_loop_shows_code_mode_keeping_results_out_of_context() {
    let out = run("agent_loop");
    let totals: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split(", total ").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or(rest))
        .collect();
    assert_eq!(totals.len(), 2, "{out}");
    assert_eq!(
        totals[0], totals[1],
        "both ways reach the same answer:\n{out}"
    );
    let share: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("code mode used "))
        .and_then(|rest| rest.split('%').next())
        .and_then(|n| n.parse().ok())
        .expect("the share line");
    assert!(
        share < 20.0,
        "code mode should use far less context:\n{out}"
    );
    assert!(out.contains("13 tool calls inside one program"), "{out}");
}

#[test]
fn example_configs_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let servers = Config::load(&dir.join("servers.json")).expect("servers.json loads");
    let names: Vec<&str> = servers.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["filesystem", "memory", "time"]);
    let desktop =
        Config::load(&dir.join("claude_desktop.json")).expect("claude_desktop.json loads");
    assert_eq!(desktop.upstreams.len(), 1);
    assert_eq!(desktop.upstreams[0].name, "codemode");
}

#[test]
fn the_token_benchmark_agrees_and_code_mode_costs_a_tenth() {
    // Token counts are deterministic (a real tokenizer over real server answers); both ways
    // must reach the same answer, which the example checks before it prints.
    let out = run("token_benchmark");
    let suite = out
        .lines()
        .find(|l| l.starts_with("suite"))
        .unwrap_or_else(|| panic!("no suite line:\n{out}"));
    let percent: f64 = suite
        .split_whitespace()
        .find_map(|w| w.strip_suffix('%').and_then(|p| p.parse().ok()))
        .unwrap();
    assert!(
        percent <= 10.0,
        "code mode uses {percent}% of the tokens:\n{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" calls)")).count(),
        5,
        "{out}"
    );
    // Each task's answer, as the model read it, is within the output budget.
    for line in out.lines().filter(|l| l.contains(" calls)")) {
        let chars: usize = line
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no answer size: {line}"));
        assert!(chars > 0 && chars <= 24_000, "{line}");
    }
}

#[test]
fn tool_use_wires_execute_code_into_a_model_loop() {
    let out = run("tool_use");
    assert!(out.contains("tool definition: execute_code, "), "{out}");
    assert!(
        out.contains(r#""tool_use_id":"toolu_01""#) && out.contains(r#""is_error":false"#),
        "{out}"
    );
    assert!(out.contains(r#"value: ["B-2"]"#), "{out}");
}

#[test]
fn embed_workers_runs_programs_in_worker_processes_of_its_own_binary() {
    let out = run("embed_workers");
    assert!(out.contains("workers locked down: "), "{out}");
    assert!(
        out.contains(r#"result: {"n":42,"process":"undefined"}"#),
        "{out}"
    );
}
