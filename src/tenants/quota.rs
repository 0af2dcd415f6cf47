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
    /// Admissions so far, which pace the sweep of idle ledgers.
    admissions: AtomicU64,
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
            admissions: AtomicU64::new(0),
        })
    }

    /// Admits one execution of the principal whose windows are kept under `key` (its
    /// id) under `limits`, charging it to the executions quota and taking one of its
    /// concurrent slots; refused past any quota, in words that name it `shown`.
    pub fn admit(
        self: &Arc<Self>,
        key: &str,
        shown: &str,
        limits: &QuotaLimits,
    ) -> Result<Admission, QuotaRefusal> {
        let now = now_secs();
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_idle(&mut ledgers, now);
        let principal = shown;
        let ledger = ledgers.entry(key.to_string()).or_default();
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
        let counted = limits.get(Quota::ExecutionsPerMinute).is_some();
        if counted {
            add(ledger, Quota::ExecutionsPerMinute, now, 1.0);
        }
        ledger.running += 1;
        drop(ledgers);
        if counted {
            self.persist(key, &[(Quota::ExecutionsPerMinute, 1.0)], now);
        }
        let meter = Meter {
            quotas: self.clone(),
            key: key.to_string(),
            calls: limits.get(Quota::ToolCallsPerDay).cloned(),
            egress: limits.get(Quota::EgressBytesPerDay).cloned(),
            refused: Mutex::new(None),
        };
        Ok(Admission {
            quotas: self.clone(),
            principal: key.to_string(),
            counted: std::sync::atomic::AtomicBool::new(counted),
            meter: Arc::new(meter),
        })
    }

    /// Charges the CPU one execution of the principal under `key` used, once it ended,
    /// where `limits` has a CPU quota (calls and fetch bytes are charged as they happen,
    /// by the execution's [`Meter`]).
    pub fn charge_cpu(&self, key: &str, limits: &QuotaLimits, cpu: Duration) {
        if limits.get(Quota::CpuSecondsPerHour).is_some() && !cpu.is_zero() {
            self.charge(key, Quota::CpuSecondsPerHour, cpu.as_secs_f64());
        }
    }

    fn charge(&self, key: &str, quota: Quota, amount: f64) {
        let now = now_secs();
        {
            let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            add(
                ledgers.entry(key.to_string()).or_default(),
                quota,
                now,
                amount,
            );
        }
        self.persist(key, &[(quota, amount)], now);
    }

    /// What `key` has used of `quota` in its window, now.
    fn used(&self, key: &str, quota: Quota) -> f64 {
        let now = now_secs();
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ledger) = ledgers.get_mut(key) else {
            return 0.0;
        };
        let window = &mut ledger.windows[quota.index()];
        prune(window, quota, now);
        window.iter().map(|(_, amount)| amount).sum()
    }

    /// Takes `amount` of `quota` for `key` unless that would pass `limit`: checked and
    /// charged under one lock, so executions running at once share what is left.
    fn take(&self, key: &str, quota: Quota, limit: f64, amount: f64) -> bool {
        let now = now_secs();
        {
            let mut ledgers = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            let ledger = ledgers.entry(key.to_string()).or_default();
            let window = &mut ledger.windows[quota.index()];
            prune(window, quota, now);
            let used: f64 = window.iter().map(|(_, amount)| amount).sum();
            if used + amount > limit {
                return false;
            }
            add(ledger, quota, now, amount);
        }
        self.persist(key, &[(quota, amount)], now);
        true
    }

    /// Drops, now and then, the ledgers of principals with nothing running and nothing
    /// left in any window, and the rows on disk that left every window: a server that
    /// meets many principals does not keep them all.
    fn forget_idle(&self, ledgers: &mut HashMap<String, Ledger>, now: u64) {
        let sweeps = self.admissions.fetch_add(1, Ordering::Relaxed);
        if sweeps % 1024 != 1023 {
            return;
        }
        ledgers.retain(|_, ledger| {
            for quota in WINDOWED {
                prune(&mut ledger.windows[quota.index()], quota, now);
            }
            ledger.running > 0 || ledger.windows.iter().any(|w| !w.is_empty())
        });
        if let Some(store) = &self.store {
            let oldest = now.saturating_sub(86_400 + 1_440);
            let store = store.lock().unwrap_or_else(|e| e.into_inner());
            let _ = store.execute(
                "DELETE FROM quota_windows WHERE bucket < ?1",
                [i64::try_from(oldest).unwrap_or(0)],
            );
        }
    }

    fn persist(&self, principal: &str, amounts: &[(Quota, f64)], now: u64) {
        let Some(store) = &self.store else {
            return;
        };
        let store = store.lock().unwrap_or_else(|e| e.into_inner());
        for (quota, amount) in amounts.iter().filter(|(_, amount)| *amount != 0.0) {
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
    /// Whether it was counted against the executions quota (and not refunded yet).
    counted: std::sync::atomic::AtomicBool,
    meter: Arc<Meter>,
}

impl Admission {
    /// What meters the execution's calls and fetches (and those of the skills it calls).
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Gives back the execution it was counted as: nothing ran (the user is being asked
    /// first), and the retry that runs it is counted instead.
    pub fn refund(&self) {
        if self.counted.swap(false, Ordering::SeqCst) {
            self.quotas
                .charge(&self.principal, Quota::ExecutionsPerMinute, -1.0);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.quotas.release(&self.principal);
    }
}

/// Meters one execution's calls and fetches against its principal's daily quotas, live:
/// every execution of the principal running at once draws on the same windows.
#[derive(Debug)]
pub struct Meter {
    quotas: Arc<Quotas>,
    key: String,
    calls: Option<Limit>,
    egress: Option<Limit>,
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
        let Some(limit) = &self.calls else {
            return Ok(());
        };
        if self
            .quotas
            .take(&self.key, Quota::ToolCallsPerDay, limit.value, 1.0)
        {
            return Ok(());
        }
        self.refuse(Quota::ToolCallsPerDay);
        Err(format!(
            "the principal's quota of {} per 24 hours ({}) is used up; do the rest in a later execution, once the window frees up",
            Quota::ToolCallsPerDay.amount(limit.value),
            limit.key
        ))
    }

    /// Whether a fetch may go out; past the daily egress quota, why not.
    pub fn fetch_allowed(&self) -> Result<(), String> {
        let Some(limit) = &self.egress else {
            return Ok(());
        };
        if self.quotas.used(&self.key, Quota::EgressBytesPerDay) < limit.value {
            return Ok(());
        }
        self.refuse(Quota::EgressBytesPerDay);
        Err(format!(
            "fetch was not made: the principal's quota of {} per 24 hours ({}) is used up; fetch again in a later execution, once the window frees up",
            Quota::EgressBytesPerDay.amount(limit.value),
            limit.key
        ))
    }

    /// Charges the bytes of one fetch's request and response.
    pub fn add_egress(&self, bytes: u64) {
        if self.egress.is_some() && bytes > 0 {
            self.quotas
                .charge(&self.key, Quota::EgressBytesPerDay, bytes as f64);
        }
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
        let first = quotas.admit("alice", "alice", &limits).unwrap();
        let _second = quotas.admit("alice", "alice", &limits).unwrap();
        // Bob's windows are his own.
        let _bob = quotas.admit("bob", "bob", &limits).unwrap();
        let refused = quotas.admit("alice", "alice", &limits).unwrap_err();
        assert_eq!(
            refused.quota,
            Quota::ConcurrentExecutions,
            "{}",
            refused.message
        );
        drop(first);
        let refused = quotas.admit("alice", "alice", &limits).unwrap_err();
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
        quotas.charge_cpu("bob", &limits, Duration::from_millis(1500));
        let refused = quotas.admit("bob", "bob", &limits).unwrap_err();
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
        // Two executions running at once share what is left of the day.
        let one = quotas.admit("carol", "carol", &merged).unwrap();
        let two = quotas.admit("carol", "carol", &merged).unwrap();
        for i in 0..5 {
            let admitted = if i % 2 == 0 { &one } else { &two };
            admitted.meter().take_call().unwrap();
        }
        assert!(one.meter().take_call().is_err() && two.meter().take_call().is_err());
        assert_eq!(two.meter().refused(), Some(Quota::ToolCallsPerDay));
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
            drop(quotas.admit("dave", "dave", &limits).unwrap());
            let erin = quotas.admit("erin", "erin", &limits).unwrap();
            erin.meter().add_egress(500);
            // A refunded execution (nothing ran) is not counted.
            erin.refund();
        }
        let quotas = Arc::new(Quotas::open(&path).unwrap());
        assert_eq!(
            quotas.admit("dave", "dave", &limits).unwrap_err().quota,
            Quota::ExecutionsPerMinute
        );
        let refused = quotas.admit("erin", "erin", &limits).unwrap_err();
        assert_eq!(
            refused.quota,
            Quota::EgressBytesPerDay,
            "{}",
            refused.message
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
