//! Prometheus metrics (OpenMetrics text, through the Prometheus project's own client
//! crate): what ran and how it ended, tool calls, policy decisions, limits hit, anomaly
//! flags, and at scrape time the health of the worker pool and the upstreams.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    audit::{AuditRecord, Flag},
    isolation::WorkerPool,
    record::Execution,
    sandbox::ErrorKind,
    upstream::{Status, Upstreams},
};

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    principal: String,
    transport: String,
    outcome: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrincipalLabels {
    principal: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    principal: String,
    quota: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    namespace: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlagLabels {
    flag: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    transport: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    executions: Family<ExecutionLabels, Counter>,
    execution_seconds: Histograms<OutcomeLabels>,
    in_flight: Gauge,
    running: AtomicI64,
    tool_calls: Family<CallLabels, Counter>,
    tool_call_seconds: Histograms<NamespaceLabels>,
    decisions: Family<DecisionLabels, Counter>,
    limits: Family<LimitLabels, Counter>,
    flags: Family<FlagLabels, Counter>,
    workers_ready: Gauge,
    workers_starting: Gauge,
    upstream_up: Family<UpstreamLabels, Gauge>,
    upstream_tools: Family<UpstreamLabels, Gauge>,
    cpu_seconds: Family<PrincipalLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    cost_tool_calls: Family<PrincipalLabels, Counter>,
    egress_bytes: Family<PrincipalLabels, Counter>,
    quota_refusals: Family<QuotaLabels, Counter>,
    /// The principals with a label of their own, at most [`PRINCIPAL_LABELS`].
    principals: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Principals that get a label of their own; the rest are counted as `other`, so that a
/// deployment with many tokens (or an issuer with many subjects) keeps `/metrics` bounded.
pub const PRINCIPAL_LABELS: usize = 100;

/// The `principal` label of an execution with no principal (unauthenticated HTTP, a
/// library's own run).
const NO_PRINCIPAL: &str = "-";

/// The label of the principals past [`PRINCIPAL_LABELS`].
const OTHER_PRINCIPALS: &str = "other";

fn execution_histogram() -> Histogram {
    // 0.1 ms to ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn call_histogram() -> Histogram {
    // 0.1 ms to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics with nothing counted yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("codemode");
        let executions = Family::<ExecutionLabels, Counter>::default();
        registry.register(
            "executions",
            "Executions by principal, transport, outcome (ok, error) and error kind",
            executions.clone(),
        );
        let execution_seconds: Histograms<OutcomeLabels> =
            Family::new_with_constructor(execution_histogram);
        registry.register(
            "execution_duration_seconds",
            "Wall-clock time of executions, queueing included",
            execution_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "executions_in_flight",
            "Executions running or waiting for a slot now",
            in_flight.clone(),
        );
        let tool_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls and fetches from programs by namespace (fetch for fetches) and outcome",
            tool_calls.clone(),
        );
        let tool_call_seconds: Histograms<NamespaceLabels> =
            Family::new_with_constructor(call_histogram);
        registry.register(
            "tool_call_duration_seconds",
            "Time from a program's call to its answer, by namespace",
            tool_call_seconds.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "What the policy and budgets decided about each call (allowed, confirmed by the user, refused: ...); refused before running: a program the pre-flight scan stopped",
            decisions.clone(),
        );
        let limits = Family::<LimitLabels, Counter>::default();
        registry.register(
            "limits_hit",
            "Executions that hit a limit: timeout, memory, budget, busy, quota, logs (cut), result (cut)",
            limits.clone(),
        );
        let flags = Family::<FlagLabels, Counter>::default();
        registry.register("anomalies", "Anomaly flags raised, by flag", flags.clone());
        let workers_ready = Gauge::default();
        registry.register(
            "workers_ready",
            "Locked-down worker processes waiting for a program (--isolation process)",
            workers_ready.clone(),
        );
        let workers_starting = Gauge::default();
        registry.register(
            "workers_starting",
            "Worker processes being started",
            workers_starting.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 while an upstream MCP server is connected, 0 while it is connecting or down",
            upstream_up.clone(),
        );
        let upstream_tools = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_tools",
            "Tools an upstream offers, as last listed",
            upstream_tools.clone(),
        );
        let cpu_seconds =
            Family::<PrincipalLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "execution_cpu_seconds",
            "CPU time (user + system) of the isolate threads or worker processes that ran executions, by principal",
            cpu_seconds.clone(),
        );
        let cost_tool_calls = Family::<PrincipalLabels, Counter>::default();
        registry.register(
            "principal_tool_calls",
            "Tool calls that went out to their tools, by principal",
            cost_tool_calls.clone(),
        );
        let egress_bytes = Family::<PrincipalLabels, Counter>::default();
        registry.register(
            "egress_bytes",
            "Bytes of fetch requests and responses, by principal",
            egress_bytes.clone(),
        );
        let quota_refusals = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "quota_refusals",
            "Executions, tool calls and fetches refused for a principal's quota, by principal and quota",
            quota_refusals.clone(),
        );
        Self {
            registry,
            executions,
            cpu_seconds,
            cost_tool_calls,
            egress_bytes,
            quota_refusals,
            execution_seconds,
            in_flight,
            running: AtomicI64::new(0),
            tool_calls,
            tool_call_seconds,
            decisions,
            limits,
            flags,
            workers_ready,
            workers_starting,
            upstream_up,
            upstream_tools,
            principals: Default::default(),
        }
    }

    /// The label `principal` is counted under: its own while there is room, else `other`.
    fn principal_label(&self, principal: Option<&str>) -> String {
        let Some(principal) = principal else {
            return NO_PRINCIPAL.to_string();
        };
        let mut labelled = self.principals.lock().unwrap_or_else(|e| e.into_inner());
        if labelled.contains(principal) || labelled.len() < PRINCIPAL_LABELS {
            labelled.insert(principal.to_string());
            principal.to_string()
        } else {
            OTHER_PRINCIPALS.to_string()
        }
    }

    /// An execution began (it is counted in flight until [`Self::ended`]).
    pub(crate) fn began(&self) {
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight.set(now);
    }

    /// An execution is no longer in flight.
    pub(crate) fn left(&self) {
        let now = self.running.fetch_sub(1, Ordering::Relaxed) - 1;
        self.in_flight.set(now.max(0));
    }

    /// Something was refused for `principal`'s quota (its key, e.g. `executionsPerMinute`).
    pub fn quota_refused(&self, principal: Option<&str>, quota: &'static str) {
        self.quota_refusals
            .get_or_create(&QuotaLabels {
                principal: self.principal_label(principal),
                quota,
            })
            .inc();
    }

    /// An execution ended; `record` is what was recorded of it.
    pub(crate) fn ended(&self, execution: &Execution, record: &AuditRecord) {
        if let Some(cost) = &record.cost {
            let principal = PrincipalLabels {
                principal: self.principal_label(record.origin.principal.as_deref()),
            };
            self.cpu_seconds
                .get_or_create(&principal)
                .inc_by(cost.cpu().as_secs_f64());
            self.cost_tool_calls
                .get_or_create(&principal)
                .inc_by(cost.calls());
            self.egress_bytes
                .get_or_create(&principal)
                .inc_by(cost.egress_bytes);
        }
        let (outcome, kind) = match &execution.outcome.result {
            Ok(_) => ("ok", "none"),
            Err(error) => ("error", error.kind.as_str()),
        };
        self.executions
            .get_or_create(&ExecutionLabels {
                principal: self.principal_label(record.origin.principal.as_deref()),
                transport: record.origin.transport.clone(),
                outcome,
                kind,
            })
            .inc();
        self.execution_seconds
            .get_or_create(&OutcomeLabels { outcome })
            .observe(execution.duration.as_secs_f64());
        let limit = match &execution.outcome.result {
            Err(error) => match error.kind {
                ErrorKind::Timeout => Some("timeout"),
                ErrorKind::Memory => Some("memory"),
                ErrorKind::Budget => Some("budget"),
                ErrorKind::Busy => Some("busy"),
                ErrorKind::Quota => Some("quota"),
                _ => None,
            },
            Ok(value) => value.truncated.as_ref().map(|_| "result"),
        };
        if let Some(limit) = limit {
            self.limits.get_or_create(&LimitLabels { limit }).inc();
        }
        if execution.outcome.logs_truncated.is_some() {
            self.limits
                .get_or_create(&LimitLabels { limit: "logs" })
                .inc();
        }
        if matches!(&execution.outcome.result, Err(e) if e.kind == ErrorKind::Policy) {
            self.decisions
                .get_or_create(&DecisionLabels {
                    decision: "refused before running".into(),
                })
                .inc();
        }
        for call in &execution.calls {
            let namespace = call
                .tool
                .split_once('.')
                .map_or(call.tool.as_str(), |(namespace, _)| namespace)
                .to_string();
            self.tool_calls
                .get_or_create(&CallLabels {
                    namespace: namespace.clone(),
                    outcome: if call.ok { "ok" } else { "error" },
                })
                .inc();
            self.tool_call_seconds
                .get_or_create(&NamespaceLabels { namespace })
                .observe(call.ms as f64 / 1000.0);
            self.decisions
                .get_or_create(&DecisionLabels {
                    decision: call.decision.to_string(),
                })
                .inc();
        }
        self.flagged(&record.flags);
    }

    fn flagged(&self, flags: &[Flag]) {
        for flag in flags {
            self.flags
                .get_or_create(&FlagLabels {
                    flag: flag.flag.clone(),
                })
                .inc();
        }
    }

    /// The metrics as OpenMetrics text ([`CONTENT_TYPE`]), with the gauges of the pool
    /// and the upstreams read now.
    pub fn render(&self, upstreams: &Upstreams, pool: Option<&WorkerPool>) -> String {
        if let Some(pool) = pool {
            let health = pool.health();
            self.workers_ready.set(health.ready as i64);
            self.workers_starting.set(health.starting as i64);
        }
        for upstream in upstreams.iter() {
            let snapshot = upstream.snapshot();
            let labels = UpstreamLabels {
                upstream: snapshot.name.clone(),
                transport: snapshot.transport,
            };
            self.upstream_up
                .get_or_create(&labels)
                .set(i64::from(snapshot.status == Status::Ready));
            self.upstream_tools
                .get_or_create(&labels)
                .set(snapshot.tools.len() as i64);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_past_the_cap_share_one_label() {
        let metrics = Metrics::new();
        for i in 0..PRINCIPAL_LABELS {
            assert_eq!(
                metrics.principal_label(Some(&format!("p{i}"))),
                format!("p{i}")
            );
        }
        assert_eq!(metrics.principal_label(Some("late")), OTHER_PRINCIPALS);
        // Those seen before keep theirs.
        assert_eq!(metrics.principal_label(Some("p7")), "p7");
        assert_eq!(metrics.principal_label(None), NO_PRINCIPAL);
    }
}
