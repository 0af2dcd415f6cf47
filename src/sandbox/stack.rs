//! Stack traces mapped to the agent's source: only the agent's frames are kept and their
//! lines are moved back across the async-function wrapper.

use crate::transpile::{PROGRAM_FILE, Position, program_line};

/// Frames kept at most; deep recursion would otherwise fill the model's context.
const MAX_FRAMES: usize = 12;

/// The agent's frames of `stack`, mapped, with runs of one frame folded into one line; and
/// the position of the innermost frame.
pub(crate) fn agent_frames(stack: &str, program_lines: u32) -> (Vec<String>, Option<Position>) {
    let mut frames: Vec<(String, usize)> = Vec::new();
    let mut first = None;
    for line in stack.lines() {
        let Some((prefix, position, suffix)) = locate(line) else {
            continue;
        };
        let mapped = Position {
            line: program_line(position.line, program_lines),
            column: position.column,
        };
        first.get_or_insert(mapped);
        let frame = format!("{prefix}{PROGRAM_FILE}:{mapped}{suffix}")
            .trim()
            .to_string();
        match frames.last_mut() {
            Some((last, repeats)) if *last == frame => *repeats += 1,
            _ => frames.push((frame, 1)),
        }
    }
    let omitted = frames.len().saturating_sub(MAX_FRAMES);
    let mut lines: Vec<String> = frames
        .into_iter()
        .take(MAX_FRAMES)
        .map(|(frame, repeats)| match repeats {
            1 => frame,
            n => format!("{frame} (repeated {n} times)"),
        })
        .collect();
    if omitted > 0 {
        lines.push(format!("... {omitted} more frames"));
    }
    (lines, first)
}

/// Splits a frame like `at f (program.ts:3:5)` around its position in the program.
fn locate(frame: &str) -> Option<(&str, Position, &str)> {
    let start = frame.find(PROGRAM_FILE)?;
    let rest = &frame[start + PROGRAM_FILE.len()..];
    let rest = rest.strip_prefix(':')?;
    let line_end = rest.find(|c: char| !c.is_ascii_digit())?;
    let line: u32 = rest[..line_end].parse().ok()?;
    let rest = rest[line_end..].strip_prefix(':')?;
    let col_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let column: u32 = rest[..col_end].parse().ok()?;
    Some((&frame[..start], Position { line, column }, &rest[col_end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_agent_frames_and_maps_lines() {
        let stack = "    at inner (program.ts:4:11)\n    at map (native)\n    at <anonymous> (program.ts:7:3)\n    at run (codemode:glue.js:40:9)\n";
        let (frames, first) = agent_frames(stack, 10);
        assert_eq!(
            first,
            Some(Position {
                line: 3,
                column: 11
            })
        );
        assert_eq!(
            frames,
            vec![
                "at inner (program.ts:3:11)",
                "at <anonymous> (program.ts:6:3)"
            ]
        );
    }

    #[test]
    fn recursion_is_folded() {
        let stack = "    at f (program.ts:2:24)\n".repeat(50);
        let (frames, _) = agent_frames(&stack, 3);
        assert_eq!(frames, vec!["at f (program.ts:1:24) (repeated 50 times)"]);
    }

    #[test]
    fn bare_location_frames_parse() {
        let (frames, first) = agent_frames("    at program.ts:2:9\n", 5);
        assert_eq!(first, Some(Position { line: 1, column: 9 }));
        assert_eq!(frames, vec!["at program.ts:1:9"]);
    }
}
