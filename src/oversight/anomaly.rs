//! Anomaly flags: patterns in recent history that an operator should look at, computed
//! per session as each execution ends and written to its audit record, the metrics and
//! the log. None of them stops anything: they point a person at what to read.
//!
//! - `rate`: a session runs far more executions than its own norm.
//! - `limit-hits`: a session keeps hitting limits (timeout, memory, budget, busy, quota).
//! - `repeat`: the same program resubmitted in a tight loop (the recursive-agent pattern).
//! - `denied-burst`: a burst of calls the policy refused (or programs it stopped).
//! - `new-egress-host`: a fetch to a host no earlier execution fetched from.
//! - `cpu-spike`: an execution that used many times its principal's usual CPU (the median
//!   of its last executions: each principal is its own baseline).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    audit::{AuditRecord, Flag},
    config::AnomalySettings,
    record::Decision,
};

/// Past this many tracked sessions, the quietest are forgotten.
const MAX_SESSIONS: usize = 4096;
/// Past this many remembered executions, a session's oldest are forgotten: with the
/// session cap (and ~32 bytes an execution) the history stays within tens of MiB.
const MAX_EVENTS: usize = 2_000;
/// How far back a session's norm looks.
const NORM_SPAN: Duration = Duration::from_secs(600);

/// Whether a recorded decision is the policy's refusal (budgets and bad arguments are not).
fn denied(decision: &str) -> bool {
    Decision::parse(decision).is_some_and(Decision::is_policy_refusal)
}

/// Whether a recorded decision refused the call.
fn refused(decision: &str) -> bool {
    Decision::parse(decision).is_some_and(Decision::is_refusal)
}

/// Error kinds that mean a limit was hit.
const LIMIT_KINDS: [&str; 5] = ["timeout", "memory", "budget", "busy", "quota"];

/// The anomaly detector of one server.
#[derive(Debug)]
pub struct Anomalies {
    settings: AnomalySettings,
    sessions: Mutex<HashMap<String, History>>,
    hosts: Mutex<HashSet<String>>,
    /// Each principal's recent CPU per execution, in microseconds, newest last.
    cpu: Mutex<HashMap<String, VecDeque<u64>>>,
}

/// Executions of a principal its CPU baseline remembers.
const CPU_SAMPLES: usize = 200;

#[derive(Debug)]
struct History {
    first: Instant,
    events: VecDeque<Event>,
    /// When each flag was last raised, so one burst raises it once per window.
    raised: HashMap<&'static str, Instant>,
}

#[derive(Debug)]
struct Event {
    at: Instant,
    /// The first 64 bits of the code's SHA-256.
    code: u64,
    limit_hit: bool,
    denied: u32,
}

impl Anomalies {
    /// A detector with `settings`, no history.
    pub fn new(settings: AnomalySettings) -> Self {
        Self {
            settings,
            sessions: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashSet::new()),
            cpu: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers the hosts `records` fetched from (an existing audit log), so they are not
    /// new.
    pub fn seen_hosts<'a>(&self, records: impl IntoIterator<Item = &'a AuditRecord>) {
        if let Ok(mut hosts) = self.hosts.lock() {
            hosts.extend(records.into_iter().flat_map(fetch_hosts));
        }
    }

    /// The flags `record` raises, now.
    pub fn observe(&self, record: &AuditRecord) -> Vec<Flag> {
        self.observe_at(record, Instant::now())
    }

