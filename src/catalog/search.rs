//! Word search over tool names and descriptions.

use std::sync::Arc;

use super::{Catalog, CatalogTool};

/// How much of each found tool `search_tools` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Detail {
    /// `tools.ns.name`, one line each with the first sentence of its description.
    Names,
    /// The TypeScript signature with its doc comment.
    #[default]
    Signatures,
    /// Signatures plus the full input and output types.
    Full,
}

impl Catalog {
    /// Tools ranked by how well `query`'s words match their names and descriptions; an
    /// empty query lists everything.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Arc<CatalogTool>> {
        let words: Vec<String> = split_words(query);
        let mut scored: Vec<(u32, &Arc<CatalogTool>)> = self
            .tools()
            .filter_map(|tool| {
                if words.is_empty() {
                    return Some((0, tool));
                }
                let name_words = split_words(&format!("{} {}", tool.namespace, tool.mcp_name));
                let description = split_words(tool.tool.description.as_deref().unwrap_or(""));
                let score: u32 = words
                    .iter()
                    .map(|w| {
                        let mut s = 0;
                        if name_words.iter().any(|n| n == w) {
                            s += 10;
                        } else if name_words.iter().any(|n| n.starts_with(w.as_str())) {
                            s += 6;
                        }
                        if description.iter().any(|d| d == w) {
                            s += 3;
                        } else if description.iter().any(|d| d.starts_with(w.as_str())) {
                            s += 1;
                        }
                        s
                    })
                    .sum();
                (score > 0).then_some((score, tool))
            })
            .collect();
        scored.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.qualified().cmp(&b.1.qualified()))
        });
        scored
            .into_iter()
            .take(limit)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// Lower-case words, splitting snake_case, kebab-case, dots and camelCase.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            current.extend(c.to_lowercase());
        } else {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.retain(|w| !STOP_WORDS.contains(&w.as_str()));
    words
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "to", "and", "or", "in", "for", "with", "on", "by", "is",
];

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_split_on_case_and_separators() {
        assert_eq!(
            split_words("readFile get-sum the_time.now"),
            vec!["read", "file", "get", "sum", "time", "now"]
        );
    }
}
