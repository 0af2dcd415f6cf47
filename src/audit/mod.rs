//! The audit trail: one JSON line per execution (who asked, over what, the code and its
//! SHA-256, each tool call with its sizes and outcome, the error kind), each line holding
//! the SHA-256 of the line before it. Editing, inserting or deleting a record breaks the
//! chain, and [`verify`] (`codemode-mcp audit verify FILE...`) names the first break.
//!
//! A chain alone cannot show that records were cut from its end or its start, so after
//! each record an anchor beside the log (`FILE.anchor`, see [`Anchor`]) names the last
//! record (its seq and the SHA-256 of its line) and the first one kept; [`verify`] checks
//! both ends against it, and [`AuditLog::open`] will not continue a chain whose last
//! record does not match it.
//!
//! Each record is written whole and fsynced before its anchor and before the execution's
//! answer goes out. A crash mid-write leaves at most a torn last line, which is cut off at
//! the next start and ignored by verification, or a whole last record not yet anchored,
//! which the next start anchors. Past a size, the file is rotated to `FILE.1` (older ones
//! shift to `.2`, ...) and the chain goes on in the new file.

mod anchor;
pub mod usage;

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

pub use self::anchor::{Anchor, Base, Head, anchor_path};
use crate::digest::sha256_hex;
pub use crate::record::Origin;
use crate::record::{CallRecord, Execution};

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rotated files kept beside the live one.
const KEEP_ROTATED: u32 = 9;

/// One tool call in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditCall {
    /// `namespace.tool`, or `fetch`.
    pub tool: String,
    /// For a fetch: `METHOD URL` without the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Bytes of its arguments.
    pub args_bytes: usize,
    /// Bytes of its result.
    pub result_bytes: usize,
    /// Milliseconds it took.
    pub ms: u64,
    /// Whether it produced a result.
    pub ok: bool,
    /// What the policy and budgets decided.
    pub decision: String,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&CallRecord> for AuditCall {
    fn from(call: &CallRecord) -> Self {
        Self {
            tool: call.tool.clone(),
            target: call.target.clone(),
            args_bytes: call.args_bytes,
            result_bytes: call.result_bytes,
            ms: call.ms,
            ok: call.ok,
            decision: call.decision.as_str().to_string(),
            error: call.error.clone(),
        }
    }
}

/// One execution, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's line.
    pub prev: String,
    /// When the execution finished, in milliseconds since the Unix epoch.
    pub finished_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Who asked.
    pub origin: Origin,
    /// SHA-256 (hex) of the code.
    pub code_sha256: String,
    /// The code as submitted.
    pub code: String,
    /// Its tool calls, in the order they finished.
    pub calls: Vec<AuditCall>,
    /// What the pre-flight scan found in the code (absent when it did not parse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<crate::preflight::Scan>,
    /// Bytes of the returned value (0 on failure).
    pub result_bytes: usize,
    /// Bytes of console output kept.
    pub log_bytes: usize,
    /// The error kind (`timeout`, `memory`, `budget`, ... name the limit hit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// The error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where in the code the error is, when it names a place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_at: Option<crate::transpile::Position>,
    /// What looked wrong about this execution against recent history (see
    /// [`crate::oversight`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// What it cost (absent in records written before costs were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::record::Cost>,
}

/// An anomaly flag on a record: which pattern was seen, and the figures that raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// `rate`, `limit-hits`, `repeat`, `denied-burst` or `new-egress-host`.
    pub flag: String,
    /// What was seen, for the operator.
    pub detail: String,
}

