//! What one execution may use (`codemode.limits`) and how upstreams are called
//! (`codemode.upstream`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::sandbox::Limits;

/// The `codemode.upstream` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamSettings {
    /// Time one upstream has to start and list its tools, in milliseconds.
    #[serde(default = "UpstreamSettings::default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time one tool call may take, in milliseconds (the execution's own wall clock also
    /// applies).
    #[serde(default = "UpstreamSettings::default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Calls in flight to one upstream at once; more wait their turn.
    #[serde(default = "UpstreamSettings::default_max_concurrent_calls")]
    pub max_concurrent_calls: u32,
    /// The largest message one upstream may send (a tool's result), in KiB; a longer one
    /// is dropped while it is read, and the call it answers fails saying so.
    #[serde(
        default = "UpstreamSettings::default_max_result_kib",
        rename = "maxResultKiB"
    )]
    pub max_result_kib: u64,
}

impl UpstreamSettings {
    fn default_connect_timeout_ms() -> u64 {
        30_000
    }
    fn default_call_timeout_ms() -> u64 {
        60_000
    }
    fn default_max_concurrent_calls() -> u32 {
        16
    }
    fn default_max_result_kib() -> u64 {
        8 << 10
    }

    /// [`Self::max_result_kib`] in bytes.
    pub fn max_result_bytes(&self) -> usize {
        usize::try_from(self.max_result_kib << 10).unwrap_or(usize::MAX)
    }
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: Self::default_connect_timeout_ms(),
            call_timeout_ms: Self::default_call_timeout_ms(),
            max_concurrent_calls: Self::default_max_concurrent_calls(),
            max_result_kib: Self::default_max_result_kib(),
        }
    }
}

/// Limits as written in the config file or on the command line; unset means the default.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitSettings {
    /// Wall clock per execution, in milliseconds (also the most a request may ask for).
    pub timeout_ms: Option<u64>,
    /// Heap cap per isolate, in MiB.
    #[serde(rename = "heapMiB")]
    pub heap_mib: Option<u64>,
    /// JS stack cap, in KiB.
    #[serde(rename = "stackKiB")]
    pub stack_kib: Option<u64>,
    /// Captured console output per execution, in KiB.
    #[serde(rename = "outputKiB")]
    pub output_kib: Option<u64>,
    /// JSON text of the returned value, in KiB.
    #[serde(rename = "resultKiB")]
    pub result_kib: Option<u64>,
    /// Executions that run at once.
    pub concurrency: Option<u64>,
    /// Executions that may wait for a slot before new ones are refused as busy.
    pub queue: Option<u64>,
    /// Tool calls one execution may make.
    pub tool_calls: Option<u64>,
    /// Calls of any one tool one execution may make.
    pub calls_per_tool: Option<u64>,
    /// Bytes of tool results one execution may receive, in KiB.
    #[serde(rename = "receivedKiB")]
    pub received_kib: Option<u64>,
    /// `fetch` requests one execution may make.
    pub fetches: Option<u64>,
    /// Isolates made ahead of their programs (each used once), at most one per execution
    /// slot; 0 makes every isolate when its program arrives. Default: one per slot.
    pub warm_isolates: Option<u64>,
    /// Microseconds a program waiting on the host (a tool call) keeps its thread polling
    /// before the thread sleeps; 0 sleeps at once (saves CPU, costs each reply a wake).
    /// Default 200.
    pub spin_micros: Option<u64>,
    /// Characters of one execution's answer a model reads (result, logs, error, calls), in
    /// the text and the structured content each; past it, each part keeps its head and
    /// tail. Default 24,000 (about 6,000 tokens).
    pub output_chars: Option<u64>,
    /// How long the whole output of an answer the budget cut stays readable at
    /// `codemode://executions/ID/output`, in milliseconds. Default 600,000 (10 minutes).
    pub output_keep_ms: Option<u64>,
    /// Bytes of whole outputs kept at once, in MiB; past it, the oldest go first.
    /// Default 64.
    #[serde(rename = "outputKeepMiB")]
    pub output_keep_mib: Option<u64>,
}

/// Bounds of each limit: (key, least, most).
const BOUNDS: &[(&str, u64, u64)] = &[
    ("timeoutMs", 10, 3_600_000),
    ("heapMiB", 4, 16_384),
    ("stackKiB", 64, 8_192),
    ("outputKiB", 1, 1_048_576),
    ("resultKiB", 1, 1_048_576),
    ("concurrency", 1, 4_096),
    ("queue", 0, 1_000_000),
    ("toolCalls", 1, 1_000_000),
    ("callsPerTool", 1, 1_000_000),
    ("receivedKiB", 1, 16_777_216),
    ("fetches", 1, 1_000_000),
    ("warmIsolates", 0, 4_096),
    ("spinMicros", 0, 10_000),
    ("outputChars", 2_000, 10_000_000),
    ("outputKeepMs", 0, 86_400_000),
    ("outputKeepMiB", 0, 65_536),
];

