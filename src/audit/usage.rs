//! Usage: what the executions of an audit log cost, summed by principal, by tool or by
//! day (UTC), and priced by an optional price sheet; as a table, CSV or JSON
//! (`codemode-mcp usage`).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::AuditRecord;
use crate::record::{Cost, Decision};

/// What the rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageBy {
    /// One row per principal.
    Principal,
    /// One row per tool (`namespace.tool`, or `fetch`): its calls, bytes and time; CPU is
    /// the executions', not a tool's, and is not split.
    Tool,
    /// One row per day (UTC).
    Day,
}

/// How the rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageFormat {
    /// Aligned columns, for a person.
    Table,
    /// Comma-separated, with a header line.
    Csv,
    /// One JSON array of rows.
    Json,
}

/// Prices that turn usage into money, read from a JSON file:
/// `{"currency": "USD", "cpuSecond": 0.00002, "perCall": {"github": 0.001, "*": 0.0001},
/// "egressGB": 0.09}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriceSheet {
    /// The currency the prices are in, for the header.
    #[serde(default)]
    pub currency: Option<String>,
    /// One CPU second of executions.
    #[serde(default)]
    pub cpu_second: f64,
    /// One tool call, by namespace (as programs write it, `tools.<namespace>`); `*` for
    /// any other.
    #[serde(default)]
    pub per_call: BTreeMap<String, f64>,
    /// One GB (10^9 bytes) of fetch requests and responses.
    #[serde(default, rename = "egressGB")]
    pub egress_gb: f64,
}

impl PriceSheet {
    /// Reads a price sheet; the error names the file and the key.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read price sheet {}: {e}", path.display()))?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let sheet: PriceSheet = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            format!(
                "price sheet {}: {}: {}; write e.g. {{\"currency\": \"USD\", \"cpuSecond\": 0.00002, \"perCall\": {{\"*\": 0.0001}}, \"egressGB\": 0.09}}",
                path.display(),
                e.path(),
                e.inner()
            )
        })?;
        let mut prices = vec![
            ("cpuSecond", sheet.cpu_second),
            ("egressGB", sheet.egress_gb),
        ];
        prices.extend(sheet.per_call.values().map(|&p| ("perCall", p)));
        if let Some((key, price)) = prices.iter().find(|(_, p)| !p.is_finite() || *p < 0.0) {
            return Err(format!(
                "price sheet {}: {key}: {price} is not a price (a number, 0 or more)",
                path.display()
            ));
        }
        Ok(sheet)
    }

    fn per_call(&self, namespace: &str) -> f64 {
        self.per_call
            .get(namespace)
            .or_else(|| self.per_call.get("*"))
            .copied()
            .unwrap_or(0.0)
    }
}

/// One row of a usage report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The principal, the tool or the day.
    pub key: String,
    /// Executions (for a tool: those that called it).
    pub executions: u64,
    /// Executions that failed (for a tool: its calls that failed).
    pub errors: u64,
    /// CPU seconds of the executions (0 for a tool).
    pub cpu_seconds: f64,
    /// Wall-clock seconds of the executions (for a tool: of its calls).
    pub wall_seconds: f64,
    /// Tool calls that went out.
    pub tool_calls: u64,
    /// Fetches that went out.
    pub fetches: u64,
    /// Bytes of fetch requests and responses.
    pub egress_bytes: u64,
    /// Bytes received (tool results, fetch responses).
    pub bytes_in: u64,
    /// Bytes sent (tool arguments, fetch requests).
    pub bytes_out: u64,
    /// What it cost by the price sheet, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// Reads the records of audit log files, oldest first.
