//! The output budget: what a model reads of one execution (the result, the logs, the error
//! and its stack, the calls) fits in `codemode.limits.outputChars` characters, in the text
//! block and in `structuredContent` alike. Past it, each part keeps its head and its tail
//! and loses its middle, logs past the budget are summarised (how many lines, of which
//! levels), and the notice comes first, so that a client cutting from the end still shows
//! it. The cuts are made on the structured output and the text is rendered from it: the
//! two blocks say the same.

use std::collections::BTreeMap;

use super::render::ExecuteCodeOutput;
use crate::{
    executor::CallRecord,
    sandbox::{LogEntry, LogLevel},
};

/// Room kept for what is not cut: the notice, the keys and framing of the structured
/// block, the duration, the state handle.
const FRAME: usize = 900;

/// The smallest budget: below it, nothing useful fits.
pub(super) const MIN_CHARS: usize = 2_000;

/// What the budget cut, for the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cut {
    /// Characters of the whole answer, and how many are shown.
    pub(super) total: usize,
    pub(super) shown: usize,
}

/// Characters of the text block and of the structured block of `output`, as rendered
/// by `render` (which renders the text).
fn sizes(output: &ExecuteCodeOutput, render: &impl Fn(&ExecuteCodeOutput) -> String) -> usize {
    let text = render(output).chars().count();
    let structured = serde_json::to_string(output).map_or(0, |json| json.chars().count());
    text.max(structured)
}

/// Cuts `output` to `budget` characters (in each block); `None` if it fits already.
/// `render` renders the text block of an output; `notice` makes the notice from the cut.
pub(super) fn fit(
    output: &mut ExecuteCodeOutput,
    budget: usize,
    render: impl Fn(&ExecuteCodeOutput) -> String,
    notice: impl Fn(&Cut) -> String,
) -> Option<Cut> {
    let budget = budget.max(MIN_CHARS);
    let total = sizes(output, &render);
    if total <= budget {
        return None;
    }
    let whole = output.clone();
    // Each round shares what is left among the parts; the framing is only known once
    // rendered, so a round that still overflows tries again with less.
    let mut room = budget.saturating_sub(FRAME);
    for _ in 0..8 {
        *output = whole.clone();
        output.truncated.insert(
            0,
            notice(&Cut {
                total,
                shown: budget,
            }),
        );
        cut_parts(output, room);
        let shown = sizes(output, &render);
        if shown <= budget {
            output.truncated[0] = notice(&Cut { total, shown });
            return Some(Cut { total, shown });
        }
        room = room.saturating_mul(3) / 4;
    }
    // Still over (what no round cuts, such as many cap notices, filled it): the parts go
    // down to their heads, the logs and calls to their counts.
    *output = whole;
    output.truncated.insert(0, String::new());
    cut_parts(output, 0);
    if let Some(error) = &mut output.error {
        error.message = head_and_tail(&error.message, 500);
        error.stack = None;
    }
    if output.result_cut {
        output.result = serde_json::Value::String(head_and_tail(
            output.result.as_str().unwrap_or_default(),
            500,
        ));
    }
    let shown = sizes(output, &render);
    output.truncated[0] = notice(&Cut { total, shown });
    Some(Cut { total, shown })
}

