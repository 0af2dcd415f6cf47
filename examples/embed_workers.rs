//! Programs in locked-down worker processes, from a binary of your own: a worker is this
//! same binary started with `__worker` as its first argument, so `main` hands that case
//! to `isolation::worker_main` before anything else runs (no thread may exist before the
//! worker locks itself down), and otherwise builds a host with `Isolation::Process`.
//! `cargo run --example embed_workers`

use codemode_mcp::{
    BuiltinTool, CodeMode,
    isolation::{Isolation, WORKER_COMMAND, worker_main},
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Double {
    n: f64,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(WORKER_COMMAND) {
        let spec = args.next().unwrap_or_default();
        std::process::exit(worker_main(&spec));
    }
    tokio::runtime::Runtime::new()?.block_on(async {
        let codemode = CodeMode::builder()
            .isolation(Isolation::Process)
            .tool(
                "math",
                BuiltinTool::new("double", "Doubles n", |d: Double| async move {
                    Ok(d.n * 2.0)
                }),
            )
            .build()
            .await?;
        if let Some(lockdown) = codemode.lockdown() {
            println!("workers locked down: {lockdown}");
        }
        let run = codemode
            .execute("const n = await tools.math.double({ n: 21 });\nreturn { n, process: typeof process };")
            .await;
        match &run.outcome.result {
            Ok(value) => println!("result: {}", value.json),
            Err(error) => println!("error: {error}"),
        }
        anyhow::Ok(())
    })
}
