//! The operator console at `/console`: server-rendered pages (maud, escaped by
//! construction, no script) over what the server keeps in memory and on disk: the recent
//! executions with their outcome, duration and calls; one execution's code, calls and
//! policy decisions; the audit chain's state; the upstreams; the anomaly flags.
//!
//! It sits behind the same guard as every route. A browser cannot send a bearer header, so
//! when the server has a token the console asks for it once (`POST /console/login`) and
//! hands back a cookie naming a console session kept in memory; the token itself is never
//! stored in the browser.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{DOCTYPE, Markup, html};
use subtle::ConstantTimeEq;

use crate::{
    audit::{self, AuditRecord},
    embed::CodeMode,
    oversight::Observed,
    upstream::Status,
};

/// Where the console lives.
pub(super) const CONSOLE_PATH: &str = "/console";
/// Where the console's login form posts; the guard lets it through without a token.
pub(super) const LOGIN_PATH: &str = "/console/login";
/// The cookie that carries a console session.
const COOKIE: &str = "codemode_console";
/// Console sessions kept at once; the oldest is forgotten past it.
const MAX_CONSOLE_SESSIONS: usize = 256;

/// Console sessions opened with the token (random ids, in memory only).
#[derive(Debug, Default)]
pub(super) struct ConsoleSessions(Mutex<VecDeque<String>>);

impl ConsoleSessions {
    fn open(&self) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut ids) = self.0.lock() {
            if ids.len() >= MAX_CONSOLE_SESSIONS {
                ids.pop_front();
            }
            ids.push_back(id.clone());
        }
        id
    }

    /// Whether `request`'s cookie names an open console session.
    pub(super) fn admits(&self, headers: &http::HeaderMap) -> bool {
        let Some(given) = cookie(headers) else {
            return false;
        };
        self.0.lock().is_ok_and(|ids| {
            ids.iter()
                .any(|id| bool::from(id.as_bytes().ct_eq(given.as_bytes())))
        })
    }
}

fn cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// What the console pages read.
pub(super) struct Console {
    codemode: CodeMode,
    identity: Option<super::identity::Identity>,
    sessions: Arc<ConsoleSessions>,
    /// The last verification of the audit chain, with the live file's size it saw.
    chain: Mutex<Option<(u64, ChainState)>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum ChainState {
    Off,
    Intact(audit::Verified),
    Broken(String),
}

impl Console {
    pub(super) fn new(
        codemode: CodeMode,
        identity: Option<super::identity::Identity>,
        sessions: Arc<ConsoleSessions>,
    ) -> Self {
        Self {
            codemode,
            identity,
            sessions,
            chain: Mutex::new(None),
        }
    }

    /// Verifies the chain again when the live file changed since the last time.
    async fn chain_state(&self) -> ChainState {
        let Some(log) = self.codemode.audit().cloned() else {
            return ChainState::Off;
        };
        let size = std::fs::metadata(log.path()).map_or(0, |m| m.len());
        if let Ok(cached) = self.chain.lock()
            && let Some((seen, state)) = cached.as_ref()
            && *seen == size
        {
            return state.clone();
        }
        let verified = tokio::task::spawn_blocking(move || audit::verify(&log.chain_files())).await;
        let state = match verified {
            Ok(Ok(verified)) => ChainState::Intact(verified),
            Ok(Err(broken)) => ChainState::Broken(broken.to_string()),
            Err(err) => ChainState::Broken(format!("the check did not finish: {err}")),
        };
        if let Ok(mut cached) = self.chain.lock() {
            *cached = Some((size, state.clone()));
        }
        state
    }
}

/// The console's routes, under [`CONSOLE_PATH`].
pub(super) fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route(CONSOLE_PATH, get(overview))
        .route("/console/executions/{id}", get(execution))
        .route(LOGIN_PATH, post(login))
        .with_state(console)
}

