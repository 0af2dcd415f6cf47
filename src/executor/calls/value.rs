//! A tool result as the value a program receives.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

/// A tool result as the program receives it: `structuredContent` if present; else a single
/// text that parses as JSON, as that value; else the text; other content kinds as objects.
/// `isError` results are errors, with the tool's own text as the message.
pub(crate) fn program_value(result: CallToolResult) -> Result<Value, String> {
    if result.is_error == Some(true) {
        let text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        return Err(if text.is_empty() {
            "the tool reported an error without a message".to_string()
        } else {
            text.join("\n")
        });
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    let mut values: Vec<Value> = result
        .content
        .into_iter()
        .map(|block| match &block {
            ContentBlock::Text(text) => serde_json::from_str(&text.text)
                .unwrap_or_else(|_| Value::String(text.text.clone())),
            _ => serde_json::to_value(&block).unwrap_or(Value::Null),
        })
        .collect();
    Ok(match values.len() {
        0 => Value::Null,
        1 => values.remove(0),
        _ => Value::Array(values),
    })
}