    /// The flags `record` raises at `now`, and remembers it.
    pub fn observe_at(&self, record: &AuditRecord, now: Instant) -> Vec<Flag> {
        let mut flags = Vec::new();
        let event = Event {
            at: now,
            code: record
                .code_sha256
                .get(..16)
                .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
                .unwrap_or_default(),
            limit_hit: record
                .error_kind
                .as_deref()
                .is_some_and(|kind| LIMIT_KINDS.contains(&kind)),
            denied: record
                .calls
                .iter()
                .filter(|call| denied(&call.decision))
                .count() as u32
                + u32::from(record.error_kind.as_deref() == Some("policy")),
        };
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                forget_quietest(&mut sessions);
            }
            let history = sessions
                .entry(session_key(record))
                .or_insert_with(|| History {
                    first: now,
                    events: VecDeque::new(),
                    raised: HashMap::new(),
                });
            history.events.push_back(event);
            let keep = NORM_SPAN.max(self.settings.longest_window());
            while history.events.len() > MAX_EVENTS
                || history
                    .events
                    .front()
                    .is_some_and(|e| now.duration_since(e.at) > keep)
            {
                history.events.pop_front();
            }
            self.rate(history, now, &mut flags);
            self.counts(history, now, &mut flags);
        }
        self.cpu_spike(record, &mut flags);
        if self.settings.new_egress_hosts
            && let Ok(mut hosts) = self.hosts.lock()
        {
            for (host, allowed) in fetches(record) {
                if hosts.insert(host.clone()) {
                    flags.push(Flag {
                        flag: "new-egress-host".into(),
                        detail: format!(
                            "the first fetch to {host} ({}); no earlier execution fetched from it",
                            if allowed {
                                "allowed by the egress rules"
                            } else {
                                "refused"
                            }
                        ),
                    });
                }
            }
        }
        flags
    }

    /// `cpu-spike`: this execution's CPU against the median of its principal's last ones.
    fn cpu_spike(&self, record: &AuditRecord, flags: &mut Vec<Flag>) {
        let rule = self.settings.cpu;
        let Some(cpu_us) = record.cost.as_ref().and_then(|c| c.cpu_us) else {
            return;
        };
        if rule.samples == 0 {
            return;
        }
        let principal = record.origin.principal.as_deref().unwrap_or("-");
        let Ok(mut baselines) = self.cpu.lock() else {
            return;
        };
        if baselines.len() >= MAX_SESSIONS && !baselines.contains_key(principal) {
            // The principal with the fewest samples is the least of a baseline to lose.
            let fewest = baselines
                .iter()
                .min_by_key(|(_, samples)| samples.len())
                .map(|(key, _)| key.clone());
            if let Some(key) = fewest {
                baselines.remove(&key);
            }
        }
        let samples = baselines.entry(principal.to_string()).or_default();
        if samples.len() >= rule.samples as usize {
            let mut sorted: Vec<u64> = samples.iter().copied().collect();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2].max(1);
            let ratio = cpu_us as f64 / median as f64;
            if ratio >= rule.factor && cpu_us >= rule.minimum_ms.saturating_mul(1_000) {
                flags.push(Flag {
                    flag: "cpu-spike".into(),
                    detail: format!(
                        "used {:.1} ms of CPU, {ratio:.1}x {principal}'s usual {:.1} ms (the median of its last {} executions)",
                        cpu_us as f64 / 1000.0,
                        median as f64 / 1000.0,
                        samples.len()
                    ),
                });
            }
        }
        samples.push_back(cpu_us);
        if samples.len() > CPU_SAMPLES {
            samples.pop_front();
        }
    }

    fn rate(&self, history: &mut History, now: Instant, flags: &mut Vec<Flag>) {
        let rule = &self.settings.rate;
        if rule.minimum == 0 {
            return;
        }
        let window = Duration::from_secs(rule.window_secs);
        let recent = history
            .events
            .iter()
            .filter(|e| now.duration_since(e.at) < window)
            .count();
        if recent < rule.minimum as usize {
            return;
        }
        // The norm: executions per window over the observed time before this window.
        let observed_from = history.first.max(now.checked_sub(NORM_SPAN).unwrap_or(now));
        let before = now.duration_since(observed_from).saturating_sub(window);
        let older = history.events.len() - recent;
        let (norm, over) = if before >= window {
            let norm = older as f64 / (before.as_secs_f64() / window.as_secs_f64());
            (
                norm,
                format!(
                    "this session's norm is {norm:.1} per {} s over the {} s before",
                    rule.window_secs,
                    before.as_secs()
                ),
            )
        } else {
            (
                0.0,
                format!(
                    "the session has no history to compare with ({} s old)",
                    now.duration_since(history.first).as_secs()
                ),
            )
        };
        if recent as f64 > rule.factor * norm {
            raise(
                history,
                now,
                "rate",
                window,
                format!(
                    "{recent} executions in the last {} s; {over}",
                    rule.window_secs
                ),
                flags,
            );
        }
    }

    fn counts(&self, history: &mut History, now: Instant, flags: &mut Vec<Flag>) {
        let Some(this) = history.events.back() else {
            return;
        };
        let within = |secs: u64| {
            let window = Duration::from_secs(secs);
            history
                .events
                .iter()
                .filter(move |e| now.duration_since(e.at) < window)
        };
        let (limits, repeats, denied) = (
            &self.settings.limit_hits,
            &self.settings.repeats,
            &self.settings.denied,
        );
        let hits = (limits.count > 0 && this.limit_hit)
            .then(|| within(limits.window_secs).filter(|e| e.limit_hit).count())
            .filter(|hits| *hits >= limits.count as usize);
        let same = (repeats.count > 0)
            .then(|| {
                within(repeats.window_secs)
                    .filter(|e| e.code == this.code)
                    .count()
            })
            .filter(|same| *same >= repeats.count as usize);
        let refused = (denied.count > 0 && this.denied > 0)
            .then(|| within(denied.window_secs).map(|e| e.denied).sum::<u32>())
            .filter(|refused| *refused >= denied.count);
        let code = format!("{:016x}", this.code);
        let raised = [
            hits.map(|hits| {
                (
                    "limit-hits",
                    limits.window_secs,
                    format!(
                        "{hits} executions of this session hit a limit (timeout, memory, budget or busy) in the last {} s",
                        limits.window_secs
                    ),
                )
            }),
            same.map(|same| {
                (
                    "repeat",
                    repeats.window_secs,
                    format!(
                        "the same program (sha256 {code}...) ran {same} times in the last {} s: an agent in a loop?",
                        repeats.window_secs
                    ),
                )
            }),
            refused.map(|refused| {
                (
                    "denied-burst",
                    denied.window_secs,
                    format!(
                        "{refused} calls or programs of this session refused by the policy in the last {} s",
                        denied.window_secs
                    ),
                )
            }),
        ];
        for (flag, window_secs, detail) in raised.into_iter().flatten() {
            raise(
                history,
                now,
                flag,
                Duration::from_secs(window_secs),
                detail,
                flags,
            );
        }
    }
}