/// The least and most `codemode.limits.<key>` may be.
pub(super) fn bounds(key: &str) -> Option<(u64, u64)> {
    BOUNDS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, least, most)| (*least, *most))
}

impl LimitSettings {
    /// Values set here win over values set in `base`.
    pub fn over(self, base: LimitSettings) -> LimitSettings {
        LimitSettings {
            timeout_ms: self.timeout_ms.or(base.timeout_ms),
            heap_mib: self.heap_mib.or(base.heap_mib),
            stack_kib: self.stack_kib.or(base.stack_kib),
            output_kib: self.output_kib.or(base.output_kib),
            result_kib: self.result_kib.or(base.result_kib),
            concurrency: self.concurrency.or(base.concurrency),
            queue: self.queue.or(base.queue),
            tool_calls: self.tool_calls.or(base.tool_calls),
            calls_per_tool: self.calls_per_tool.or(base.calls_per_tool),
            received_kib: self.received_kib.or(base.received_kib),
            fetches: self.fetches.or(base.fetches),
            warm_isolates: self.warm_isolates.or(base.warm_isolates),
            spin_micros: self.spin_micros.or(base.spin_micros),
            output_chars: self.output_chars.or(base.output_chars),
            output_keep_ms: self.output_keep_ms.or(base.output_keep_ms),
            output_keep_mib: self.output_keep_mib.or(base.output_keep_mib),
        }
    }

    fn entries(&self) -> [(&'static str, Option<u64>); 16] {
        [
            ("timeoutMs", self.timeout_ms),
            ("heapMiB", self.heap_mib),
            ("stackKiB", self.stack_kib),
            ("outputKiB", self.output_kib),
            ("resultKiB", self.result_kib),
            ("concurrency", self.concurrency),
            ("queue", self.queue),
            ("toolCalls", self.tool_calls),
            ("callsPerTool", self.calls_per_tool),
            ("receivedKiB", self.received_kib),
            ("fetches", self.fetches),
            ("warmIsolates", self.warm_isolates),
            ("spinMicros", self.spin_micros),
            ("outputChars", self.output_chars),
            ("outputKeepMs", self.output_keep_ms),
            ("outputKeepMiB", self.output_keep_mib),
        ]
    }

    /// Checks every set value against its bounds; `origin` names where it came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for ((key, value), (_, least, most)) in self.entries().into_iter().zip(BOUNDS) {
            if let Some(value) = value
                && !(*least..=*most).contains(&value)
            {
                return Err(ConfigError::Invalid {
                    origin: origin.to_string(),
                    path: format!("codemode.limits.{key}"),
                    message: format!("{value} is out of range: allowed {least} to {most}"),
                });
            }
        }
        Ok(())
    }

    /// The answer budget, in characters (see [`Self::output_chars`]).
    pub fn answer_chars(&self) -> usize {
        self.output_chars.map_or(24_000, to_usize)
    }

    /// How long whole outputs are kept, and how many bytes of them at once.
    pub fn output_keeping(&self) -> (Duration, usize) {
        (
            Duration::from_millis(self.output_keep_ms.unwrap_or(600_000)),
            self.output_keep_mib.map_or(64 << 20, |m| to_usize(m) << 20),
        )
    }

    /// The per-execution limits, defaults filled in.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let kib = |v: Option<u64>, default: usize| v.map_or(default, |k| to_usize(k) << 10);
        Limits {
            timeout: self.timeout_ms.map_or(d.timeout, Duration::from_millis),
            heap_bytes: self.heap_mib.map_or(d.heap_bytes, |m| to_usize(m) << 20),
            stack_bytes: kib(self.stack_kib, d.stack_bytes),
            output_bytes: kib(self.output_kib, d.output_bytes),
            result_bytes: kib(self.result_kib, d.result_bytes),
            tool_calls: self
                .tool_calls
                .map_or(d.tool_calls, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            calls_per_tool: self
                .calls_per_tool
                .map_or(d.calls_per_tool, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            received_bytes: kib(self.received_kib, d.received_bytes),
            fetches: self
                .fetches
                .map_or(d.fetches, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