impl AuditRecord {
    /// The record of `execution`, not yet in a chain (`seq` 0, `prev` empty) and without
    /// flags.
    pub fn of(origin: &Origin, code: &str, execution: &Execution) -> Self {
        let (result_bytes, error_kind, error, error_at) = match &execution.outcome.result {
            Ok(value) => (value.json.len(), None, None, None),
            Err(error) => (
                0,
                Some(error.kind.as_str().to_string()),
                Some(error.message.clone()),
                error.position,
            ),
        };
        Self {
            seq: 0,
            prev: String::new(),
            finished_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            duration_ms: u64::try_from(execution.duration.as_millis()).unwrap_or(u64::MAX),
            origin: origin.clone(),
            code_sha256: sha256_hex(code.as_bytes()),
            code: code.to_string(),
            calls: execution.calls.iter().map(AuditCall::from).collect(),
            scan: execution.scan.clone(),
            result_bytes,
            log_bytes: execution
                .outcome
                .logs
                .iter()
                .map(|entry| entry.message.len())
                .sum(),
            error_kind,
            error,
            error_at,
            flags: Vec::new(),
            cost: Some(execution.cost()),
        }
    }
}

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, read or written. Transient or not, as the I/O error
    /// says.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A record the chain would be continued from (or started at) is not a record of
    /// this format. Permanent until an operator acts.
    #[error(
        "audit log {path}:{line}: not a record of this format ({reason}); move the file away to start a new chain"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The anchor beside the log is not one this program wrote. Permanent until an
    /// operator acts.
    #[error(
        "audit log anchor {path}: {reason}; investigate, or move the log and its anchor away to start a new chain"
    )]
    Anchor {
        /// The anchor file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The end of the log does not verify against its anchor, so the chain is not
    /// continued from it. Permanent until an operator acts.
    #[error(
        "audit log {file}:{line}: {reason}; the chain is not continued from a record that does not verify: investigate (codemode-mcp audit verify), or move the log and its .anchor away to start a new chain"
    )]
    Refused {
        /// The file of the first bad (or missing) record.
        file: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// Its seq.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The append-only, hash-chained audit log of one server.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    anchor: PathBuf,
    max_bytes: u64,
    state: Mutex<Chain>,
}

#[derive(Debug)]
struct Chain {
    file: File,
    size: u64,
    seq: u64,
    last_hash: String,
    base: Base,
}

impl Chain {
    fn anchor(&self) -> Anchor {
        Anchor::new(
            Head {
                seq: self.seq,
                sha256: self.last_hash.clone(),
            },
            self.base.clone(),
        )
    }
}

/// The last whole record of a chain, and where it is.
#[derive(Debug)]
struct Tail {
    file: PathBuf,
    line: usize,
    seq: u64,
    prev: String,
    sha256: String,
}

/// How the end of a log stands against its anchor, when it may be continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// It ends at the anchor's head.
    AtHead,
    /// One record past it: that record's line was fsynced, and a crash came before its
    /// anchor was written.
    OnePast,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `FILE.n`, a rotated file of the log at `path`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The files of the chain at `path`, oldest first: the rotated ones still kept, then the
/// live one.
fn chain_files_of(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=KEEP_ROTATED)
        .rev()
        .map(|n| numbered(path, n))
        .filter(|file| file.exists())
        .collect();
    files.push(path.to_path_buf());
    files
}

/// The bytes of `path`, none when there is no such file.
fn read_if_exists(path: &Path) -> Result<Vec<u8>, AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// How much of `text` is whole lines: what a crash did not tear.
fn whole_lines(text: &[u8]) -> usize {
    text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// The last record of `text`, the whole lines of `file`.
fn last_record(file: &Path, text: &[u8]) -> Result<Option<Tail>, AuditError> {
    let Some(body) = text.strip_suffix(b"\n") else {
        return Ok(None);
    };
    let (line, number) = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => (
            &body[i + 1..],
            body.iter().filter(|&&b| b == b'\n').count() + 1,
        ),
        None => (body, 1),
    };
    let record: AuditRecord = serde_json::from_slice(line).map_err(|e| AuditError::Unreadable {
        path: file.to_path_buf(),
        line: number,
        reason: e.to_string(),
    })?;
    Ok(Some(Tail {
        file: file.to_path_buf(),
        line: number,
        seq: record.seq,
        prev: record.prev,
        sha256: sha256_hex(line),
    }))
}

/// The seq and `prev` of the first whole record of `file`, if it has one.
fn first_record(file: &Path) -> Result<Option<Base>, AuditError> {
    let opened = match File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(file)(e)),
    };
    let mut line = Vec::new();
    BufReader::new(opened)
        .read_until(b'\n', &mut line)
        .map_err(io_error(file))?;
    if line.pop() != Some(b'\n') {
        return Ok(None);
    }
    let record: AuditRecord =
        serde_json::from_slice(&line).map_err(|e| AuditError::Unreadable {
            path: file.to_path_buf(),
            line: 1,
            reason: e.to_string(),
        })?;
    Ok(Some(Base {
        seq: record.seq,
        prev: record.prev,
    }))
}

