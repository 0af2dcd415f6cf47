//! Quotas: what each principal may use over sliding windows (executions per minute, CPU
//! seconds per hour, tool calls and egress bytes per day) and at once (concurrent
//! executions). An execution past one is refused before anything of it runs; a call or
//! fetch past the daily ones is refused at the call. The windows are buckets (sixty per
//! window), kept in memory and, where `codemode.quotas.path` is set, in SQLite, so that a
//! restart does not reset them.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::config::QuotaSettings;

/// One quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// Executions started in the last minute.
    ExecutionsPerMinute,
    /// CPU seconds of the executions of the last hour.
    CpuSecondsPerHour,
    /// Tool calls made in the last 24 hours.
    ToolCallsPerDay,
    /// Bytes of fetch requests and responses in the last 24 hours.
    EgressBytesPerDay,
    /// Executions running at once.
    ConcurrentExecutions,
}

/// The windowed quotas, in the order a principal's windows are kept.
const WINDOWED: [Quota; 4] = [
    Quota::ExecutionsPerMinute,
    Quota::CpuSecondsPerHour,
    Quota::ToolCallsPerDay,
    Quota::EgressBytesPerDay,
];

/// Buckets per window.
const BUCKETS: u64 = 60;

impl Quota {
    /// Its key in `codemode.quotas`, and its label in `/metrics`.
    pub fn key(self) -> &'static str {
        match self {
            Self::ExecutionsPerMinute => "executionsPerMinute",
            Self::CpuSecondsPerHour => "cpuSecondsPerHour",
            Self::ToolCallsPerDay => "toolCallsPerDay",
            Self::EgressBytesPerDay => "egressBytesPerDay",
            Self::ConcurrentExecutions => "concurrentExecutions",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::ExecutionsPerMinute => 0,
            Self::CpuSecondsPerHour => 1,
            Self::ToolCallsPerDay => 2,
            Self::EgressBytesPerDay => 3,
            Self::ConcurrentExecutions => 4,
        }
    }

    fn window_secs(self) -> u64 {
        match self {
            Self::ExecutionsPerMinute => 60,
            Self::CpuSecondsPerHour => 3_600,
            Self::ToolCallsPerDay | Self::EgressBytesPerDay | Self::ConcurrentExecutions => 86_400,
        }
    }

    fn window_name(self) -> &'static str {
        match self {
            Self::ExecutionsPerMinute => "minute",
            Self::CpuSecondsPerHour => "hour",
            _ => "24 hours",
        }
    }

    fn bucket_secs(self) -> u64 {
        self.window_secs() / BUCKETS
    }

    /// How an amount of it reads.
    fn amount(self, amount: f64) -> String {
        match self {
            Self::CpuSecondsPerHour => format!("{amount:.3} CPU seconds"),
            Self::EgressBytesPerDay => format!("{} bytes of fetch traffic", amount as u64),
            Self::ExecutionsPerMinute | Self::ConcurrentExecutions => {
                format!("{} executions", amount as u64)
            }
            Self::ToolCallsPerDay => format!("{} tool calls", amount as u64),
        }
    }
}

/// One quota's value, and the config key it comes from.
#[derive(Debug, Clone)]
struct Limit {
    value: f64,
    key: String,
}

/// The quotas that apply to one principal: the lowest of `codemode.quotas` and of the
/// overlays that match it.
#[derive(Debug, Clone, Default)]
pub struct QuotaLimits {
    limits: [Option<Limit>; 5],
}

impl QuotaLimits {
    /// The quotas `settings` set, found at config key `key`.
    pub fn of(settings: &QuotaSettings, key: &str) -> Self {
        let mut limits = Self::default();
        let values = [
            (
                Quota::ExecutionsPerMinute,
                settings.executions_per_minute.map(|v| v as f64),
            ),
            (Quota::CpuSecondsPerHour, settings.cpu_seconds_per_hour),
            (
                Quota::ToolCallsPerDay,
                settings.tool_calls_per_day.map(|v| v as f64),
            ),
            (
                Quota::EgressBytesPerDay,
                settings.egress_bytes_per_day.map(|v| v as f64),
            ),
            (
                Quota::ConcurrentExecutions,
                settings.concurrent_executions.map(|v| v as f64),
            ),
        ];
        for (quota, value) in values {
            limits.limits[quota.index()] = value.map(|value| Limit {
                value,
                key: format!("{key}.{}", quota.key()),
            });
        }
        limits
    }

    /// Each quota at the lower of the two.
    pub fn lowest(mut self, other: &QuotaLimits) -> Self {
        for (mine, theirs) in self.limits.iter_mut().zip(&other.limits) {
            if let Some(theirs) = theirs
                && mine.as_ref().is_none_or(|m| theirs.value < m.value)
            {
                *mine = Some(theirs.clone());
            }
        }
        self
    }

