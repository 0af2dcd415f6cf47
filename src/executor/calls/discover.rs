//! `tools.$search(query)` and `tools.$describe(name)`: a program finds tools it was not
//! shown, from the same index `search_tools` answers from. Answered here, from the run's
//! catalog, without leaving the host; counted and recorded like any call.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{CallHost, fail};
use crate::{
    catalog::CatalogTool,
    record::Decision,
    sandbox::{ReplyFuture, ToolCall, ToolReply},
    typegen,
};

/// The namespace the glue calls discovery under; no catalog namespace begins with `$`.
pub(super) const NAMESPACE: &str = "$";

/// Most tools one search returns.
const MAX_FOUND: usize = 50;

/// Characters of a description a search shows (a declaration has it whole).
const DESCRIPTION_CHARS: usize = 300;

/// Bytes of a discovery call's arguments at most: a query is a few words, a name one.
const MAX_ARGUMENT_BYTES: usize = 2_048;

/// Words of a query searched for at most.
const MAX_QUERY_WORDS: usize = 32;

#[derive(Deserialize)]
struct Search {
    query: String,
    #[serde(default)]
    limit: Option<f64>,
}

#[derive(Deserialize)]
struct Describe {
    name: String,
}

impl CallHost {
    /// Answers `tools.$search` or `tools.$describe` (`call.tool` is `search` or `describe`).
    pub(super) fn discover(&self, call: &ToolCall) -> ReplyFuture {
        let started = Instant::now();
        let name = format!("${}", call.tool);
        let shown_as = format!("tools.{name}");
        let reply = match self.count_call(Some(&name)) {
            Err(why) => {
                return self.refuse_budget(
                    &name,
                    None,
                    started,
                    call.arguments.len(),
                    format!("{shown_as} was not called: {why}"),
                );
            }
            Ok(()) if call.arguments.len() > MAX_ARGUMENT_BYTES => Err(format!(
                "{shown_as}: its arguments are {} bytes, more than the {MAX_ARGUMENT_BYTES} it takes: search with a few words, describe one name",
                call.arguments.len()
            )),
            Ok(()) => match call.tool.as_str() {
                "search" => self.search(&call.arguments),
                "describe" => self.describe(&call.arguments),
                _ => Err(format!(
                    "{shown_as} does not exist: tools.$search and tools.$describe do"
                )),
            },
        };
        let (reply, decision) = match reply {
            Ok(value) => {
                let json = value.to_string();
                // What a program reads of the catalog counts like any result.
                self.received.fetch_add(json.len(), Ordering::SeqCst);
                (ToolReply::Ok(json), Decision::Allowed)
            }
            Err(message) => (fail(message, None), Decision::InvalidArguments),
        };
        self.recorder.record(
            &name,
            None,
            started,
            call.arguments.len(),
            decision,
            &reply,
            None,
        );
        Box::pin(std::future::ready(reply))
    }

    fn search(&self, arguments: &str) -> Result<Value, String> {
        let Ok(Search { query, limit }) = serde_json::from_str(arguments) else {
            return Err("tools.$search takes (query: string, options?: { limit?: number })".into());
        };
        let limit = limit
            .filter(|l| l.is_finite() && *l >= 1.0)
            .map_or(10, |l| (l as usize).min(MAX_FOUND));
        let query: Vec<&str> = query.split_whitespace().take(MAX_QUERY_WORDS).collect();
        let found = self.catalog.search(&query.join(" "), limit);
        Ok(Value::Array(
            found.iter().map(|tool| found_tool(tool, false)).collect(),
        ))
    }

    fn describe(&self, arguments: &str) -> Result<Value, String> {
        let Ok(Describe { name }) = serde_json::from_str(arguments) else {
            return Err("tools.$describe takes (name: string), such as \"tools.ns.tool\"".into());
        };
        let bare = name.strip_prefix("tools.").unwrap_or(&name);
        let found = bare
            .split_once('.')
            .and_then(|(namespace, tool)| self.catalog.find(namespace, tool));
        match found {
            Some(tool) => Ok(found_tool(tool, true)),
            None => {
                let shown: String = name.chars().take(200).collect();
                let like: Vec<String> = self
                    .catalog
                    .search(&bare.replace('.', " "), 3)
                    .iter()
                    .map(|t| format!("tools.{}", t.qualified()))
                    .collect();
                Err(if like.is_empty() {
                    format!(
                        "tools.$describe: no tool is called {shown:?}; tools.$search(words) finds tools by name and description"
                    )
                } else {
                    format!(
                        "tools.$describe: no tool is called {shown:?}; similar: {}",
                        like.join(", ")
                    )
                })
            }
        }
    }
}

/// A tool as a program reads it: where to call it, what it does, its declaration; with
/// `schemas`, its JSON schemas too.
fn found_tool(tool: &Arc<CatalogTool>, schemas: bool) -> Value {
    let description = tool.tool.description.as_deref().unwrap_or("").trim();
    let description = if schemas || description.chars().count() <= DESCRIPTION_CHARS {
        description.to_string()
    } else {
        let head: String = description.chars().take(DESCRIPTION_CHARS).collect();
        format!("{head}...")
    };
    let mut found = json!({
        "name": format!("tools.{}", tool.qualified()),
        "namespace": tool.namespace,
        "tool": tool.js_name,
        "description": description,
        "signature": typegen::function_declaration(tool),
    });
    if schemas && let Some(object) = found.as_object_mut() {
        object.insert(
            "inputSchema".into(),
            Value::Object(tool.input_schema().clone()),
        );
        if let Some(output) = tool.output_schema() {
            object.insert("outputSchema".into(), Value::Object(output.clone()));
        }
    }
    found
}