/// The first record among `files` (oldest first), if there is one.
fn first_kept(files: &[PathBuf]) -> Result<Option<Base>, AuditError> {
    for file in files {
        if let Some(base) = first_record(file)? {
            return Ok(Some(base));
        }
    }
    Ok(None)
}

/// "record 4" or "records 4 to 6".
fn span(first: u64, last: u64) -> String {
    if first == last {
        format!("record {first}")
    } else {
        format!("records {first} to {last}")
    }
}

/// "record 4 is" or "records 4 to 6 are" (`now`), "record 4 was" or "records 4 to 6
/// were".
fn missing(first: u64, last: u64, now: bool) -> String {
    let verb = match (first == last, now) {
        (true, true) => "is",
        (false, true) => "are",
        (true, false) => "was",
        (false, false) => "were",
    };
    format!("{} {verb}", span(first, last))
}

/// Where the log at `live` (with `live_lines` whole lines, and a torn one after them when
/// `torn`) ends against `anchor` (from `anchor_file`); `Err` when it must not be continued.
fn stand(
    anchor: &Anchor,
    tail: Option<&Tail>,
    (live, live_lines, torn): (&Path, usize, bool),
    anchor_file: &Path,
) -> Result<Standing, AuditError> {
    let head = &anchor.head;
    let named = anchor_file.display();
    let refuse = |file: &Path, line: usize, seq: u64, reason: String| AuditError::Refused {
        file: file.to_path_buf(),
        line,
        seq,
        reason,
    };
    match tail {
        Some(t) if t.seq == head.seq && t.sha256 == head.sha256 => Ok(Standing::AtHead),
        Some(t) if t.seq == head.seq => Err(refuse(
            &t.file,
            t.line,
            t.seq,
            format!(
                "record {} is not the record the anchor ({named}) names as the last (the SHA-256 of its line differs): it was edited",
                t.seq
            ),
        )),
        Some(t) if t.seq == head.seq + 1 && t.prev == head.sha256 => Ok(Standing::OnePast),
        Some(t) if t.seq == head.seq + 1 => Err(refuse(
            &t.file,
            t.line,
            t.seq,
            format!(
                "record {} does not follow record {} as the anchor ({named}) names it (its prev differs): one of them was edited",
                t.seq, head.seq
            ),
        )),
        Some(t) if t.seq > head.seq => Err(refuse(
            &t.file,
            t.line,
            t.seq,
            format!(
                "record {} is {} records past the last one the anchor ({named}) names, record {}: records were appended without it (by an older codemode-mcp?), or an older anchor was put back",
                t.seq,
                t.seq - head.seq,
                head.seq
            ),
        )),
        None if head.seq == 0 => Ok(Standing::AtHead),
        _ => {
            let first = tail.map_or(anchor.base.seq, |t| t.seq + 1);
            let reason = if torn {
                format!(
                    "record {first}'s line is torn (cut mid-line), but the anchor ({named}) says record {} was written whole, so no crash did this; cutting the line off would lose {}",
                    head.seq,
                    span(first, head.seq)
                )
            } else {
                format!(
                    "{} missing from the end: the anchor ({named}) names record {} as the last",
                    missing(first, head.seq, true),
                    head.seq
                )
            };
            Err(refuse(live, live_lines + 1, first, reason))
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing its chain; rotates past
    /// `max_bytes`. Refuses a log whose end does not verify against its anchor
    /// (`FILE.anchor`), and anchors a log that has none.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, AuditError> {
        let path = path.into();
        let anchor_file = anchor_path(&path);
        let anchor = anchor::read(&anchor_file).map_err(|reason| AuditError::Anchor {
            path: anchor_file.clone(),
            reason,
        })?;
        let text = read_if_exists(&path)?;
        let complete = whole_lines(&text);
        let torn = text.len() - complete;
        let text = &text[..complete];
        let mut tail = last_record(&path, text)?;
        if tail.is_none() {
            // A crash right after a rotation leaves the live file empty: the chain ends in
            // FILE.1, and goes on from there.
            let rotated = numbered(&path, 1);
            let older = read_if_exists(&rotated)?;
            tail = last_record(&rotated, &older[..whole_lines(&older)])?;
        }
        let live_lines = text.iter().filter(|&&b| b == b'\n').count();
        let (base, rewrite) = match anchor {
            Some(anchor) => {
                let standing = stand(
                    &anchor,
                    tail.as_ref(),
                    (&path, live_lines, torn > 0),
                    &anchor_file,
                )?;
                if standing == Standing::OnePast {
                    tracing::info!(
                        "audit log {}: record {} was written but not yet anchored when the server stopped; anchoring it",
                        path.display(),
                        anchor.head.seq + 1
                    );
                }
                (anchor.base, standing == Standing::OnePast)
            }
            None => {
                if let Some(tail) = &tail {
                    tracing::warn!(
                        "audit log {}: no anchor file {} (a log from an older codemode-mcp, or the anchor was deleted); anchoring it at record {}: records deleted from its end or start before now cannot be detected",
                        path.display(),
                        anchor_file.display(),
                        tail.seq
                    );
                }
                let base = first_kept(&chain_files_of(&path))?.unwrap_or_else(Base::genesis);
                (base, true)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // A torn last line (a crash mid-write) is cut off: it was never acknowledged, and
        // `stand` made sure the anchor does not name it.
        if torn > 0 {
            tracing::warn!(
                "audit log {}: cutting off a torn last record ({torn} bytes) left by a crash",
                path.display(),
            );
            file.set_len(complete as u64).map_err(io_error(&path))?;
        }
        let (seq, last_hash) = tail.map_or((0, GENESIS.to_string()), |t| (t.seq, t.sha256));
        let chain = Chain {
            file,
            size: complete as u64,
            seq,
            last_hash,
            base,
        };
        if rewrite {
            anchor::write(&anchor_file, &chain.anchor()).map_err(io_error(&anchor_file))?;
        }
        Ok(Self {
            max_bytes: max_bytes.max(1),
            state: Mutex::new(chain),
            path,
            anchor: anchor_file,
        })
    }

    /// The live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Chains `record` (its `seq` and `prev` are set here), appends it and fsyncs it, then
    /// anchors it. Blocking: call it off the async runtime's worker threads.
    pub fn append(&self, record: &mut AuditRecord) -> Result<(), AuditError> {
        let mut chain = self.state.lock().unwrap_or_else(|e| e.into_inner());
        record.seq = chain.seq + 1;
        record.prev = chain.last_hash.clone();
        let line = serde_json::to_string(&*record).map_err(|e| AuditError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        if chain.size > 0 && chain.size + line.len() as u64 + 1 > self.max_bytes {
            self.rotate(&mut chain)?;
        }
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        // One write of the whole line, then fsync: a crash leaves a whole record or a
        // torn tail that the next start cuts off.
        chain.file.write_all(&bytes).map_err(io_error(&self.path))?;
        chain.file.sync_data().map_err(io_error(&self.path))?;
        chain.size += bytes.len() as u64;
        chain.seq = record.seq;
        chain.last_hash = sha256_hex(line.as_bytes());
        // Only once the line is durable: an anchor naming a record a crash lost would make
        // the next start refuse a sound log.
        anchor::write(&self.anchor, &chain.anchor()).map_err(io_error(&self.anchor))
    }

    /// The files of the chain, oldest first: the rotated ones still kept, then the live one.
    pub fn chain_files(&self) -> Vec<PathBuf> {
        chain_files_of(&self.path)
    }

    /// The records of the live file that parse (for what the server remembers across
    /// restarts, such as the hosts fetched from). Blocking.
    pub fn read_live(&self) -> Vec<AuditRecord> {
        let Ok(file) = File::open(&self.path) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    fn rotate(&self, chain: &mut Chain) -> Result<(), AuditError> {
        if numbered(&self.path, KEEP_ROTATED).exists() {
            // The oldest file goes, so the kept chain starts later. The anchor says so
            // before the file goes: a crash in between leaves a chain that starts earlier
            // than its anchor's base, which verifies, never one that starts later.
            let next_oldest: Vec<PathBuf> = (1..KEEP_ROTATED)
                .rev()
                .map(|n| numbered(&self.path, n))
                .filter(|file| file.exists())
                .chain([self.path.clone()])
                .collect();
            chain.base = first_kept(&next_oldest)?.unwrap_or_else(|| Base {
                seq: chain.seq + 1,
                prev: chain.last_hash.clone(),
            });
            anchor::write(&self.anchor, &chain.anchor()).map_err(io_error(&self.anchor))?;
        }
        let _ = std::fs::remove_file(numbered(&self.path, KEEP_ROTATED));
        for n in (1..KEEP_ROTATED).rev() {
            if numbered(&self.path, n).exists() {
                std::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1))
                    .map_err(io_error(&self.path))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1)).map_err(io_error(&self.path))?;
        chain.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_error(&self.path))?;
        chain.size = 0;
        Ok(())
    }
}

/// What [`verify`] found in a sound chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Sequence numbers of the first and last record.
    pub first_seq: u64,
    /// The last record's sequence number.
    pub last_seq: u64,
    /// A torn last line that was ignored (a crash while writing).
    pub torn_tail: bool,
    /// SHA-256 (hex) of the last record's line ([`GENESIS`] when there is none). Kept away
    /// from the log, it lets [`verify_expecting`] find a rewrite of the log and its anchor.
    pub head_sha256: String,
    /// How the chain stands against the live file's anchor.
    pub anchor: AnchorCheck,
    /// The record whose line hashes to the head [`verify_expecting`] was given.
    pub expected_seq: Option<u64>,
}

/// How a verified chain stands against the anchor beside its live (last) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorCheck {
    /// There is no anchor: records deleted from the end or the start of the chain cannot
    /// be detected.
    Missing {
        /// Where it would be.
        path: PathBuf,
    },
    /// The chain starts at the anchor's base and reaches its head.
    Matched {
        /// The anchor file.
        path: PathBuf,
        /// The record the anchor names as the last.
        head_seq: u64,
        /// Records past it: appended while the check ran, or one whose anchor a crash did
        /// not let be written.
        past: u64,
    },
}