    /// Whether no quota applies.
    pub fn is_empty(&self) -> bool {
        self.limits.iter().all(Option::is_none)
    }

    fn get(&self, quota: Quota) -> Option<&Limit> {
        self.limits[quota.index()].as_ref()
    }
}

/// Why an execution was refused: which quota, and the message the model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaRefusal {
    /// The quota that is used up.
    pub quota: Quota,
    /// What is used up, its window, and when it frees up.
    pub message: String,
}

/// The quota store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("codemode.quotas.path {path}: {source}")]
pub struct QuotaError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// One principal's windows, and its executions running now.
#[derive(Debug, Default)]
struct Ledger {
    windows: [VecDeque<(u64, f64)>; 4],
    running: u64,
}

/// Every principal's ledger.
#[derive(Debug, Default)]
pub struct Quotas {
    ledgers: Mutex<HashMap<String, Ledger>>,
    store: Option<Mutex<rusqlite::Connection>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Quotas {
    /// Windows in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Windows kept in the SQLite database at `path` (created if missing), read back as
    /// they were.
    pub fn open(path: &Path) -> Result<Self, QuotaError> {
        let error = |source| QuotaError {
            path: path.to_path_buf(),
            source,
        };
        let connection = rusqlite::Connection::open(path).map_err(error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS quota_windows (
                     principal TEXT NOT NULL,
                     quota TEXT NOT NULL,
                     bucket INTEGER NOT NULL,
                     amount REAL NOT NULL,
                     PRIMARY KEY (principal, quota, bucket)
                 );",
            )
            .map_err(error)?;
        let oldest = now_secs().saturating_sub(86_400 + 1_440);
        connection
            .execute(
                "DELETE FROM quota_windows WHERE bucket < ?1",
                [i64::try_from(oldest).unwrap_or(0)],
            )
            .map_err(error)?;
        let mut ledgers: HashMap<String, Ledger> = HashMap::new();
        {
            let mut rows = connection
                .prepare(
                    "SELECT principal, quota, bucket, amount FROM quota_windows ORDER BY bucket",
                )
                .map_err(error)?;
            let found = rows
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, f64>(3)?,
                    ))
                })
                .map_err(error)?;
            for row in found {
                let (principal, quota, bucket, amount) = row.map_err(error)?;
                if let Some(quota) = WINDOWED.iter().find(|q| q.key() == quota) {
                    ledgers.entry(principal).or_default().windows[quota.index()]
                        .push_back((u64::try_from(bucket).unwrap_or(0), amount));
                }
            }
        }
        Ok(Self {
            ledgers: Mutex::new(ledgers),
            store: Some(Mutex::new(connection)),
        })
    }

    /// Admits one execution of `principal` under `limits`, charging it to the executions
    /// quota and taking one of its concurrent slots; refused past any quota.
    pub fn admit(
        self: &Arc<Self>,
        principal: &str,
        limits: &QuotaLimits,
    ) -> Result<Admission, QuotaRefusal> {
        let now = now_secs();
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let ledger = ledgers.entry(principal.to_string()).or_default();
        if let Some(limit) = limits.get(Quota::ConcurrentExecutions)
            && ledger.running as f64 >= limit.value
        {
            return Err(QuotaRefusal {
                quota: Quota::ConcurrentExecutions,
                message: format!(
                    "nothing ran: {principal} already runs {} at once, its quota ({}); one frees up when one of them ends. Wait for it, or do more per execution",
                    Quota::ConcurrentExecutions.amount(limit.value),
                    limit.key
                ),
            });
        }
        for quota in WINDOWED {
            let Some(limit) = limits.get(quota) else {
                continue;
            };
            let window = &mut ledger.windows[quota.index()];
            prune(window, quota, now);
            let used: f64 = window.iter().map(|(_, amount)| amount).sum();
            if used >= limit.value {
                let frees_in = frees_in(window, quota, now, used, limit.value);
                return Err(QuotaRefusal {
                    quota,
                    message: format!(
                        "nothing ran: {principal} has used its quota of {} per {} ({}): {} in the last {}; it frees up in {}. Run the program again then, or do more per execution",
                        quota.amount(limit.value),
                        quota.window_name(),
                        limit.key,
                        quota.amount(used),
                        quota.window_name(),
                        human_secs(frees_in)
                    ),
                });
            }
        }
        let left = |quota: Quota| {
            limits.get(quota).map(|limit| {
                let used: f64 = ledger.windows[quota.index()].iter().map(|(_, a)| a).sum();
                ((limit.value - used).max(0.0) as u64, limit.key.clone())
            })
        };
        let meter = Meter {
            calls_left: left(Quota::ToolCallsPerDay),
            egress_left: left(Quota::EgressBytesPerDay),
            calls: AtomicU64::new(0),
            egress: AtomicU64::new(0),
            refused: Mutex::new(None),
        };
        if limits.get(Quota::ExecutionsPerMinute).is_some() {
            add(ledger, Quota::ExecutionsPerMinute, now, 1.0);
        }
        ledger.running += 1;
        drop(ledgers);
        self.persist(principal, &[(Quota::ExecutionsPerMinute, 1.0)], now);
        Ok(Admission {
            quotas: self.clone(),
            principal: principal.to_string(),
            meter: Arc::new(meter),
        })
    }

    /// Charges what one execution of `principal` used once it ended.
    pub fn charge(&self, principal: &str, cpu: Duration, tool_calls: u64, egress_bytes: u64) {
        let now = now_secs();
        let amounts = [
            (Quota::CpuSecondsPerHour, cpu.as_secs_f64()),
            (Quota::ToolCallsPerDay, tool_calls as f64),
            (Quota::EgressBytesPerDay, egress_bytes as f64),
        ];
        {
            let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            let ledger = ledgers.entry(principal.to_string()).or_default();
            for (quota, amount) in amounts {
                if amount > 0.0 {
                    add(ledger, quota, now, amount);
                }
            }
        }
        self.persist(principal, &amounts, now);
    }

    fn persist(&self, principal: &str, amounts: &[(Quota, f64)], now: u64) {
        let Some(store) = &self.store else {
            return;
        };
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        for (quota, amount) in amounts.iter().filter(|(_, amount)| *amount > 0.0) {
            let bucket = now - now % quota.bucket_secs();
            let written = store.execute(
                "INSERT INTO quota_windows (principal, quota, bucket, amount) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (principal, quota, bucket) DO UPDATE SET amount = amount + excluded.amount",
                rusqlite::params![principal, quota.key(), i64::try_from(bucket).unwrap_or(0), amount],
            );
            if let Err(err) = written {
                tracing::warn!(
                    "quota window of {principal} not kept on disk ({err}); it is counted in memory"
                );
            }
        }
    }

    fn release(&self, principal: &str) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ledger) = ledgers.get_mut(principal) {
            ledger.running = ledger.running.saturating_sub(1);
        }
    }
}

