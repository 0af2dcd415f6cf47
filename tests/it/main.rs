//! The integration tests, one binary: each module drives the real `codemode-mcp` binary
//! (or the library) through the interfaces users have. One binary links the crate once,
//! which is most of what 24 separate ones cost CI.

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod audit;
mod cli;
mod console;
mod egress;
mod examples;
mod front_door;
mod fuzz_corpora;
mod hostile;
mod http_server;
mod isolation;
mod library;
mod modern_clients;
mod node_clients;
mod oauth;
mod oversight;
mod policy;
mod principals;
mod python_interop;
mod quotas;
mod reference_servers;
mod sandbox_engines;
mod session_state;
mod skills;
mod stdio_server;
mod tasks;
mod tenants;
mod typecheck;
mod upstreams;