/// Raises `flag` unless it was raised for this session within `window`.
fn raise(
    history: &mut History,
    now: Instant,
    flag: &'static str,
    window: Duration,
    detail: String,
    flags: &mut Vec<Flag>,
) {
    if history
        .raised
        .get(flag)
        .is_some_and(|at| now.duration_since(*at) < window)
    {
        return;
    }
    history.raised.insert(flag, now);
    flags.push(Flag {
        flag: flag.into(),
        detail,
    });
}

/// Sessions are told apart by their id (HTTP); stdio and library runs have one per client.
fn session_key(record: &AuditRecord) -> String {
    match &record.origin.session {
        Some(session) => format!("session {session}"),
        None => format!(
            "{} {} {}",
            record.origin.principal.as_deref().unwrap_or("-"),
            record.origin.transport,
            record.origin.client.as_deref().unwrap_or("-")
        ),
    }
}

fn forget_quietest(sessions: &mut HashMap<String, History>) {
    let quietest = sessions
        .iter()
        .min_by_key(|(_, h)| h.events.back().map(|e| e.at))
        .map(|(key, _)| key.clone());
    if let Some(key) = quietest {
        sessions.remove(&key);
    }
}

/// The hosts of a record's fetches, with whether each was allowed.
fn fetches(record: &AuditRecord) -> impl Iterator<Item = (String, bool)> + '_ {
    record.calls.iter().filter_map(|call| {
        let target = call.target.as_deref().filter(|_| call.tool == "fetch")?;
        let url = target.split_once(' ').map_or(target, |(_, url)| url);
        let host = url::Url::parse(url).ok()?.host_str()?.to_ascii_lowercase();
        Some((host, !refused(&call.decision)))
    })
}

