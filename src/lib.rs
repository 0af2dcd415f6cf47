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
//! - [`executor`]: one execution end to end, with the concurrency cap and queue.
//! - [`isolation`]: the locked-down worker processes programs run in (`--isolation
//!   process`).
//! - [`server`]: the MCP server (stdio and HTTP) and its `execute_code` tool.
//!
//! ```
//! # tokio_test_block_on(async {
//! use codemode_mcp::executor::{Executor, ExecutorSettings};
//!
//! let executor = Executor::new(ExecutorSettings::default()).unwrap();
//! let run = executor.execute("const xs: number[] = [1, 2, 3];\nreturn xs.map((x) => x * 2);", None).await;
//! assert_eq!(run.outcome.result.unwrap().json, "[2,4,6]");
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod catalog;
pub mod config;
pub mod executor;
pub mod isolation;
pub mod sandbox;
pub mod server;
pub mod stdio;
pub mod transpile;
pub mod typegen;
pub mod upstream;
