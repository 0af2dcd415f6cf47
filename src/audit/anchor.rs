//! The anchor beside a log, `FILE.anchor`: where the chain must end (the last record's
//! seq and the SHA-256 of its line, the head) and where what is kept of it must start
//! (the seq and `prev` of the first kept record, the base). A hash chain alone cannot tell
//! that records were cut from either end; the anchor can, as long as it is not rewritten
//! together with the log, which is why `audit verify` also prints the head for keeping
//! elsewhere.

use std::{
    ffi::OsString,
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::GENESIS;

/// What `FILE.anchor` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The last record written (seq 0 and [`GENESIS`] before the first).
    pub head: Head,
    /// What the first record still kept must be.
    pub base: Base,
    /// Records from the base to the head.
    pub records: u64,
}

/// The last record of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its seq.
    pub seq: u64,
    /// SHA-256 (hex) of its line, without the newline.
    pub sha256: String,
}

/// The first record kept of a chain: seq 1 and [`GENESIS`] until rotation drops a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Its seq.
    pub seq: u64,
    /// Its `prev`.
    pub prev: String,
}

impl Base {
    /// The start of a chain.
    pub(super) fn genesis() -> Self {
        Self {
            seq: 1,
            prev: GENESIS.to_string(),
        }
    }
}

impl Anchor {
    pub(super) fn new(head: Head, base: Base) -> Self {
        Self {
            records: (head.seq + 1).saturating_sub(base.seq),
            head,
            base,
        }
    }

    /// Why this anchor cannot be one that [`super::AuditLog`] wrote.
    fn inconsistency(&self) -> Option<String> {
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.head.sha256) || !hex(&self.base.prev) {
            return Some("its hashes are not SHA-256 hex".into());
        }
        if self.head.seq == 0 && self.head.sha256 != GENESIS {
            return Some("its head is record 0, but its hash is not the genesis".into());
        }
        if self.base.seq == 0 || self.head.seq + 1 < self.base.seq {
            return Some(format!(
                "its base (record {}) is past its head (record {})",
                self.base.seq, self.head.seq
            ));
        }
        if self.records != self.head.seq + 1 - self.base.seq {
            return Some(format!(
                "it counts {} records from record {} to record {}",
                self.records, self.base.seq, self.head.seq
            ));
        }
        None
    }
}

/// The anchor file of the log at `log`: `FILE.anchor`.
pub fn anchor_path(log: &Path) -> PathBuf {
    let mut name = OsString::from(log.as_os_str());
    name.push(".anchor");
    PathBuf::from(name)
}

/// The anchor at `path`, `None` when there is no such file; `Err` says why it is not one.
pub(super) fn read(path: &Path) -> Result<Option<Anchor>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let anchor: Anchor =
        serde_json::from_slice(&bytes).map_err(|e| format!("not an audit anchor ({e})"))?;
    match anchor.inconsistency() {
        Some(why) => Err(format!("not a consistent audit anchor: {why}")),
        None => Ok(Some(anchor)),
    }
}

/// Replaces the anchor at `path` so that a crash leaves the old one or the new one whole.
pub(super) fn write(path: &Path, anchor: &Anchor) -> io::Result<()> {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut bytes = serde_json::to_vec(anchor).map_err(io::Error::other)?;
    bytes.push(b'\n');
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_directory(path)
}

/// Makes the rename (and the log's own rotations) durable: without it, a power loss
/// could bring back an older anchor, and the next start would refuse a sound log.
#[cfg(unix)]
fn sync_directory(path: &Path) -> io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()
}

/// Directories cannot be opened as files here; the rename is as durable as the platform
/// makes it.
#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> io::Result<()> {
    Ok(())
}