/// The first break in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ChainBreak {
    /// The file.
    pub file: String,
    /// Its line, from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Checks the chain through `files`, oldest first (`FILE.2 FILE.1 FILE`), and against the
/// anchor of the last one (`FILE.anchor`) when there is one.
pub fn verify(files: &[PathBuf]) -> Result<Verified, ChainBreak> {
    verify_expecting(files, None)
}

/// [`verify`], and some record's line must hash to `expected_head` (a head from an
/// earlier [`Verified::head_sha256`], kept away from the log): then neither records up to
/// it nor the anchor were rewritten since.
pub fn verify_expecting(
    files: &[PathBuf],
    expected_head: Option<&str>,
) -> Result<Verified, ChainBreak> {
    let expected_head = expected_head.map(str::to_ascii_lowercase);
    let anchor_file = files
        .last()
        .map(|live| anchor_path(live))
        .unwrap_or_default();
    // Read before the files: a running server writes a record's line before its anchor,
    // so the records an anchor read first names are already in the files.
    let anchor = match files.last() {
        Some(_) => anchor::read(&anchor_file).map_err(|reason| ChainBreak {
            file: anchor_file.display().to_string(),
            line: 1,
            reason,
        })?,
        None => None,
    };
    let named = anchor_file.display();
    let mut previous: Option<(u64, String)> = None;
    let mut verified = Verified {
        records: 0,
        first_seq: 0,
        last_seq: 0,
        torn_tail: false,
        head_sha256: GENESIS.to_string(),
        anchor: AnchorCheck::Missing {
            path: anchor_file.clone(),
        },
        expected_seq: None,
    };
    // Where the last record is, and where the one after it would be.
    let mut last_at = (String::new(), 0);
    let mut end_at = (String::new(), 1);
    for (index, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let broken = |line: usize, reason: String| ChainBreak {
            file: name.clone(),
            line,
            reason,
        };
        let file = File::open(path).map_err(|e| {
            broken(
                0,
                if e.kind() == std::io::ErrorKind::NotFound {
                    "the file is missing".to_string()
                } else {
                    format!("cannot read: {e}")
                },
            )
        })?;
        let mut reader = BufReader::new(file);
        let mut number = 0;
        loop {
            let mut line = Vec::new();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| broken(number + 1, format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            number += 1;
            if line.last() != Some(&b'\n') {
                if index + 1 == files.len() {
                    verified.torn_tail = true;
                    number -= 1;
                    break;
                }
                return Err(broken(
                    number,
                    "a torn record in the middle of the chain".into(),
                ));
            }
            line.pop();
            let record: AuditRecord = serde_json::from_slice(&line)
                .map_err(|e| broken(number, format!("not an audit record ({e}): edited")))?;
            match &previous {
                None => verified.first_seq = record.seq,
                Some((seq, hash)) => {
                    if record.prev != *hash && Some(record.seq) == seq.checked_add(1) {
                        // The numbering runs on, so nothing was inserted or deleted: the
                        // record before no longer hashes to what this one holds.
                        let (file, line) = last_at.clone();
                        return Err(ChainBreak {
                            file,
                            line,
                            reason: format!(
                                "record {seq} was edited: it no longer hashes to the prev that record {} holds (or that prev was edited)",
                                record.seq
                            ),
                        });
                    }
                    if record.prev != *hash {
                        return Err(broken(
                            number,
                            format!(
                                "record {} does not follow the record before it (hash mismatch): that one was edited, or records were inserted or deleted here",
                                record.seq
                            ),
                        ));
                    }
                    if Some(record.seq) != seq.checked_add(1) {
                        return Err(broken(
                            number,
                            format!(
                                "record {} follows record {seq}: records are missing or inserted",
                                record.seq
                            ),
                        ));
                    }
                }
            }
            if record.code_sha256 != sha256_hex(record.code.as_bytes()) {
                return Err(broken(
                    number,
                    format!(
                        "record {}: its code does not match its code_sha256: edited",
                        record.seq
                    ),
                ));
            }
            let hash = sha256_hex(&line);
            if let Some(anchor) = &anchor {
                if previous.is_none() && record.seq > anchor.base.seq {
                    return Err(broken(
                        number,
                        format!(
                            "record {} is the first, but the anchor ({named}) says the chain starts at record {}: {} deleted from the start (or give the older rotated files too, oldest first: FILE.2 FILE.1 FILE)",
                            record.seq,
                            anchor.base.seq,
                            missing(anchor.base.seq, record.seq - 1, false)
                        ),
                    ));
                }
                if record.seq == anchor.base.seq && record.prev != anchor.base.prev {
                    return Err(broken(
                        number,
                        format!(
                            "record {} is not the first record the anchor ({named}) names (its prev differs): it was edited",
                            record.seq
                        ),
                    ));
                }
                if record.seq == anchor.head.seq && hash != anchor.head.sha256 {
                    return Err(broken(
                        number,
                        format!(
                            "record {} is not the record the anchor ({named}) names as the last (the SHA-256 of its line differs): it was edited",
                            record.seq
                        ),
                    ));
                }
            }
            if expected_head.as_deref() == Some(hash.as_str()) {
                verified.expected_seq = Some(record.seq);
            }
            previous = Some((record.seq, hash));
            verified.records += 1;
            verified.last_seq = record.seq;
            last_at = (name.clone(), number);
        }
        end_at = (name.clone(), number + 1);
    }
    if let Some((_, hash)) = &previous {
        verified.head_sha256 = hash.clone();
    }
    if let Some(anchor) = anchor {
        let head = anchor.head.seq;
        if head > 0 && (verified.records == 0 || verified.last_seq < head) {
            let first = if verified.records == 0 {
                anchor.base.seq
            } else {
                verified.last_seq + 1
            };
            let reason = if verified.torn_tail {
                format!(
                    "record {first}'s line is torn (cut mid-line), but the anchor ({named}) says record {head} was written whole, so no crash did this: {} cut off",
                    missing(first, head, false)
                )
            } else {
                format!(
                    "{} missing from the end: the anchor ({named}) names record {head} as the last",
                    missing(first, head, true)
                )
            };
            return Err(ChainBreak {
                file: end_at.0,
                line: end_at.1,
                reason,
            });
        }
        verified.anchor = AnchorCheck::Matched {
            path: anchor_file.clone(),
            head_seq: head,
            past: verified.last_seq.saturating_sub(head),
        };
    }
    if let Some(expected) = &expected_head
        && verified.expected_seq.is_none()
    {
        let (file, line) = if verified.records == 0 {
            end_at
        } else {
            last_at
        };
        return Err(ChainBreak {
            file,
            line,
            reason: format!(
                "no record up to record {} (the last) hashes to the expected head {expected}: records were deleted from the end, or the chain was rewritten, since that head was taken",
                verified.last_seq
            ),
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("codemode-audit-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("audit.jsonl")
    }

    fn record(code: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            prev: String::new(),
            finished_ms: 0,
            duration_ms: 0,
            origin: Origin::default(),
            code_sha256: sha256_hex(code.as_bytes()),
            code: code.to_string(),
            calls: Vec::new(),
            scan: None,
            result_bytes: 0,
            log_bytes: 0,
            error_kind: None,
            error: None,
            error_at: None,
            flags: Vec::new(),
            cost: None,
        }
    }

    /// Appends `count` records to the log at `path` (one file each when `max_bytes` is 1).
    fn append(path: &Path, max_bytes: u64, count: usize) {
        let log = AuditLog::open(path, max_bytes).unwrap();
        for i in 0..count {
            log.append(&mut record(&format!("return {i};"))).unwrap();
        }
    }

    fn anchor_of(path: &Path) -> Anchor {
        anchor::read(&anchor_path(path)).unwrap().unwrap()
    }

    fn line_hash(path: &Path, line: usize) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        sha256_hex(text.lines().nth(line - 1).unwrap().as_bytes())
    }

    #[test]
    fn dropping_the_oldest_rotated_file_moves_the_base() {
        let path = scratch("base");
        // One record a file: records 1 and 2 go with the files dropped.
        append(&path, 1, KEEP_ROTATED as usize + 3);
        let oldest = numbered(&path, KEEP_ROTATED);
        let first: AuditRecord =
            serde_json::from_str(std::fs::read_to_string(&oldest).unwrap().trim_end()).unwrap();
        assert_eq!(first.seq, 3);
        let anchor = anchor_of(&path);
        assert_eq!(
            anchor.base,
            Base {
                seq: 3,
                prev: first.prev
            }
        );
        assert_eq!(anchor.head.seq, 12);
        assert_eq!(anchor.records, 10);

        let files = chain_files_of(&path);
        let verified = verify(&files).unwrap();
        assert_eq!((verified.first_seq, verified.last_seq), (3, 12));
        assert!(matches!(
            verified.anchor,
            AnchorCheck::Matched {
                head_seq: 12,
                past: 0,
                ..
            }
        ));

        // Without the oldest file kept, the start of the chain is missing.
        let broken = verify(&files[1..]).unwrap_err();
        assert_eq!(
            broken.file,
            numbered(&path, KEEP_ROTATED - 1).display().to_string()
        );
        assert_eq!(broken.line, 1);
        assert!(
            broken
                .reason
                .starts_with("record 4 is the first, but the anchor"),
            "{broken}"
        );
        assert!(
            broken
                .reason
                .contains("record 3 was deleted from the start"),
            "{broken}"
        );
    }

    #[test]
    fn a_crash_right_after_a_rotation_continues_from_the_rotated_file() {
        let path = scratch("rotated-crash");
        append(&path, u64::MAX, 2);
        // The live file was moved to FILE.1, its successor created, and then the crash.
        std::fs::rename(&path, numbered(&path, 1)).unwrap();
        std::fs::write(&path, "").unwrap();
        append(&path, u64::MAX, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let third: AuditRecord = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(third.seq, 3);
        assert_eq!(third.prev, line_hash(&numbered(&path, 1), 2));
        let verified = verify(&chain_files_of(&path)).unwrap();
        assert_eq!((verified.first_seq, verified.last_seq), (1, 3));
    }

    #[test]
    fn a_record_not_yet_anchored_is_anchored_at_the_next_start() {
        let path = scratch("window");
        append(&path, u64::MAX, 2);
        let before = std::fs::read(anchor_path(&path)).unwrap();
        append(&path, u64::MAX, 1);
        // The crash came after record 3's line was fsynced, before its anchor was written.
        std::fs::write(anchor_path(&path), before).unwrap();
        let verified = verify(std::slice::from_ref(&path)).unwrap();
        assert!(matches!(
            verified.anchor,
            AnchorCheck::Matched {
                head_seq: 2,
                past: 1,
                ..
            }
        ));

        let log = AuditLog::open(&path, u64::MAX).unwrap();
        assert_eq!(
            anchor_of(&path).head,
            Head {
                seq: 3,
                sha256: line_hash(&path, 3)
            }
        );
        log.append(&mut record("return 'after';")).unwrap();
        let verified = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!(verified.last_seq, 4);
        assert!(matches!(
            verified.anchor,
            AnchorCheck::Matched {
                head_seq: 4,
                past: 0,
                ..
            }
        ));
    }

    #[test]
    fn two_records_past_the_anchor_are_refused_at_start() {
        let path = scratch("stale");
        append(&path, u64::MAX, 1);
        let before = std::fs::read(anchor_path(&path)).unwrap();
        append(&path, u64::MAX, 2);
        std::fs::write(anchor_path(&path), before).unwrap();
        let refused = AuditLog::open(&path, u64::MAX).unwrap_err();
        assert!(
            matches!(
                &refused,
                AuditError::Refused {
                    seq: 3,
                    line: 3,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .contains("2 records past the last one the anchor"),
            "{refused}"
        );
    }

    #[test]
    fn an_anchor_that_is_not_one_is_refused() {
        let path = scratch("bad-anchor");
        append(&path, u64::MAX, 1);
        std::fs::write(anchor_path(&path), "{\"head\":").unwrap();
        let refused = AuditLog::open(&path, u64::MAX).unwrap_err();
        assert!(matches!(refused, AuditError::Anchor { .. }), "{refused}");
        let broken = verify(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(broken.file, anchor_path(&path).display().to_string());
        assert!(broken.reason.contains("not an audit anchor"), "{broken}");
    }

    #[test]
    fn a_log_without_an_anchor_is_anchored_at_its_kept_start_and_end() {
        let path = scratch("legacy");
        append(&path, 1, KEEP_ROTATED as usize + 2);
        std::fs::remove_file(anchor_path(&path)).unwrap();
        let verified = verify(&chain_files_of(&path)).unwrap();
        assert!(matches!(verified.anchor, AnchorCheck::Missing { .. }));

        drop(AuditLog::open(&path, 1).unwrap());
        let anchor = anchor_of(&path);
        assert_eq!(anchor.base.seq, 2);
        assert_eq!(
            anchor.head,
            Head {
                seq: 11,
                sha256: line_hash(&path, 1)
            }
        );
        let verified = verify(&chain_files_of(&path)).unwrap();
        assert!(matches!(
            verified.anchor,
            AnchorCheck::Matched { head_seq: 11, .. }
        ));
    }

    #[test]
    fn a_new_log_is_anchored_empty_and_its_deletion_is_found() {
        let path = scratch("empty");
        drop(AuditLog::open(&path, u64::MAX).unwrap());
        assert_eq!(
            anchor_of(&path),
            Anchor::new(
                Head {
                    seq: 0,
                    sha256: GENESIS.into()
                },
                Base::genesis()
            )
        );
        append(&path, u64::MAX, 2);
        std::fs::write(&path, "").unwrap();
        let broken = verify(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(broken.line, 1);
        assert!(
            broken
                .reason
                .starts_with("records 1 to 2 are missing from the end"),
            "{broken}"
        );
        let refused = AuditLog::open(&path, u64::MAX).unwrap_err();
        assert!(
            matches!(
                refused,
                AuditError::Refused {
                    seq: 1,
                    line: 1,
                    ..
                }
            ),
            "{refused}"
        );
    }
}