fn add(ledger: &mut Ledger, quota: Quota, now: u64, amount: f64) {
    let window = &mut ledger.windows[quota.index()];
    prune(window, quota, now);
    let bucket = now - now % quota.bucket_secs();
    match window.back_mut() {
        Some((last, total)) if *last == bucket => *total += amount,
        _ => window.push_back((bucket, amount)),
    }
}

/// Drops the buckets that have left the window.
fn prune(window: &mut VecDeque<(u64, f64)>, quota: Quota, now: u64) {
    while let Some((bucket, _)) = window.front() {
        if bucket + quota.bucket_secs() + quota.window_secs() <= now {
            window.pop_front();
        } else {
            break;
        }
    }
}

/// How long until enough of the oldest buckets leave the window for `used` to drop
/// below `limit`.
fn frees_in(window: &VecDeque<(u64, f64)>, quota: Quota, now: u64, used: f64, limit: f64) -> u64 {
    let mut left = used;
    for (bucket, amount) in window {
        left -= amount;
        if left < limit {
            return (bucket + quota.bucket_secs() + quota.window_secs()).saturating_sub(now);
        }
    }
    0
}

fn human_secs(secs: u64) -> String {
    match secs {
        0..=120 => format!("{secs} s"),
        121..=7_200 => format!("{} min", secs.div_ceil(60)),
        _ => format!("{} h", secs.div_ceil(3_600)),
    }
}

/// One admitted execution: it holds a concurrent slot until dropped, and meters its calls
/// and fetches against the daily quotas.
#[derive(Debug)]
pub struct Admission {
    quotas: Arc<Quotas>,
    principal: String,
    meter: Arc<Meter>,
}

impl Admission {
    /// What meters the execution's calls and fetches.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.quotas.release(&self.principal);
    }
}

/// An execution's share of its principal's daily quotas, as it was when it was admitted.
#[derive(Debug)]
pub struct Meter {
    /// Tool calls left today, and the key of the quota.
    calls_left: Option<(u64, String)>,
    egress_left: Option<(u64, String)>,
    calls: AtomicU64,
    egress: AtomicU64,
    /// The quota a call or fetch was refused for, once one was.
    refused: Mutex<Option<Quota>>,
}

