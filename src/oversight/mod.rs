//! What operators see of what runs: Prometheus [`metrics`], [`anomaly`] flags computed
//! from recent history, the recent executions the operator console shows, and
//! OpenTelemetry traces ([`trace`]). The executor hands every finished execution here;
//! nothing here changes what a program may do.

pub mod anomaly;
pub mod metrics;
pub mod trace;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

pub use anomaly::Anomalies;
pub use metrics::Metrics;
pub use trace::{CallSpan, ExecutionTrace, TraceError, Tracing};

use crate::{
    audit::{AuditRecord, Flag},
    config::{AnomalySettings, TelemetrySettings},
    record::Execution,
};

/// One execution as the console shows it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Its number in this process, from 1.
    pub id: u64,
    /// What was recorded (with its `seq` in the audit chain when there is one).
    pub record: Arc<AuditRecord>,
    /// Whether it is in the audit log.
    pub audited: bool,
}

/// The oversight of one server.
#[derive(Debug)]
pub struct Oversight {
    metrics: Metrics,
    anomalies: Anomalies,
    tracing: Option<Tracing>,
    recent: Mutex<Recent>,
}

#[derive(Debug)]
struct Recent {
    keep: usize,
    next_id: u64,
    entries: VecDeque<Observed>,
}

impl Default for Oversight {
    fn default() -> Self {
        Self::new(
            &AnomalySettings::default(),
            &TelemetrySettings::default(),
            None,
        )
    }
}

impl Oversight {
    /// Oversight with these thresholds, keeping `telemetry.recent` executions for the
    /// console, exporting traces through `tracing` when given.
    pub fn new(
        anomalies: &AnomalySettings,
        telemetry: &TelemetrySettings,
        tracing: Option<Tracing>,
    ) -> Self {
        Self {
            metrics: Metrics::new(),
            anomalies: Anomalies::new(anomalies.clone()),
            tracing,
            recent: Mutex::new(Recent {
                keep: telemetry.recent.max(1),
                next_id: 1,
                entries: VecDeque::new(),
            }),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The anomaly detector.
    pub fn anomalies(&self) -> &Anomalies {
        &self.anomalies
    }

    /// The trace exporter, when traces are on.
    pub fn tracing(&self) -> Option<&Tracing> {
        self.tracing.as_ref()
    }

    /// Sends the traces still buffered (blocking); call once, when the server stops.
    pub fn shutdown(&self) {
        if let Some(tracing) = &self.tracing {
            tracing.shutdown();
        }
    }

    /// An execution begins; it counts as in flight until the guard drops.
    pub fn began(&self) -> InFlight<'_> {
        self.metrics.began();
        InFlight(&self.metrics)
    }

    /// The anomaly flags of `record`, now.
    pub fn flags(&self, record: &AuditRecord) -> Vec<Flag> {
        self.anomalies.observe(record)
    }

    /// `execution` ended and was recorded as `record`: count it, log its flags, keep it for
    /// the console.
    pub fn ended(&self, execution: &Execution, record: AuditRecord, audited: bool) {
        self.metrics.ended(execution, &record);
        let principal = record.origin.principal.as_deref().unwrap_or("-");
        tracing::debug!(
            principal,
            transport = record.origin.transport.as_str(),
            seq = record.seq,
            kind = record.error_kind.as_deref().unwrap_or("none"),
            duration_ms = record.duration_ms,
            "execution ended"
        );
        for flag in &record.flags {
            tracing::warn!(
                flag = flag.flag.as_str(),
                principal,
                transport = record.origin.transport.as_str(),
                session = record.origin.session.as_deref().unwrap_or("-"),
                seq = record.seq,
                "anomaly: {}",
                flag.detail
            );
        }
        if let Ok(mut recent) = self.recent.lock() {
            let id = recent.next_id;
            recent.next_id += 1;
            recent.entries.push_back(Observed {
                id,
                record: Arc::new(record),
                audited,
            });
            while recent.entries.len() > recent.keep {
                recent.entries.pop_front();
            }
        }
    }

    /// The executions kept, newest first.
    pub fn recent(&self) -> Vec<Observed> {
        self.recent
            .lock()
            .map(|recent| recent.entries.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The execution numbered `id`, while it is kept.
    pub fn find(&self, id: u64) -> Option<Observed> {
        let recent = self.recent.lock().ok()?;
        recent.entries.iter().find(|o| o.id == id).cloned()
    }
}

/// Counts an execution as in flight while it lives.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.left();
    }
}
