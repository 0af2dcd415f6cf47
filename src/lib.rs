//! codemode-mcp: an MCP server that gives LLM agents *code mode*.
//!
//! Instead of calling tools one at a time, the agent writes one TypeScript or JavaScript
//! program; it runs in a fresh, limited JS isolate and only its result goes back to the
//! model.
//!
//! The modules, in the order data flows through them:
//!
//! - [`config`]: the config file (`mcpServers` as Claude Desktop writes it, plus a
//!   `codemode` section) and the limits it sets.
//! - [`transpile`]: TypeScript -> JavaScript with positions preserved.
//! - [`sandbox`]: one fresh isolate per program behind an engine seam; limits; the JS glue
//!   that is everything a program can reach.
//! - [`upstream`], [`catalog`], [`typegen`]: the upstream MCP servers, the tools they
//!   offer as `tools.<server>.<tool>`, and their TypeScript declarations.
//! - [`typecheck`]: the opt-in check of a program against the declarations, by
//!   TypeScript's own compiler, before it runs.
//! - [`executor`]: one execution end to end, with the concurrency cap and queue.
//! - [`isolation`]: the locked-down worker processes programs run in (`--isolation
//!   process`).
//! - [`preflight`]: what a program names statically (tools, URLs, `eval`), checked
//!   against the policy before it runs.
//! - [`policy`]: which tools programs may call, which need the user's confirmation, and
//!   the data-flow guard.
//! - [`tenants`]: least privilege per principal: overlays that narrow the policy, egress
//!   and limits for the principals they name.
//! - [`egress`]: `fetch` for programs: the allow-list, the SSRF guard, the secret headers.
//! - [`state`]: session state, a key-value store per MCP session (opt-in).
//! - [`skills`]: saved skills, programs promoted to tools, kept as plain files (opt-in).
//! - [`audit`]: the hash-chained JSONL record of every execution.
//! - [`oversight`]: what operators see: Prometheus metrics, anomaly flags, the recent
//!   executions of the console, OpenTelemetry traces.
//! - [`embed`]: the library API ([`CodeMode`]) for programs that embed code mode; the
//!   server is built on it.
//! - [`server`]: the MCP server (stdio and HTTP) and its `execute_code` tool.
//!
//! Embedding it ([`CodeMode`]): a tool written in Rust, a program that calls it.
//!
//! ```
//! # tokio_test_block_on(async {
//! use codemode_mcp::{BuiltinTool, CodeMode};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Double {
//!     /// The number to double.
//!     n: f64,
//! }
//!
//! let codemode = CodeMode::builder()
//!     .tool("math", BuiltinTool::new("double", "Doubles a number", |d: Double| async move {
//!         Ok(d.n * 2.0)
//!     }))
//!     .build()
//!     .await
//!     .unwrap();
//! assert!(codemode.declarations().contains("function double("));
//! let run = codemode
//!     .execute("const xs: number[] = [1, 2, 3];\nreturn Promise.all(xs.map((n) => tools.math.double({ n })));")
//!     .await;
//! assert_eq!(run.outcome.result.unwrap().json, "[2,4,6]");
//! assert_eq!(run.calls.len(), 3);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub use catalog::BuiltinTool;
pub use embed::{CodeMode, CodeModeBuilder, EmbedError};

pub mod audit;
pub mod catalog;
pub mod config;
mod digest;
pub mod egress;
pub mod embed;
pub mod executor;
#[doc(hidden)]
pub mod fuzzing;
pub mod isolation;
pub mod oversight;
pub mod policy;
pub mod preflight;
pub mod record;
pub mod sandbox;
pub mod server;
pub mod skills;
pub mod state;
pub mod stdio;
pub mod tenants;
pub mod transpile;
pub mod typecheck;
pub mod typegen;
pub mod upstream;