fn fetch_hosts(record: &AuditRecord) -> impl Iterator<Item = String> + '_ {
    fetches(record).map(|(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{audit::Origin, config::CountRule};
    use sha2::Digest;

    fn record(code: &str, kind: Option<&str>) -> AuditRecord {
        AuditRecord {
            seq: 0,
            prev: String::new(),
            finished_ms: 0,
            duration_ms: 1,
            origin: Origin {
                transport: "stdio".into(),
                ..Origin::default()
            },
            code_sha256: sha2::Sha256::digest(code.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            code: code.into(),
            calls: Vec::new(),
            scan: None,
            result_bytes: 0,
            log_bytes: 0,
            error_kind: kind.map(String::from),
            error: None,
            error_at: None,
            flags: Vec::new(),
            cost: None,
        }
    }

    fn names(flags: &[Flag]) -> Vec<&str> {
        flags.iter().map(|f| f.flag.as_str()).collect()
    }

    #[test]
    fn a_burst_above_the_sessions_norm_is_flagged_once() {
        let mut settings = AnomalySettings::default();
        settings.rate.window_secs = 10;
        settings.rate.minimum = 5;
        settings.rate.factor = 3.0;
        let anomalies = Anomalies::new(settings);
        let start = Instant::now();
        // A calm minute: one execution every 10 s.
        for i in 0..6 {
            let flags = anomalies.observe_at(
                &record(&i.to_string(), None),
                start + Duration::from_secs(i * 10),
            );
            assert!(flags.is_empty(), "{flags:?}");
        }
        let burst = start + Duration::from_secs(61);
        let mut raised = Vec::new();
        for i in 0..8 {
            let flags = anomalies.observe_at(
                &record(&format!("b{i}"), None),
                burst + Duration::from_millis(i * 100),
            );
            raised.push(names(&flags).join(","));
        }
        assert_eq!(raised, ["", "", "", "", "rate", "", "", ""]);
    }

    #[test]
    fn a_principal_far_above_its_own_usual_cpu_is_flagged_and_others_keep_theirs() {
        let anomalies = Anomalies::new(AnomalySettings::default());
        let n = std::cell::Cell::new(0);
        let run = |principal: &str, cpu_ms: u64| {
            n.set(n.get() + 1);
            let mut r = record(&format!("return {};", n.get()), None);
            r.origin.principal = Some(principal.into());
            r.cost = Some(crate::record::Cost {
                cpu_us: Some(cpu_ms * 1000),
                ..Default::default()
            });
            names(&anomalies.observe_at(&r, Instant::now())).join(",")
        };
        for _ in 0..20 {
            assert_eq!(run("light", 10), "");
            assert_eq!(run("heavy", 2_000), "");
        }
        // 10x light's usual is a spike; the same CPU is heavy's normal.
        assert_eq!(run("light", 150), "cpu-spike");
        assert_eq!(run("heavy", 150), "");
        assert_eq!(run("light", 40), "", "below the minimum");
    }

    #[test]
    fn the_same_program_in_a_loop_is_flagged() {
        let anomalies = Anomalies::new(AnomalySettings {
            repeats: CountRule {
                window_secs: 30,
                count: 3,
            },
            ..AnomalySettings::default()
        });
        let now = Instant::now();
        let flags: Vec<_> = (0..3)
            .map(|i| anomalies.observe_at(&record("same", None), now + Duration::from_secs(i)))
            .collect();
        assert!(flags[0].is_empty() && flags[1].is_empty());
        assert_eq!(names(&flags[2]), ["repeat"]);
    }
}