pub fn read(files: &[PathBuf]) -> Result<Vec<AuditRecord>, String> {
    let mut records = Vec::new();
    for file in files {
        let opened = std::fs::File::open(file)
            .map_err(|e| format!("cannot read audit log {}: {e}", file.display()))?;
        for (index, line) in BufReader::new(opened).lines().enumerate() {
            let line = line.map_err(|e| format!("{}:{}: {e}", file.display(), index + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            records.push(serde_json::from_str(&line).map_err(|e| {
                format!(
                    "{}:{}: not an audit record ({e})",
                    file.display(),
                    index + 1
                )
            })?);
        }
    }
    Ok(records)
}

/// The cost of a record: its own, or (for records written before costs were kept) what
/// its calls show.
fn cost_of(record: &AuditRecord) -> Cost {
    if let Some(cost) = &record.cost {
        return cost.clone();
    }
    let mut cost = Cost {
        wall_ms: record.duration_ms,
        ..Cost::default()
    };
    for call in &record.calls {
        if Decision::parse(&call.decision).is_some_and(Decision::went_out) {
            cost.add_call(&call.tool, call.args_bytes, call.result_bytes);
        }
    }
    cost
}

fn namespace(tool: &str) -> String {
    tool.split_once('.').map_or(tool, |(ns, _)| ns).to_string()
}

/// The UTC day of a time in milliseconds since the epoch, as `YYYY-MM-DD`.
fn day(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d").to_string())
}

/// Sums `records` finished at or after `since_ms` into rows by `by`, priced by `prices`.
pub fn summarize(
    records: &[AuditRecord],
    since_ms: u64,
    by: UsageBy,
    prices: Option<&PriceSheet>,
) -> Vec<UsageRow> {
    let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
    for record in records.iter().filter(|r| r.finished_ms >= since_ms) {
        let cost = cost_of(record);
        if by == UsageBy::Tool {
            let mut seen = std::collections::BTreeSet::new();
            for call in &record.calls {
                let made = Decision::parse(&call.decision).is_some_and(Decision::went_out);
                let row = rows.entry(call.tool.clone()).or_default();
                if seen.insert(call.tool.clone()) {
                    row.executions += 1;
                }
                row.errors += u64::from(!call.ok);
                row.wall_seconds += call.ms as f64 / 1000.0;
                if !made {
                    continue;
                }
                let (out, back) = (call.args_bytes as u64, call.result_bytes as u64);
                row.bytes_out += out;
                row.bytes_in += back;
                if call.tool == crate::policy::FETCH {
                    row.fetches += 1;
                    row.egress_bytes += out + back;
                } else {
                    row.tool_calls += 1;
                }
                if let Some(prices) = prices {
                    let price = if call.tool == crate::policy::FETCH {
                        (out + back) as f64 / 1e9 * prices.egress_gb
                    } else {
                        prices.per_call(&namespace(&call.tool))
                    };
                    *row.price.get_or_insert(0.0) += price;
                }
            }
            continue;
        }
        let key = match by {
            UsageBy::Principal => record
                .origin
                .principal
                .clone()
                .unwrap_or_else(|| "-".into()),
            _ => day(record.finished_ms),
        };
        let row = rows.entry(key).or_default();
        row.executions += 1;
        row.errors += u64::from(record.error_kind.is_some());
        row.cpu_seconds += cost.cpu().as_secs_f64();
        row.wall_seconds += cost.wall_ms as f64 / 1000.0;
        row.tool_calls += cost.calls();
        row.fetches += u64::from(cost.fetches);
        row.egress_bytes += cost.egress_bytes;
        row.bytes_in += cost.bytes_in;
        row.bytes_out += cost.bytes_out;
        if let Some(prices) = prices {
            let calls: f64 = cost
                .tool_calls
                .iter()
                .map(|(ns, &n)| f64::from(n) * prices.per_call(ns))
                .sum();
            *row.price.get_or_insert(0.0) += cost.cpu().as_secs_f64() * prices.cpu_second
                + calls
                + cost.egress_bytes as f64 / 1e9 * prices.egress_gb;
        }
    }
    rows.into_iter()
        .map(|(key, row)| UsageRow { key, ..row })
        .collect()
}

/// The rows as `format` prints them; `by` names the key column, `currency` the price's.
pub fn render(
    rows: &[UsageRow],
    by: UsageBy,
    format: UsageFormat,
    currency: Option<&str>,
) -> String {
    if format == UsageFormat::Json {
        return serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into()) + "\n";
    }
    let key = match by {
        UsageBy::Principal => "principal",
        UsageBy::Tool => "tool",
        UsageBy::Day => "day",
    };
    let priced = rows.iter().any(|r| r.price.is_some());
    let price_header = format!("price ({})", currency.unwrap_or("money"));
    let mut header = vec![
        key,
        "executions",
        "errors",
        "cpu_s",
        "wall_s",
        "tool_calls",
        "fetches",
        "egress_bytes",
        "bytes_in",
        "bytes_out",
    ];
    if priced {
        header.push(&price_header);
    }
    let cells = |r: &UsageRow| {
        let mut cells = vec![
            r.key.clone(),
            r.executions.to_string(),
            r.errors.to_string(),
            format!("{:.3}", r.cpu_seconds),
            format!("{:.3}", r.wall_seconds),
            r.tool_calls.to_string(),
            r.fetches.to_string(),
            r.egress_bytes.to_string(),
            r.bytes_in.to_string(),
            r.bytes_out.to_string(),
        ];
        if priced {
            cells.push(format!("{:.6}", r.price.unwrap_or(0.0)));
        }
        cells
    };
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(cells))
        .collect();
    if format == UsageFormat::Csv {
        return lines
            .iter()
            .map(|line| {
                line.iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
                    + "\n"
            })
            .collect();
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for line in &lines {
        let row: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        text.push_str(row.join("  ").trim_end());
        text.push('\n');
    }
    if rows.is_empty() {
        text.push_str("(no executions in the period)\n");
    }
    text
}

fn csv_field(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// `7d`, `24h`, `30m`, `90s` in milliseconds; why not, for anything else.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let unit = text.chars().last().unwrap_or(' ');
    let number = &text[..text.len() - unit.len_utf8().min(text.len())];
    let scale = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if scale > 0 => Ok(n.saturating_mul(scale)),
        _ => Err(format!(
            "{text:?} is not a period: write a number and a unit, e.g. 7d, 24h, 30m or 90s"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditCall, Origin};

    fn record(
        principal: &str,
        finished_ms: u64,
        cpu_us: u64,
        calls: &[(&str, bool)],
    ) -> AuditRecord {
        let mut record = AuditRecord::of(
            &Origin {
                principal: Some(principal.into()),
                ..Origin::default()
            },
            "return 1",
            &crate::record::Execution::refused(crate::sandbox::ProgramError::new(
                crate::sandbox::ErrorKind::Runtime,
                "x",
            )),
        );
        record.finished_ms = finished_ms;
        record.error_kind = None;
        record.calls = calls
            .iter()
            .map(|(tool, ok)| AuditCall {
                tool: tool.to_string(),
                target: None,
                args_bytes: 10,
                result_bytes: 100,
                ms: 5,
                ok: *ok,
                decision: "allowed".into(),
                error: None,
            })
            .collect();
        let mut cost = cost_of(&AuditRecord {
            cost: None,
            ..record.clone()
        });
        cost.cpu_us = Some(cpu_us);
        record.cost = Some(cost);
        record
    }

    #[test]
    fn usage_sums_by_principal_tool_and_day_and_prices_it() {
        let day = 86_400_000;
        let records = vec![
            record(
                "alice",
                10 * day,
                2_000_000,
                &[("github.get", true), ("fetch", true)],
            ),
            record("alice", 11 * day, 1_000_000, &[("github.get", false)]),
            record("bob", 11 * day + 5, 500_000, &[]),
            record("old", 1, 9_000_000, &[]),
        ];
        let prices: PriceSheet = serde_json::from_value(serde_json::json!({
            "currency": "USD", "cpuSecond": 0.5, "perCall": {"github": 0.25}, "egressGB": 1e9
        }))
        .unwrap();
        let rows = summarize(&records, 2, UsageBy::Principal, Some(&prices));
        assert_eq!(
            rows.len(),
            2,
            "the old record is before the period: {rows:?}"
        );
        let alice = &rows[0];
        assert_eq!(
            (alice.key.as_str(), alice.executions, alice.tool_calls),
            ("alice", 2, 2)
        );
        assert_eq!((alice.fetches, alice.egress_bytes), (1, 110));
        // 3 CPU seconds at 0.5, 2 github calls at 0.25, 110 bytes at 1 per byte.
        assert_eq!(alice.price, Some(1.5 + 0.5 + 110.0));
        let tools = summarize(&records, 0, UsageBy::Tool, None);
        let github = tools.iter().find(|r| r.key == "github.get").unwrap();
        assert_eq!(
            (github.executions, github.tool_calls, github.errors),
            (2, 2, 1)
        );
        let days = summarize(&records, 0, UsageBy::Day, None);
        let keys: Vec<_> = days.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["1970-01-01", "1970-01-11", "1970-01-12"]);
        let csv = render(&rows, UsageBy::Principal, UsageFormat::Csv, Some("USD"));
        assert!(
            csv.starts_with("principal,executions,errors,cpu_s"),
            "{csv}"
        );
        assert!(csv.contains("price (USD)"), "{csv}");
        let table = render(&rows, UsageBy::Principal, UsageFormat::Table, None);
        assert!(
            table.lines().nth(1).unwrap().starts_with("alice "),
            "{table}"
        );
        assert_eq!(parse_since("7d"), Ok(7 * day));
        assert!(parse_since("7 days").is_err());
        assert!(parse_since("7é").is_err() && parse_since("").is_err());
    }
}
