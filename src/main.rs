//! The `codemode-mcp` command: `serve` (the MCP server on stdio; the default) and `run`
//! (one program, locally, with the same sandbox and limits). This file only dispatches:
//! the flags are in `cli/args.rs`, each command in `cli/commands.rs`.

mod cli;

use anyhow::Result;
use clap::Parser;
use codemode_mcp::isolation::WORKER_COMMAND;
use tracing_subscriber::EnvFilter;

use cli::{
    args::{AuditCommand, Cli, Command},
    commands::{audit_verify, check_config, run, sandbox_check, serve, types, usage},
};

fn main() {
    if let Err(err) = dispatch() {
        // The error and its causes, never a backtrace (RUST_BACKTRACE is for panics): what
        // went wrong is in the words, not in our stack.
        let said = err.to_string();
        eprintln!("Error: {said}");
        // A cause the message already quotes is not said twice.
        for cause in err.chain().skip(1).map(|c| c.to_string()) {
            if !said.contains(&cause) {
                eprintln!("  caused by: {cause}");
            }
        }
        std::process::exit(1);
    }
}

fn dispatch() -> Result<()> {
    codemode_mcp::sandbox::configure_process_environment();
    // A worker process locks itself down before anything else runs (no thread may exist).
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(WORKER_COMMAND) {
        let spec = args.next().unwrap_or_default();
        std::process::exit(codemode_mcp::isolation::worker_main(&spec));
    }
    let mut cli = Cli::parse();
    if let Some(Command::Types(args)) = &mut cli.command
        && let Some(file) = args.file.take()
    {
        args.config = Some(file);
    }
    // A server logs what it does; a one-off command prints its answer, and logs only
    // warnings unless asked.
    let quiet = match &cli.command {
        None | Some(Command::Serve(_)) | Some(Command::Audit(_)) => false,
        Some(Command::Run(args)) => !args.verbose,
        Some(Command::Types(args)) => !args.verbose,
        Some(Command::SandboxCheck(args)) => !args.verbose,
        Some(Command::CheckConfig { verbose, .. }) => !verbose,
        Some(Command::Token { .. }) | Some(Command::Usage(_)) => true,
    };
    let default_filter = if quiet { "warn" } else { "info,rmcp=warn" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("CODEMODE_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        Some(Command::Run(args)) => {
            let code = runtime.block_on(run(args))?;
            std::process::exit(code);
        }
        Some(Command::Types(args)) => runtime.block_on(types(args)),
        Some(Command::Audit(AuditCommand::Verify { files, expect_head })) => {
            std::process::exit(audit_verify(&files, expect_head.as_deref()))
        }
        Some(Command::SandboxCheck(args)) => {
            let code = runtime.block_on(sandbox_check(args))?;
            std::process::exit(code);
        }
        Some(Command::CheckConfig { file, .. }) => {
            let code = runtime.block_on(check_config(file))?;
            std::process::exit(code);
        }
        Some(Command::Usage(args)) => usage(&args),
        Some(Command::Token { name, scopes }) => {
            let (token, line) = codemode_mcp::server::http::new_token(&name, &scopes)
                .map_err(anyhow::Error::msg)?;
            println!("token: {token}");
            println!("line for the token file: {line}");
            Ok(())
        }
    }
}
