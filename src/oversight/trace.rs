//! OpenTelemetry traces over OTLP/HTTP, off unless an endpoint is configured
//! (`codemode.telemetry.otlpEndpoint`, `--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`); when off, nothing here is built or called.
//!
//! One span per execution (continuing the caller's trace when the `execute_code` request
//! carries a W3C `traceparent`, in its `_meta` as SEP-414 has it, or as an HTTP header),
//! with a child span per tool call and fetch. A call to an upstream MCP server carries its
//! span's `traceparent` in the request's `_meta`, so the upstream's spans join the trace
//! over any transport. Fetches to third-party URLs carry no trace context. Spans hold
//! names, sizes, decisions and outcomes, never code, arguments or results.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider, Span},
};

use crate::{
    audit::{AuditRecord, Origin},
    config::{TelemetrySettings, expand_vars},
    record::CallRecord,
};

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("codemode.telemetry: {0}")]
pub struct TraceError(String);

/// The trace exporter of one server.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Tracing {
    /// The exporter `settings` (or the `OTEL_*` environment) ask for, or `None` when no
    /// endpoint is given. Call within a tokio runtime.
    pub fn from_settings(settings: &TelemetrySettings) -> Result<Option<Self>, TraceError> {
        let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_some();
        if settings.otlp_endpoint.is_none() && !from_env {
            return Ok(None);
        }
        let protocol = settings
            .otlp_protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("http/json") => Protocol::HttpJson,
            Some(other) => {
                return Err(TraceError(format!(
                    "otlpProtocol {other:?} is not supported: use \"http/protobuf\" (the default) or \"http/json\""
                )));
            }
        };
        let mut headers = HashMap::new();
        for (name, value) in &settings.otlp_headers {
            let value = expand_vars(value, &env)
                .map_err(|why| TraceError(format!("otlpHeaders.{name}: {why}")))?;
            headers.insert(name.clone(), value);
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_timeout(Duration::from_secs(10));
        if !headers.is_empty() {
            exporter = exporter.with_headers(headers);
        }
        if let Some(endpoint) = &settings.otlp_endpoint {
            exporter = exporter.with_endpoint(traces_url(endpoint));
        }
        let exporter = exporter
            .build()
            .map_err(|err| TraceError(format!("the OTLP exporter could not be built: {err}")))?;
        let service = settings
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "codemode-mcp".into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        let tracer = provider.tracer("codemode-mcp");
        Ok(Some(Self { provider, tracer }))
    }

    /// Starts the span of one execution, as a child of `traceparent` when the caller sent
    /// one.
    pub fn execution(&self, traceparent: Option<&str>, origin: &Origin) -> ExecutionTrace {
        let parent = traceparent.map_or_else(Context::new, |traceparent| {
            let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
            TraceContextPropagator::new().extract(&carrier)
        });
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", "tools/call"),
            KeyValue::new("gen_ai.tool.name", "execute_code"),
            KeyValue::new("codemode.transport", origin.transport.clone()),
        ];
        attributes.extend(
            origin
                .principal
                .clone()
                .map(|p| KeyValue::new("codemode.principal", p)),
        );
        attributes.extend(
            origin
                .client
                .clone()
                .map(|c| KeyValue::new("codemode.client", c)),
        );
        attributes.extend(
            origin
                .session
                .clone()
                .map(|s| KeyValue::new("mcp.session.id", s)),
        );
        let span = self
            .tracer
            .span_builder("tools/call execute_code")
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        ExecutionTrace {
            tracer: self.tracer.clone(),
            cx: parent.with_span(span),
        }
    }

    /// Sends what is buffered and stops; later spans are dropped.
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!("the trace exporter did not shut down cleanly: {err}");
        }
    }
}

/// `…/v1/traces` on an OTLP/HTTP base URL (a URL that already names it is kept).
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// The span of one execution, which its calls' spans are children of.
#[derive(Clone, Debug)]
pub struct ExecutionTrace {
    tracer: SdkTracer,
    cx: Context,
}

impl ExecutionTrace {
    /// Starts the span of a call now (`name` is `namespace.tool` or `fetch`).
    pub fn call(&self, name: &str, target: Option<&str>) -> CallSpan {
        self.call_from(name, target, SystemTime::now())
    }

    /// The span of a call that ended without going out (refused at once), started at
    /// `started`.
    pub fn refused_call(&self, record: &CallRecord, started: Instant) {
        let start = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        self.call_from(&record.tool, record.target.as_deref(), start)
            .end(record);
    }

    fn call_from(&self, name: &str, target: Option<&str>, start: SystemTime) -> CallSpan {
        let title = match target {
            Some(target) => format!("{name} {target}"),
            None => format!("tools/call {name}"),
        };
        let span = self
            .tracer
            .span_builder(title)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .start_with_context(&self.tracer, &self.cx);
        CallSpan(span)
    }

    /// Ends the execution's span with what was recorded of it.
    pub fn end(self, record: &AuditRecord) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "codemode.code_sha256",
            record.code_sha256.clone(),
        ));
        span.set_attribute(KeyValue::new("codemode.calls", record.calls.len() as i64));
        span.set_attribute(KeyValue::new(
            "codemode.result_bytes",
            record.result_bytes as i64,
        ));
        if record.seq > 0 {
            span.set_attribute(KeyValue::new("codemode.audit.seq", record.seq as i64));
        }
        if !record.flags.is_empty() {
            let flags: Vec<String> = record.flags.iter().map(|f| f.flag.clone()).collect();
            span.set_attribute(KeyValue::new("codemode.flags", flags.join(",")));
        }
        match &record.error_kind {
            None => span.set_status(Status::Ok),
            Some(kind) => {
                span.set_attribute(KeyValue::new("error.type", kind.clone()));
                span.set_status(Status::error(record.error.clone().unwrap_or_default()));
            }
        }
        span.end();
    }
}

/// The live span of one call.
#[derive(Debug)]
pub struct CallSpan(Span);

impl CallSpan {
    /// The W3C `traceparent` naming this span, for the upstream.
    pub fn traceparent(&self) -> String {
        let context = self.0.span_context();
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    }

    /// Ends the span with the call's outcome.
    pub fn end(mut self, record: &CallRecord) {
        let (namespace, tool) = record
            .tool
            .split_once('.')
            .unwrap_or((record.tool.as_str(), ""));
        self.0.set_attributes([
            KeyValue::new("codemode.namespace", namespace.to_string()),
            KeyValue::new("codemode.decision", record.decision.as_str()),
            KeyValue::new("codemode.args_bytes", record.args_bytes as i64),
            KeyValue::new("codemode.result_bytes", record.result_bytes as i64),
        ]);
        if !tool.is_empty() {
            self.0
                .set_attribute(KeyValue::new("gen_ai.tool.name", tool.to_string()));
        }
        if record.ok {
            self.0.set_status(Status::Ok);
        } else {
            self.0.set_attribute(KeyValue::new(
                "error.type",
                if record.decision.is_refusal() {
                    "refused"
                } else {
                    "tool_error"
                },
            ));
            self.0
                .set_status(Status::error(record.error.clone().unwrap_or_default()));
        }
        self.0.end();
    }
}