/// Shares `room` among the result, the error, the logs and the calls, the smaller ones
/// whole (water-filling), and cuts each to its share.
fn cut_parts(output: &mut ExecuteCodeOutput, room: usize) {
    let result = json_len(&output.result);
    let error = output.error.as_ref().map_or(0, |e| {
        e.message.len() + e.stack.as_ref().map_or(0, String::len)
    });
    let logs: usize = output.logs.iter().map(log_len).sum();
    let calls: usize = output.calls.iter().map(call_len).sum();
    let shares = share(room, [result, error, logs, calls]);
    if result > shares[0] {
        output.result_cut = true;
        output.result = serde_json::Value::String(head_and_tail(
            &serde_json::to_string(&output.result).unwrap_or_default(),
            shares[0],
        ));
    }
    if let Some(error) = &mut output.error
        && error.message.len() + error.stack.as_ref().map_or(0, String::len) > shares[1]
    {
        let stack = error.stack.as_ref().map_or(0, String::len);
        let for_stack = stack.min(shares[1] / 3);
        error.message = head_and_tail(&error.message, shares[1] - for_stack);
        if let Some(text) = &mut error.stack {
            *text = head_and_tail(text, for_stack);
        }
    }
    if logs > shares[2] {
        output.logs = cut_logs(&output.logs, shares[2]);
    }
    if calls > shares[3] {
        output.calls = cut_calls(&output.calls, shares[3]);
    }
}

/// Water-filling: parts that need less than an equal share keep all they need; the rest
/// share what remains equally.
fn share<const N: usize>(room: usize, needs: [usize; N]) -> [usize; N] {
    let mut shares = [0; N];
    let mut order: Vec<usize> = (0..N).collect();
    order.sort_by_key(|&i| needs[i]);
    let mut left = room;
    for (done, &i) in order.iter().enumerate() {
        let equal = left / (N - done);
        shares[i] = needs[i].min(equal);
        left -= shares[i];
    }
    shares
}

/// `text` cut to about `keep` characters: its head and its tail, and what was cut between.
fn head_and_tail(text: &str, keep: usize) -> String {
    let chars = text.chars().count();
    if chars <= keep {
        return text.to_string();
    }
    let head = keep * 2 / 3;
    let tail = keep - head;
    let cut = chars - head - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(chars - tail).collect();
    format!("{start} … [{} characters cut] … {end}", thousands(cut))
}

/// What one log line costs in the larger (structured) block.
fn log_len(entry: &LogEntry) -> usize {
    entry.message.len() + 32
}

fn call_len(call: &CallRecord) -> usize {
    serde_json::to_string(call).map_or(64, |json| json.len() + 1)
}

fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_string(value).map_or(0, |json| json.len())
}

/// The first and last lines that fit in `room`, and between them one line that says how
/// many lines of which levels were cut.
fn cut_logs(logs: &[LogEntry], room: usize) -> Vec<LogEntry> {
    let (head, tail) = ends(logs, room.saturating_sub(120), log_len);
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &logs[head..logs.len() - tail] {
        *levels.entry(entry.level.as_str()).or_default() += 1;
    }
    let cut = logs.len() - head - tail;
    let mut kept: Vec<LogEntry> = logs[..head].to_vec();
    // A line longer than the room on its own keeps its head and tail.
    if head == 0 && tail == 0 && cut > 0 {
        let first = &logs[0];
        kept.push(LogEntry {
            level: first.level,
            message: head_and_tail(&first.message, room / 2),
        });
    }
    let of_levels: Vec<String> = levels
        .iter()
        .map(|(level, n)| format!("{} {level}", thousands(*n)))
        .collect();
    kept.push(LogEntry {
        level: LogLevel::Info,
        message: format!(
            "[codemode: {} of {} log lines cut here ({}); log less, or return a summary]",
            thousands(cut),
            thousands(logs.len()),
            of_levels.join(", ")
        ),
    });
    kept.extend_from_slice(&logs[logs.len() - tail..]);
    kept
}

/// The first and last calls that fit in `room`, and between them a line counting the rest.
fn cut_calls(calls: &[CallRecord], room: usize) -> Vec<CallRecord> {
    let (head, tail) = ends(calls, room.saturating_sub(200), call_len);
    let between = &calls[head..calls.len() - tail];
    let failed = between.iter().filter(|c| !c.ok).count();
    let mut kept = calls[..head].to_vec();
    kept.push(CallRecord {
        tool: "(calls cut)".into(),
        target: None,
        ms: 0,
        ok: failed == 0,
        error: Some(format!(
            "{} calls are not listed here ({} of them failed); the whole output lists them",
            thousands(between.len()),
            thousands(failed)
        )),
        args_bytes: 0,
        result_bytes: 0,
        decision: crate::record::Decision::NotListed,
    });
    kept.extend_from_slice(&calls[calls.len() - tail..]);
    kept
}

