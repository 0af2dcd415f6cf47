//! The record of a run's calls: those in flight, those finished, and what the execution's
//! progress channel and trace are told of each.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use tokio::sync::mpsc;

use super::fail;
use crate::{
    oversight::{CallSpan, ExecutionTrace},
    record::{CallRecord, Decision},
    sandbox::ToolReply,
};

/// Characters of a failed call's message a record keeps.
const RECORD_ERROR_CHARS: usize = 500;

fn record_error(message: &str) -> String {
    if message.chars().count() <= RECORD_ERROR_CHARS {
        return message.to_string();
    }
    let head: String = message.chars().take(RECORD_ERROR_CHARS).collect();
    format!("{head} [...]")
}

/// A call that went out and is not answered yet.
pub(super) struct InFlightCall {
    pub(super) name: String,
    pub(super) target: Option<String>,
    pub(super) started: Instant,
    pub(super) args_bytes: usize,
}

/// The calls of a run not answered yet. Once `closed` (the program ended), they have been
/// recorded as abandoned, and an answer that comes later is not recorded again.
#[derive(Default)]
pub(super) struct InFlight {
    pub(super) next: u64,
    pub(super) calls: HashMap<u64, InFlightCall>,
    pub(super) closed: bool,
}

/// Keeps each finished call, and reports it to whoever follows the execution's progress.
#[derive(Clone)]
pub(super) struct Recorder {
    pub(super) records: Arc<Mutex<Vec<CallRecord>>>,
    /// Records kept, at most.
    pub(super) max_records: usize,
    /// Calls past `max_records`, counted only.
    pub(super) unlisted: Arc<AtomicUsize>,
    pub(super) in_flight: Arc<Mutex<InFlight>>,
    pub(super) progress: Option<mpsc::UnboundedSender<CallRecord>>,
    /// The execution's span, when traces are on.
    pub(super) trace: Option<ExecutionTrace>,
}

impl Recorder {
    /// The calls made so far, in the order they finished.
    pub(super) fn finished(&self) -> Vec<CallRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every call of the run, once its program has ended: the finished ones, then those
    /// still in flight, which went out and may have done what they do, so they are
    /// recorded now (as not answered) and never again when their answer comes.
    pub(super) fn close(&self) -> Vec<CallRecord> {
        let abandoned: Vec<InFlightCall> = self
            .in_flight
            .lock()
            .map(|mut in_flight| {
                in_flight.closed = true;
                std::mem::take(&mut in_flight.calls).into_values().collect()
            })
            .unwrap_or_default();
        let mut abandoned = abandoned;
        abandoned.sort_by_key(|call| call.started);
        for call in abandoned {
            let reply = fail(
                "still in flight when the program ended: the call went out, and its answer was not awaited (await every call, or use Promise.all, before returning)".into(),
                None,
            );
            self.record(
                &call.name,
                call.target,
                call.started,
                call.args_bytes,
                Decision::Abandoned,
                &reply,
                None,
            );
        }
        let mut records = self.finished();
        let unlisted = self.unlisted.load(Ordering::SeqCst);
        if unlisted > 0 {
            records.push(CallRecord {
                tool: "(more calls)".into(),
                target: None,
                ms: 0,
                ok: false,
                error: Some(format!(
                    "{unlisted} more calls were made past the budgets and refused; they are counted here, not listed one by one"
                )),
                args_bytes: 0,
                result_bytes: 0,
                decision: Decision::NotListed,
            });
        }
        records
    }

    /// Notes a call that passed the gate; its id ends it with [`Recorder::settle`].
    pub(super) fn begin(&self, call: InFlightCall) -> u64 {
        self.in_flight.lock().map_or(u64::MAX, |mut in_flight| {
            in_flight.next += 1;
            let id = in_flight.next;
            if !in_flight.closed {
                in_flight.calls.insert(id, call);
            }
            id
        })
    }

    /// Records the answered call `id`, unless the run already recorded it as abandoned.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle(
        &self,
        id: u64,
        tool: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        decision: Decision,
        reply: &ToolReply,
        span: Option<CallSpan>,
    ) {
        // Recorded while the in-flight list is held: the run's end either finds the call
        // recorded or takes it as abandoned, never neither.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.calls.remove(&id).is_some() || !in_flight.closed {
            self.record(tool, target, started, args_bytes, decision, reply, span);
        }
        drop(in_flight);
    }

    /// Adds a record (of a call refused at once, or through [`Recorder::settle`]); `span`
    /// is its live span, if it went out while traces are on (a call refused at once gets a
    /// span here).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        tool: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        decision: Decision,
        reply: &ToolReply,
        span: Option<CallSpan>,
    ) {
        let (ok, error, result_bytes) = match reply {
            ToolReply::Ok(json) => (true, None, json.len()),
            // A message may quote the arguments (a schema error shows the value): the record
            // keeps its head, so a thousand calls with big arguments stay a small list.
            ToolReply::Err(failure) => (false, Some(record_error(&failure.message)), 0),
        };
        let record = CallRecord {
            tool: tool.to_string(),
            target,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ok,
            error,
            args_bytes,
            result_bytes,
            decision,
        };
        match (span, &self.trace) {
            (Some(span), _) => span.end(&record),
            (None, Some(trace)) => trace.refused_call(&record, started),
            (None, None) => {}
        }
        if let Some(progress) = &self.progress {
            let _ = progress.send(record.clone());
        }
        if let Ok(mut records) = self.records.lock() {
            if records.len() < self.max_records {
                records.push(record);
            } else {
                self.unlisted.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}