impl Meter {
    /// The quota a call or fetch of the execution was refused for, if any was.
    pub fn refused(&self) -> Option<Quota> {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refuse(&self, quota: Quota) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(quota);
    }

    /// Counts one tool call about to go out; past the daily quota, why not.
    pub fn take_call(&self) -> Result<(), String> {
        let Some((left, key)) = &self.calls_left else {
            return Ok(());
        };
        if self.calls.fetch_add(1, Ordering::SeqCst) >= *left {
            self.refuse(Quota::ToolCallsPerDay);
            return Err(format!(
                "the principal's quota of tool calls per 24 hours ({key}) is used up; do the rest in a later execution, once the window frees up"
            ));
        }
        Ok(())
    }

    /// Whether a fetch may go out; past the daily egress quota, why not.
    pub fn fetch_allowed(&self) -> Result<(), String> {
        let Some((left, key)) = &self.egress_left else {
            return Ok(());
        };
        if self.egress.load(Ordering::SeqCst) >= *left {
            self.refuse(Quota::EgressBytesPerDay);
            return Err(format!(
                "fetch was not made: the principal's quota of fetch bytes per 24 hours ({key}) is used up; fetch again in a later execution, once the window frees up"
            ));
        }
        Ok(())
    }

    /// Counts the bytes of one fetch's request and response.
    pub fn add_egress(&self, bytes: u64) {
        self.egress.fetch_add(bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: serde_json::Value) -> QuotaLimits {
        let settings: QuotaSettings = serde_json::from_value(json).unwrap();
        QuotaLimits::of(&settings, "codemode.quotas")
    }

    #[test]
    fn each_quota_refuses_once_used_and_says_when_it_frees_up() {
        let quotas = Arc::new(Quotas::in_memory());
        let limits = limits(serde_json::json!({
            "executionsPerMinute": 2, "concurrentExecutions": 2, "cpuSecondsPerHour": 1.0
        }));
        let first = quotas.admit("alice", &limits).unwrap();
        let _second = quotas.admit("alice", &limits).unwrap();
        // Bob's windows are his own.
        let _bob = quotas.admit("bob", &limits).unwrap();
        let refused = quotas.admit("alice", &limits).unwrap_err();
        assert_eq!(
            refused.quota,
            Quota::ConcurrentExecutions,
            "{}",
            refused.message
        );
        drop(first);
        let refused = quotas.admit("alice", &limits).unwrap_err();
        assert_eq!(refused.quota, Quota::ExecutionsPerMinute);
        assert!(
            refused
                .message
                .contains("codemode.quotas.executionsPerMinute")
                && refused.message.contains("per minute")
                && refused.message.contains("it frees up in "),
            "{}",
            refused.message
        );
        quotas.charge("bob", Duration::from_millis(1500), 0, 0);
        let refused = quotas.admit("bob", &limits).unwrap_err();
        assert_eq!(
            refused.quota,
            Quota::CpuSecondsPerHour,
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("1.500 CPU seconds"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn the_lowest_limit_wins_and_names_its_key() {
        let low = QuotaLimits::of(
            &serde_json::from_value(serde_json::json!({"toolCallsPerDay": 5})).unwrap(),
            "codemode.tenants[0].quotas",
        );
        let merged = limits(serde_json::json!({"toolCallsPerDay": 50})).lowest(&low);
        let limit = merged.get(Quota::ToolCallsPerDay).unwrap();
        assert_eq!(
            (limit.value, limit.key.as_str()),
            (5.0, "codemode.tenants[0].quotas.toolCallsPerDay")
        );
        let quotas = Arc::new(Quotas::in_memory());
        let admitted = quotas.admit("carol", &merged).unwrap();
        for _ in 0..5 {
            admitted.meter().take_call().unwrap();
        }
        assert!(admitted.meter().take_call().is_err());
    }

    #[test]
    fn windows_kept_on_disk_outlive_the_process_that_counted_them() {
        let dir = std::env::temp_dir().join(format!("codemode-quota-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("quotas.sqlite");
        let limits =
            limits(serde_json::json!({"executionsPerMinute": 1, "egressBytesPerDay": 100}));
        {
            let quotas = Arc::new(Quotas::open(&path).unwrap());
            drop(quotas.admit("dave", &limits).unwrap());
            quotas.charge("erin", Duration::ZERO, 0, 500);
        }
        let quotas = Arc::new(Quotas::open(&path).unwrap());
        assert_eq!(
            quotas.admit("dave", &limits).unwrap_err().quota,
            Quota::ExecutionsPerMinute
        );
        assert_eq!(
            quotas.admit("erin", &limits).unwrap_err().quota,
            Quota::EgressBytesPerDay
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