/// How many items from the start and from the end fit in `room`, half each.
fn ends<T>(items: &[T], room: usize, cost: impl Fn(&T) -> usize) -> (usize, usize) {
    let half = room / 2;
    let mut used = 0;
    let head = items
        .iter()
        .take_while(|item| {
            used += cost(item);
            used <= half
        })
        .count();
    let mut used = 0;
    let tail = items[head..]
        .iter()
        .rev()
        .take_while(|item| {
            used += cost(item);
            used <= half
        })
        .count();
    (head, tail)
}

/// `1288009` as `1,288,009`.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(logs: usize, result: serde_json::Value) -> ExecuteCodeOutput {
        ExecuteCodeOutput {
            truncated: Vec::new(),
            result,
            logs: (0..logs)
                .map(|i| LogEntry {
                    level: if i % 10 == 0 {
                        LogLevel::Warn
                    } else {
                        LogLevel::Log
                    },
                    message: format!("line {i}"),
                })
                .collect(),
            duration_ms: 1,
            cpu_ms: None,
            calls: Vec::new(),
            error: None,
            hints: Vec::new(),
            result_cut: false,
            state: None,
        }
    }

    fn render(output: &ExecuteCodeOutput) -> String {
        serde_json::to_string(output).unwrap()
    }

    fn notice(cut: &Cut) -> String {
        format!(
            "output truncated: {} characters, {} shown",
            cut.total, cut.shown
        )
    }

    #[test]
    fn what_fits_is_left_alone() {
        let mut small = output(3, serde_json::json!({"ok": true}));
        assert_eq!(fit(&mut small, 24_000, render, notice), None);
        assert_eq!(small.logs.len(), 3);
    }

    #[test]
    fn many_logs_keep_head_and_tail_with_a_count_between() {
        let mut big = output(200_000, serde_json::json!(1));
        let cut = fit(&mut big, 24_000, render, notice).unwrap();
        assert!(cut.total > 1_000_000 && cut.shown <= 24_000, "{cut:?}");
        assert!(big.truncated[0].starts_with("output truncated"));
        assert_eq!(big.logs[0].message, "line 0");
        assert_eq!(big.logs.last().unwrap().message, "line 199999");
        let summary = big
            .logs
            .iter()
            .find(|l| l.message.starts_with("[codemode:"))
            .unwrap();
        assert!(
            summary.message.contains("of 200,000 log lines cut")
                && summary.message.contains("warn"),
            "{}",
            summary.message
        );
        assert_eq!(
            big.result,
            serde_json::json!(1),
            "a small result is kept whole"
        );
    }

    #[test]
    fn a_big_result_keeps_its_head_and_tail() {
        let array: Vec<_> = (0..10_000).map(|i| serde_json::json!({"i": i})).collect();
        let mut big = output(0, serde_json::Value::Array(array));
        let cut = fit(&mut big, 24_000, render, notice).unwrap();
        assert!(cut.shown <= 24_000);
        let text = big.result.as_str().unwrap();
        assert!(text.starts_with("[{\"i\":0}"), "{}", &text[..40]);
        assert!(text.ends_with("{\"i\":9999}]"));
        assert!(text.contains("characters cut"));
    }

    #[test]
    fn shares_give_small_parts_all_they_need() {
        assert_eq!(share(100, [10, 500, 0, 500]), [10, 45, 0, 45]);
        assert_eq!(share(100, [10, 20, 0, 30]), [10, 20, 0, 30]);
        assert_eq!(thousands(1_288_009), "1,288,009");
        assert_eq!(thousands(999), "999");
    }
}
