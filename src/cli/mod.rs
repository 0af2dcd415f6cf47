//! The `codemode-mcp` command: its flags ([`args`]) and its commands ([`commands`]).

pub(crate) mod args;
pub(crate) mod commands;
