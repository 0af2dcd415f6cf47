//! What the operator sees: anomaly rules, telemetry and the audit log
//! (`codemode.anomalies`, `.telemetry`, `.audit`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The `codemode.anomalies` section: the thresholds of each anomaly flag, per session.
/// A `count` (or the rate's `minimum`) of 0 turns that flag off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnomalySettings {
    /// `rate`: at least `minimum` executions within `windowSecs`, more than `factor`
    /// times the session's own norm.
    #[serde(default)]
    pub rate: RateRule,
    /// `limit-hits`: `count` executions that hit a limit within `windowSecs`.
    #[serde(default = "AnomalySettings::default_limit_hits")]
    pub limit_hits: CountRule,
    /// `repeat`: the same program `count` times within `windowSecs`.
    #[serde(default = "AnomalySettings::default_repeats")]
    pub repeats: CountRule,
    /// `denied-burst`: `count` calls (or programs) the policy refused within `windowSecs`.
    #[serde(default = "AnomalySettings::default_denied")]
    pub denied: CountRule,
    /// `new-egress-host`: a fetch to a host no earlier execution fetched from.
    #[serde(default = "default_true")]
    pub new_egress_hosts: bool,
    /// `cpu-spike`: an execution that used `factor` times its principal's usual CPU.
    #[serde(default)]
    pub cpu: CpuRule,
}

/// The `cpu-spike` flag's rule: against the median CPU of the principal's last
/// executions (its own baseline, whatever others use).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuRule {
    /// How many times the principal's median is too much (default 10).
    #[serde(default = "CpuRule::default_factor")]
    pub factor: f64,
    /// Executions of the principal needed before its median is a baseline; 0 turns the
    /// flag off (default 20).
    #[serde(default = "CpuRule::default_samples")]
    pub samples: u32,
    /// Less CPU than this, in milliseconds, is never flagged (default 50).
    #[serde(default = "CpuRule::default_minimum_ms")]
    pub minimum_ms: u64,
}

impl CpuRule {
    fn default_factor() -> f64 {
        10.0
    }
    fn default_samples() -> u32 {
        20
    }
    fn default_minimum_ms() -> u64 {
        50
    }
}

impl Default for CpuRule {
    fn default() -> Self {
        Self {
            factor: Self::default_factor(),
            samples: Self::default_samples(),
            minimum_ms: Self::default_minimum_ms(),
        }
    }
}

fn default_true() -> bool {
    true
}

impl AnomalySettings {
    fn default_limit_hits() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 3,
        }
    }
    fn default_repeats() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 5,
        }
    }
    fn default_denied() -> CountRule {
        CountRule {
            window_secs: 60,
            count: 5,
        }
    }

    /// The longest window of any rule.
    pub fn longest_window(&self) -> Duration {
        Duration::from_secs(
            [
                self.rate.window_secs,
                self.limit_hits.window_secs,
                self.repeats.window_secs,
                self.denied.window_secs,
            ]
            .into_iter()
            .max()
            .unwrap_or(0),
        )
    }

    pub(super) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            path: format!("codemode.anomalies.{key}"),
            message,
        };
        for (key, secs) in [
            ("rate.windowSecs", self.rate.window_secs),
            ("limitHits.windowSecs", self.limit_hits.window_secs),
            ("repeats.windowSecs", self.repeats.window_secs),
            ("denied.windowSecs", self.denied.window_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid(
                    key,
                    format!("{secs} is out of range: allowed 1 to 86400 (seconds)"),
                ));
            }
        }
        if !(self.cpu.factor >= 1.0 && self.cpu.factor.is_finite()) {
            return Err(invalid(
                "cpu.factor",
                format!("{} is out of range: at least 1", self.cpu.factor),
            ));
        }
        if self.cpu.samples > 1_000 {
            return Err(invalid(
                "cpu.samples",
                format!("{} is out of range: allowed 0 to 1000", self.cpu.samples),
            ));
        }
        if !(self.rate.factor >= 1.0 && self.rate.factor.is_finite()) {
            return Err(invalid(
                "rate.factor",
                format!("{} is out of range: at least 1", self.rate.factor),
            ));
        }
        Ok(())
    }
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            rate: RateRule::default(),
            limit_hits: Self::default_limit_hits(),
            repeats: Self::default_repeats(),
            denied: Self::default_denied(),
            new_egress_hosts: true,
            cpu: CpuRule::default(),
        }
    }
}

/// A flag raised by `count` events within `windowSecs`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CountRule {
    /// The window, in seconds.
    pub window_secs: u64,
    /// Events within it that raise the flag; 0 turns it off.
    pub count: u32,
}

/// The `rate` flag's rule.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateRule {
    /// The window, in seconds (default 10).
    #[serde(default = "RateRule::default_window_secs")]
    pub window_secs: u64,
    /// How many times the session's norm per window is too many (default 5).
    #[serde(default = "RateRule::default_factor")]
    pub factor: f64,
    /// Fewer executions than this in the window are never flagged; 0 turns the flag off
    /// (default 30).
    #[serde(default = "RateRule::default_minimum")]
    pub minimum: u32,
}

impl RateRule {
    fn default_window_secs() -> u64 {
        10
    }
    fn default_factor() -> f64 {
        5.0
    }
    fn default_minimum() -> u32 {
        30
    }
}

impl Default for RateRule {
    fn default() -> Self {
        Self {
            window_secs: Self::default_window_secs(),
            factor: Self::default_factor(),
            minimum: Self::default_minimum(),
        }
    }
}

/// The `codemode.telemetry` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TelemetrySettings {
    /// Executions the operator console keeps in memory (default 500).
    #[serde(default = "TelemetrySettings::default_recent")]
    pub recent: usize,
    /// OTLP over HTTP, e.g. `http://localhost:4318` (`/v1/traces` is added); off when absent
    /// (the `OTEL_EXPORTER_OTLP_ENDPOINT` variable also turns it on).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `http/json`.
    #[serde(default)]
    pub otlp_protocol: Option<String>,
    /// Headers sent to the collector, `${VAR}` expanded (e.g. an API key).
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, String>,
    /// `service.name` of the spans (default `codemode-mcp`).
    #[serde(default)]
    pub service_name: Option<String>,
}

impl TelemetrySettings {
    fn default_recent() -> usize {
        500
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            recent: Self::default_recent(),
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_headers: BTreeMap::new(),
            service_name: None,
        }
    }
}

/// The `codemode.audit` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditSettings {
    /// The JSONL file; none means no audit log.
    pub path: Option<std::path::PathBuf>,
    /// Size past which the file is rotated to `FILE.1`, in bytes (default 64 MiB).
    #[serde(default = "AuditSettings::default_max_bytes")]
    pub max_bytes: u64,
}

impl AuditSettings {
    fn default_max_bytes() -> u64 {
        64 << 20
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: Self::default_max_bytes(),
        }
    }
}