/// The page a browser without a console session gets (401).
pub(super) fn login_page(failed: bool) -> Response {
    let page = layout(
        "Sign in",
        html! {
            h1 { "codemode-mcp console" }
            @if failed { p.error role="alert" { "That token is not an operator's token of this server (one with the scope codemode:operator, or the first in its token file)." } }
            p { "This server needs its bearer token (the one given with --auth-token-file or CODEMODE_AUTH_TOKEN)." }
            form method="post" action=(LOGIN_PATH) {
                label { "Token " input type="password" name="token" autocomplete="off" autofocus; }
                " "
                button type="submit" { "Open the console" }
            }
        },
    );
    with_headers(StatusCode::UNAUTHORIZED, page)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(console): State<Arc<Console>>, Form(form): Form<LoginForm>) -> Response {
    let admitted = match &console.identity {
        None => true,
        // Only the operator's: the console shows every principal's executions.
        Some(identity) => identity
            .principal(form.token.trim())
            .await
            .is_ok_and(|p| p.is_operator()),
    };
    if !admitted {
        return login_page(true);
    }
    let mut response = Redirect::to(CONSOLE_PATH).into_response();
    let cookie = format!(
        "{COOKIE}={}; Path={CONSOLE_PATH}; HttpOnly; SameSite=Strict",
        console.sessions.open()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn overview(State(console): State<Arc<Console>>) -> Response {
    let chain = console.chain_state().await;
    let recent = console.codemode.oversight().recent();
    let upstreams: Vec<_> = console
        .codemode
        .upstreams()
        .iter()
        .map(|u| u.snapshot())
        .collect();
    let flagged: Vec<&Observed> = recent
        .iter()
        .filter(|o| !o.record.flags.is_empty())
        .collect();
    let records: Vec<AuditRecord> = recent.iter().map(|o| (*o.record).clone()).collect();
    let by_principal = audit::usage::summarize(&records, 0, audit::usage::UsageBy::Principal, None);
    let top = top_programs(&recent);
    let page = layout(
        "Console",
        html! {
            h1 { "codemode-mcp console" }
            p.muted { "Read at " (time(now_ms())) " UTC. " a href=(CONSOLE_PATH) { "Refresh" } }
            section #audit {
                h2 { "Audit chain" }
                @match &chain {
                    ChainState::Off => p { "No audit log: start the server with --audit-log FILE (or codemode.audit.path) to keep one." },
                    ChainState::Intact(v) if v.records == 0 => p.ok { "Intact, with no records yet." },
                    ChainState::Intact(v) => p.ok {
                        "Verified up to record " strong { (v.last_seq) } " (" (v.records) " records, seq "
                        (v.first_seq) " to " (v.last_seq) ")."
                        @if v.torn_tail { " A torn last line (a crash while writing) was ignored." }
                    },
                    ChainState::Broken(at) => p.error role="alert" { "BROKEN at " (at) },
                }
                @if let ChainState::Intact(v) = &chain {
                    @match &v.anchor {
                        audit::AnchorCheck::Matched { head_seq, .. } => p.ok {
                            "Anchored: it starts and ends where its anchor says (last record " (head_seq)
                            "). Head: " code { (v.head_sha256) }
                        },
                        audit::AnchorCheck::Missing { path } => p.flag {
                            "No anchor file (" (path.display()) "): records deleted from the end or the start of the log cannot be detected."
                        },
                    }
                }
            }
            section #upstreams {
                h2 { "Upstreams" }
                @if upstreams.is_empty() {
                    p { "No upstream MCP servers are configured." }
                } @else {
                    table {
                        thead { tr { th { "server" } th { "transport" } th { "status" } th { "tools" } } }
                        tbody {
                            @for u in &upstreams {
                                tr {
                                    td { (u.name) }
                                    td { (u.transport) }
                                    td class=(if u.status == Status::Ready { "ok" } else { "error" }) { (u.status) }
                                    td { (u.tools.len()) }
                                }
                            }
                        }
                    }
                }
            }
            section #flags {
                h2 { "Anomaly flags" }
                @if flagged.is_empty() {
                    p { "None among the executions kept." }
                } @else {
                    table {
                        thead { tr { th { "execution" } th { "flag" } th { "what was seen" } } }
                        tbody {
                            @for o in &flagged {
                                @for flag in &o.record.flags {
                                    tr {
                                        td { a href=(detail_href(o)) { "#" (o.id) } }
                                        td.flag { (flag.flag) }
                                        td { (flag.detail) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section #cost {
                h2 { "Cost by principal" }
                @if by_principal.is_empty() {
                    p { "Nothing has run yet." }
                } @else {
                    p.muted { "Over the " (recent.len()) " executions kept; codemode-mcp usage sums the whole audit log." }
                    table {
                        thead { tr {
                            th { "principal" } th { "executions" } th { "errors" } th { "CPU s" }
                            th { "wall s" } th { "tool calls" } th { "fetches" } th { "egress bytes" }
                        } }
                        tbody {
                            @for row in &by_principal {
                                tr {
                                    td { (row.key) } td { (row.executions) } td { (row.errors) }
                                    td { (format!("{:.3}", row.cpu_seconds)) }
                                    td { (format!("{:.3}", row.wall_seconds)) }
                                    td { (row.tool_calls) } td { (row.fetches) } td { (row.egress_bytes) }
                                }
                            }
                        }
                    }
                    h3 { "Top programs by CPU" }
                    table {
                        thead { tr { th { "code" } th { "principal" } th { "runs" } th { "CPU ms" } th { "last" } } }
                        tbody {
                            @for program in &top {
                                tr {
                                    td.code { code { (first_line(&program.code)) } }
                                    td { (program.principal) }
                                    td { (program.runs) }
                                    td { (format!("{:.1}", program.cpu_ms)) }
                                    td { a href=(detail_href(program.last)) { "#" (program.last.id) } }
                                }
                            }
                        }
                    }
                }
            }
            section #executions {
                h2 { "Recent executions (" (recent.len()) ")" }
                @if recent.is_empty() {
                    p { "Nothing has run yet." }
                } @else {
                    table {
                        thead { tr {
                            th { "#" } th { "finished (UTC)" } th { "origin" } th { "code" }
                            th { "tools called" } th { "outcome" } th { "ms" } th { "CPU ms" }
                            th { "calls" } th { "flags" }
                        } }
                        tbody {
                            @for o in &recent {
                                tr {
                                    td { a href=(detail_href(o)) { "#" (o.id) } }
                                    td { (time(o.record.finished_ms)) }
                                    td { (origin(&o.record)) }
                                    td.code { code { (first_line(&o.record.code)) } }
                                    td { (tools_called(&o.record)) }
                                    td class=(outcome_class(&o.record)) { (outcome(&o.record)) }
                                    td { (o.record.duration_ms) }
                                    td { (cpu_ms(&o.record)) }
                                    td { (o.record.calls.len()) }
                                    td.flag { (o.record.flags.iter().map(|f| f.flag.as_str()).collect::<Vec<_>>().join(", ")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    with_headers(StatusCode::OK, page)
}

async fn execution(State(console): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| console.codemode.oversight().find(id));
    let Some(o) = found else {
        let page = layout(
            "Not found",
            html! {
                h1 { "No execution #" (id) }
                p { "The console keeps the most recent executions only (codemode.telemetry.recent); older ones are in the audit log." }
                p { a href=(CONSOLE_PATH) { "Back to the console" } }
            },
        );
        return with_headers(StatusCode::NOT_FOUND, page);
    };
    let r = &o.record;
    let page = layout(
        &format!("Execution #{}", o.id),
        html! {
            p { a href=(CONSOLE_PATH) { "← console" } }
            h1 { "Execution #" (o.id) }
            dl {
                dt { "finished (UTC)" } dd { (time(r.finished_ms)) }
                dt { "origin" } dd { (origin(r)) }
                dt { "outcome" } dd class=(outcome_class(r)) #outcome { (outcome(r)) }
                @if let Some(error) = &r.error { dt { "error" } dd.error #error { (error) } }
                dt { "duration" } dd { (r.duration_ms) " ms" }
                dt { "result" } dd { (r.result_bytes) " bytes; logs " (r.log_bytes) " bytes" }
                dt { "audit" } dd {
                    @if o.audited { "record " (r.seq) } @else { "not in an audit log" }
                }
                dt { "code sha256" } dd { code { (r.code_sha256) } }
            }
            @if !r.flags.is_empty() {
                section #flags {
                    h2 { "Anomaly flags" }
                    ul { @for flag in &r.flags { li { strong.flag { (flag.flag) } ": " (flag.detail) } } }
                }
            }
            section #code {
                h2 { "Code" }
                pre { code { (r.code) } }
            }
            section #calls {
                h2 { "Tool calls and fetches (" (r.calls.len()) ")" }
                @if r.calls.is_empty() {
                    p { "None." }
                } @else {
                    table {
                        thead { tr {
                            th { "tool" } th { "policy decision" } th { "ok" } th { "ms" }
                            th { "args bytes" } th { "result bytes" } th { "error" }
                        } }
                        tbody {
                            @for call in &r.calls {
                                tr {
                                    td { (call.tool) @if let Some(target) = &call.target { " " code { (target) } } }
                                    td class=(if crate::record::Decision::parse(&call.decision).is_some_and(crate::record::Decision::is_refusal) { "error" } else { "ok" }) { (call.decision) }
                                    td { (if call.ok { "yes" } else { "no" }) }
                                    td { (call.ms) }
                                    td { (call.args_bytes) }
                                    td { (call.result_bytes) }
                                    td { (call.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(scan) = &r.scan {
                section #scan {
                    h2 { "What the program names (pre-flight scan)" }
                    dl {
                        dt { "tools" } dd { (references(&scan.tools)) }
                        dt { "literal URLs" } dd { (references(&scan.urls)) }
                        dt { "eval, Function" } dd {
                            @if scan.dynamic_code.is_empty() { "none" } @else {
                                "at " (scan.dynamic_code.iter().map(|p| format!("{}:{}", p.line, p.column)).collect::<Vec<_>>().join(", "))
                            }
                        }
                        dt { "computed names" } dd {
                            (if scan.dynamic_access { "yes: only the call-time checks saw those calls" } else { "no" })
                        }
                    }
                }
            }
        },
    );
    with_headers(StatusCode::OK, page)
}

/// One program (by its code's hash, for one principal) among the executions kept.
struct Program<'a> {
    code: String,
    principal: String,
    runs: u64,
    cpu_ms: f64,
    last: &'a Observed,
}

/// The ten programs that used the most CPU among the executions kept.
fn top_programs(recent: &[Observed]) -> Vec<Program<'_>> {
    let mut programs: std::collections::HashMap<(String, String), Program<'_>> =
        std::collections::HashMap::new();
    for o in recent {
        let principal = o
            .record
            .origin
            .principal
            .clone()
            .unwrap_or_else(|| "-".into());
        let cpu = o
            .record
            .cost
            .as_ref()
            .map_or(0.0, |c| c.cpu().as_secs_f64() * 1000.0);
        let program = programs
            .entry((o.record.code_sha256.clone(), principal.clone()))
            .or_insert_with(|| Program {
                code: o.record.code.clone(),
                principal,
                runs: 0,
                cpu_ms: 0.0,
                last: o,
            });
        program.runs += 1;
        program.cpu_ms += cpu;
        if o.id > program.last.id {
            program.last = o;
        }
    }
    let mut programs: Vec<Program<'_>> = programs.into_values().collect();
    programs.sort_by(|a, b| b.cpu_ms.total_cmp(&a.cpu_ms));
    programs.truncate(10);
    programs
}

/// The CPU milliseconds of a record, or `-` where nothing ran.
fn cpu_ms(r: &AuditRecord) -> String {
    r.cost
        .as_ref()
        .and_then(|c| c.cpu_us)
        .map_or_else(|| "-".into(), |us| format!("{:.1}", us as f64 / 1000.0))
}

fn references(references: &[crate::preflight::Reference]) -> String {
    if references.is_empty() {
        return "none".into();
    }
    references
        .iter()
        .map(|r| format!("{} at {}:{}", r.name, r.position.line, r.position.column))
        .collect::<Vec<_>>()
        .join(", ")
}

fn detail_href(o: &Observed) -> String {
    format!("{CONSOLE_PATH}/executions/{}", o.id)
}

fn outcome(r: &AuditRecord) -> String {
    match (&r.error_kind, r.error_at) {
        (None, _) => "ok".into(),
        (Some(kind), Some(at)) => format!("error: {kind} at {}:{}", at.line, at.column),
        (Some(kind), None) => format!("error: {kind}"),
    }
}

/// Characters of a program's first line the list shows.
const FIRST_LINE_CHARS: usize = 80;

/// The program's first line that says something (not blank, not a fence), cut to fit.
fn first_line(code: &str) -> String {
    let line = code
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("```"))
        .unwrap_or("");
    if line.chars().count() <= FIRST_LINE_CHARS {
        line.to_string()
    } else {
        let head: String = line.chars().take(FIRST_LINE_CHARS).collect();
        format!("{head}...")
    }
}

/// The distinct tools an execution called, in order, the first few.
fn tools_called(r: &AuditRecord) -> String {
    const SHOWN: usize = 4;
    let mut names: Vec<&str> = Vec::new();
    for call in &r.calls {
        if !names.contains(&call.tool.as_str()) {
            names.push(&call.tool);
        }
    }
    let more = names.len().saturating_sub(SHOWN);
    let mut text = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" +{more}"));
    }
    text
}

fn outcome_class(r: &AuditRecord) -> &'static str {
    if r.error_kind.is_none() {
        "ok"
    } else {
        "error"
    }
}

fn origin(r: &AuditRecord) -> String {
    let mut parts: Vec<String> = r.origin.principal.iter().cloned().collect();
    parts.push(r.origin.transport.clone());
    parts.extend(r.origin.client.clone());
    parts.extend(
        r.origin
            .session
            .as_deref()
            .map(|s| format!("session {}", &s[..s.len().min(8)])),
    );
    parts.join(" · ")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        )
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · codemode-mcp" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body { main { (body) } }
        }
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:1100px;margin:0 auto;padding:16px 24px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eceff4}pre{background:#fff;border:1px solid #d8dce3;padding:10px;overflow:auto}\
.ok{color:#13653a}.error{color:#a8071a}.flag{color:#ad4e00;font-weight:600}.muted{color:#5b6474}\
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}dd{margin:0}";

/// HTML, never cached, framed by nobody, with no script allowed.
fn with_headers(status: StatusCode, page: Markup) -> Response {
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
