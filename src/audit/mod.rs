//! The audit trail: one JSON line per execution (who asked, over what, the code and its
//! SHA-256, each tool call with its sizes and outcome, the error kind), each line holding
//! the SHA-256 of the line before it. Editing, inserting or deleting a record breaks the
//! chain, and [`verify`] (`codemode-mcp audit verify FILE...`) names the first break.
//! Each record is written whole and fsynced before the execution's answer goes out; a
//! crash mid-write leaves at most a torn last line, which is cut off at the next start
//! and ignored by verification. Past a size, the file is rotated to `FILE.1` (older ones
//! shift to `.2`, ...) and the chain goes on in the new file.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::executor::{CallRecord, Execution};

/// The `prev` of the first record of a chain.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rotated files kept beside the live one.
const KEEP_ROTATED: u32 = 9;

/// Who ran an execution, and over what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The MCP client, as `name/version`, when known.
    pub client: Option<String>,
    /// The session id (streamable HTTP, legacy SSE), when there is one.
    pub session: Option<String>,
    /// `stdio`, `http`, `sse`, `cli` (`codemode-mcp run`) or `library`.
    pub transport: String,
}

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
            decision: call.decision.to_string(),
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
    /// What looked wrong about this execution against recent history (see
    /// [`crate::oversight`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
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
        let (result_bytes, error_kind, error) = match &execution.outcome.result {
            Ok(value) => (value.json.len(), None, None),
            Err(error) => (
                0,
                Some(error.kind.as_str().to_string()),
                Some(error.message.clone()),
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
            flags: Vec::new(),
        }
    }
}

/// Why the audit log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, read or written.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The last record of an existing file is not a record of this format.
    #[error(
        "audit log {path}: its last record is not readable ({reason}); move the file away to start a new chain"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The append-only, hash-chained audit log of one server.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    state: Mutex<Chain>,
}

#[derive(Debug)]
struct Chain {
    file: File,
    size: u64,
    seq: u64,
    last_hash: String,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing its chain; rotates past
    /// `max_bytes`.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, AuditError> {
        let path = path.into();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io_error(&path))?;
        // A torn last line (a crash mid-write) is cut off: it was never acknowledged.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(
                "audit log {}: cutting off a torn last record ({} bytes) left by a crash",
                path.display(),
                text.len() - complete
            );
            file.set_len(complete as u64).map_err(io_error(&path))?;
            file.seek(SeekFrom::End(0)).map_err(io_error(&path))?;
        }
        let text = &text[..complete];
        let (seq, last_hash) = match text[..text.len().saturating_sub(1)]
            .rsplit(|&b| b == b'\n')
            .next()
            .filter(|line| !line.is_empty())
        {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let record: AuditRecord =
                    serde_json::from_slice(line).map_err(|e| AuditError::Unreadable {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                (record.seq, sha256_hex(line))
            }
        };
        Ok(Self {
            max_bytes: max_bytes.max(1),
            state: Mutex::new(Chain {
                file,
                size: complete as u64,
                seq,
                last_hash,
            }),
            path,
        })
    }

    /// The live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Chains `record` (its `seq` and `prev` are set here), appends it and fsyncs it.
    /// Blocking: call it off the async runtime's worker threads.
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
        Ok(())
    }

    /// The files of the chain, oldest first: the rotated ones still kept, then the live one.
    pub fn chain_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=KEEP_ROTATED)
            .rev()
            .map(|n| PathBuf::from(format!("{}.{n}", self.path.display())))
            .filter(|file| file.exists())
            .collect();
        files.push(self.path.clone());
        files
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
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(KEEP_ROTATED));
        for n in (1..KEEP_ROTATED).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1)).map_err(io_error(&self.path))?;
            }
        }
        std::fs::rename(&self.path, numbered(1)).map_err(io_error(&self.path))?;
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

/// Checks the chain through `files`, oldest first (`FILE.2 FILE.1 FILE`).
pub fn verify(files: &[PathBuf]) -> Result<Verified, ChainBreak> {
    let mut previous: Option<(u64, String)> = None;
    let mut verified = Verified {
        records: 0,
        first_seq: 0,
        last_seq: 0,
        torn_tail: false,
    };
    for (index, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let broken = |line: usize, reason: String| ChainBreak {
            file: name.clone(),
            line,
            reason,
        };
        let file = File::open(path).map_err(|e| broken(0, format!("cannot read: {e}")))?;
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
                    if record.prev != *hash {
                        return Err(broken(
                            number,
                            format!(
                                "record {} does not follow the record before it (hash mismatch): that one was edited, or records were inserted or deleted here",
                                record.seq
                            ),
                        ));
                    }
                    if record.seq != seq + 1 {
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
            previous = Some((record.seq, sha256_hex(&line)));
            verified.records += 1;
            verified.last_seq = record.seq;
        }
    }
    Ok(verified)
}
