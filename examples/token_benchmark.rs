//! The token benchmark (see `scenarios`): five tasks over the reference MCP servers, each
//! done by tool calling and by code mode, counted with a real tokenizer.
//! `cargo run --release --example token_benchmark` (after `./scripts/test` or
//! `./scripts/bench` installed the servers).

mod scenarios;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(npm_bin) = scenarios::npm_bin() else {
        anyhow::bail!(
            "the reference servers are not installed: run ./scripts/bench (or set CODEMODE_TEST_NPM_BIN)"
        );
    };
    let lab = scenarios::Lab::start(&npm_bin).await?;
    let reports = lab.run_all().await;
    lab.stop().await;
    scenarios::print(&reports?);
    Ok(())
}
