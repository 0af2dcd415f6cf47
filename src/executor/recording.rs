//! The last stage of an execution: its anomaly flags, its audit record (on disk before the
//! answer goes out), its trace span, the metrics and the console's list.

use crate::{
    audit::{AuditRecord, Origin},
    oversight::ExecutionTrace,
};

use super::{Execution, Executor};

impl Executor {
    /// Records a finished execution: its anomaly flags, its audit record (on disk before
    /// the answer goes out), its trace span, the metrics and the console's list.
    pub(super) async fn record(
        &self,
        origin: &Origin,
        code: &str,
        execution: &Execution,
        trace: Option<ExecutionTrace>,
    ) {
        let mut record = AuditRecord::of(origin, code, execution);
        record.flags = self.oversight.flags(&record);
        let mut audited = false;
        if let Some(audit) = &self.audit {
            let (audit, flags) = (audit.clone(), record.flags.clone());
            let written = tokio::task::spawn_blocking(move || {
                let written = audit.append(&mut record);
                (record, written)
            })
            .await;
            match written {
                Ok((chained, Ok(()))) => {
                    record = chained;
                    audited = true;
                }
                Ok((mut unchained, Err(err))) => {
                    tracing::error!("the audit record was not written: {err}");
                    unchained.seq = 0;
                    record = unchained;
                }
                Err(err) => {
                    tracing::error!("the audit record was not written: {err}");
                    record = AuditRecord::of(origin, code, execution);
                    record.flags = flags;
                }
            }
        }
        if let Some(trace) = trace {
            trace.end(&record);
        }
        self.oversight.ended(execution, record, audited);
    }
}
