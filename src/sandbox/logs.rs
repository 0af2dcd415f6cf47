//! Captured console output, bounded by the output cap.

use serde::{Deserialize, Serialize};

use super::Truncation;

/// A console method's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `console.debug`, `console.trace`
    Debug,
    /// `console.log`, `console.dir`, `console.table`
    Log,
    /// `console.info`
    Info,
    /// `console.warn`
    Warn,
    /// `console.error`, `console.assert`, errors thrown in timer callbacks
    Error,
}

impl LogLevel {
    /// The level's name, as console methods and the structured output spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Log => "log",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// Parses the level name the glue sends; unknown names are `log`.
    pub fn from_name(name: &str) -> Self {
        match name {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" => Self::Warn,
            "error" => Self::Error,
            _ => Self::Log,
        }
    }
}

/// One console call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogEntry {
    /// The console method's level.
    pub level: LogLevel,
    /// The formatted arguments, space-separated as a terminal would show them.
    pub message: String,
}

/// What one line costs beside its text: its share of the answer's framing (level, quotes,
/// separators). Charging it caps lines as well as bytes, so a flood of empty lines stops
/// at the cap like any other (at most `cap / LINE_COST` lines).
pub(crate) const LINE_COST: usize = 64;

/// Keeps console output in order until the cap, then counts what it drops.
#[derive(Debug)]
pub(crate) struct LogSink {
    entries: Vec<LogEntry>,
    cap: usize,
    /// Bytes of text kept.
    kept: usize,
    /// What the kept lines cost against the cap: their text and [`LINE_COST`] each.
    charged: usize,
    total: usize,
    dropped: usize,
}

impl LogSink {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: Vec::new(),
            cap,
            kept: 0,
            charged: 0,
            total: 0,
            dropped: 0,
        }
    }

    /// Keeps `message` as far as the cap allows; says whether a later line could still
    /// be kept (the glue stops formatting lines once it cannot).
    pub(crate) fn push(&mut self, level: LogLevel, message: &str) -> bool {
        self.total = self.total.saturating_add(message.len());
        let room = self.cap.saturating_sub(self.charged);
        if room <= LINE_COST {
            self.dropped += 1;
            return false;
        }
        let text_room = room - LINE_COST;
        let kept = if message.len() <= text_room {
            message
        } else {
            &message[..floor_char_boundary(message, text_room)]
        };
        self.kept += kept.len();
        self.charged += kept.len() + LINE_COST;
        self.entries.push(LogEntry {
            level,
            message: kept.to_string(),
        });
        self.cap.saturating_sub(self.charged) > LINE_COST
    }

    pub(crate) fn finish(self) -> (Vec<LogEntry>, Option<Truncation>) {
        let truncation = (self.total > self.kept || self.dropped > 0).then_some(Truncation {
            total_bytes: self.total,
            kept_bytes: self.kept,
            dropped_entries: self.dropped,
        });
        (self.entries, truncation)
    }
}

/// The largest index `<= at` that falls on a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_inside_an_entry_then_drops_whole_entries() {
        // Room for the first line and the first four bytes of the second.
        let mut sink = LogSink::new(2 * LINE_COST + 10);
        assert!(sink.push(LogLevel::Log, "12345"));
        assert!(!sink.push(LogLevel::Warn, "héllo world"));
        assert!(!sink.push(LogLevel::Log, "gone"));
        let (entries, cut) = sink.finish();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].message, "héll");
        let cut = cut.unwrap();
        assert_eq!(cut.kept_bytes, 10);
        assert_eq!(cut.dropped_entries, 1);
        assert_eq!(cut.total_bytes, 5 + 12 + 4);
    }

    #[test]
    fn empty_lines_count_against_the_cap() {
        let cap = 100 * LINE_COST;
        let mut sink = LogSink::new(cap);
        let mut room = true;
        for _ in 0..300_000 {
            room = sink.push(LogLevel::Log, "");
        }
        assert!(!room);
        let (entries, cut) = sink.finish();
        assert!(entries.len() < 100, "{} lines kept", entries.len());
        let cut = cut.expect("the flood is reported as cut");
        assert_eq!(cut.dropped_entries + entries.len(), 300_000);
    }
}
