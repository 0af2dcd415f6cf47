//! JSON Schema -> TypeScript declarations with doc comments, for the model to read.
//! Deterministic: the same schemas always give the same text.

mod schema;

use crate::{
    catalog::{BUILTIN_TRANSPORT, Catalog, CatalogTool, GLOBAL_NAMESPACES, Namespace},
    upstream::Status,
};

pub(crate) use schema::doc_comment;
pub use schema::{TypeWriter, ts_type};

/// Which return types declarations show for tools that declare no `outputSchema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// Only what tools declare (`unknown` otherwise): text that must not change as results
    /// are observed, such as the `execute_code` description clients cache.
    Declared,
    /// What tools declare, else the type learned from their results so far.
    Learned,
    /// What the type checker holds programs to: what tools declare, else `any`, so that
    /// using a result the server never described is not a type error.
    Checked,
}

/// The declaration file of one namespace, with learned return types.
pub fn namespace_declarations(namespace: &Namespace) -> String {
    namespace_declarations_as(namespace, Returns::Learned)
}

/// The declaration file of one namespace.
pub fn namespace_declarations_as(namespace: &Namespace, returns: Returns) -> String {
    let mut out = format!(
        "/** Tools of the MCP server \"{}\" ({}, {}). */\ndeclare namespace tools.{} {{\n",
        namespace.upstream,
        namespace.transport,
        status_text(&namespace.status),
        namespace.name
    );
    for (i, tool) in namespace.tools.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&indent(&function_declaration_as(tool, returns), "  "));
    }
    out.push_str("}\n");
    if namespace.transport == BUILTIN_TRANSPORT
        && GLOBAL_NAMESPACES.contains(&namespace.name.as_str())
    {
        out.push_str(&format!(
            "/** `tools.{0}`, also reachable as the global `{0}`. */\ndeclare const {0}: typeof tools.{0};\n",
            namespace.name
        ));
    }
    out
}

/// Declarations of every namespace, with the shared `ToolError` and learned return types.
pub fn all_declarations(catalog: &Catalog) -> String {
    all_declarations_as(catalog, Returns::Learned)
}

/// Declarations of every namespace, with the shared `ToolError`.
pub fn all_declarations_as(catalog: &Catalog, returns: Returns) -> String {
    let mut out = String::from(TOOL_ERROR_DECLARATION);
    for namespace in catalog.namespaces() {
        out.push('\n');
        out.push_str(&namespace_declarations_as(namespace, returns));
    }
    out
}

/// The `ToolError` every failed tool call throws.
pub const TOOL_ERROR_DECLARATION: &str =
    "/** Thrown by a tool call that failed: invalid arguments, an upstream error, a timeout. */
declare class ToolError extends Error {
  /** The tool, as `namespace.name`. */
  tool: string;
  /** JSON pointer into the tool's input schema when the arguments were invalid. */
  schemaPath?: string;
}
";

/// `function name(args: {...}): Promise<...>;` with its doc comment, unindented, with the
/// learned return type where the tool declares none.
pub fn function_declaration(tool: &CatalogTool) -> String {
    function_declaration_as(tool, Returns::Learned)
}

/// `function name(args: {...}): Promise<...>;` with its doc comment, unindented.
pub fn function_declaration_as(tool: &CatalogTool, returns: Returns) -> String {
    let mut doc = Vec::new();
    if let Some(description) = tool
        .tool
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        doc.push(description.trim().to_string());
    }
    if tool.js_name != tool.mcp_name {
        doc.push(format!("MCP tool name: \"{}\".", tool.mcp_name));
    }
    let learned = match returns {
        Returns::Learned => tool.learned_return(),
        Returns::Declared | Returns::Checked => None,
    };
    let undeclared = match returns {
        Returns::Checked => "any",
        Returns::Declared | Returns::Learned => "unknown",
    };
    let returns = match (tool.output_schema(), learned) {
        (Some(schema), _) => {
            let value = serde_json::Value::Object(schema.clone());
            TypeWriter::new(&value).write(&value, 0)
        }
        (None, Some(shape)) => {
            doc.push(format!(
                "Returns a type inferred from {} observed result{} (the server declares none): a guide, not a promise; fields some results lacked are optional.",
                shape.observed,
                if shape.observed == 1 { "" } else { "s" }
            ));
            TypeWriter::new(&shape.schema).write(&shape.schema, 0)
        }
        (None, None) => {
            doc.push(
                "Returns `unknown`: the result's JSON if the tool replies with JSON, else its text."
                    .to_string(),
            );
            undeclared.to_string()
        }
    };
    let input = serde_json::Value::Object(tool.input_schema().clone());
    let args = TypeWriter::new(&input).write(&input, 0);
    let optional = !has_required(&input);
    let mut out = schema::doc_comment(&doc.join("\n\n"), "");
    out.push_str(&format!(
        "function {}(args{}: {}): Promise<{}>;\n",
        tool.js_name,
        if optional { "?" } else { "" },
        args,
        returns
    ));
    out
}

/// One line: `tools.ns.name(args) - first sentence of the description`.
pub fn index_line(tool: &CatalogTool) -> String {
    let summary = tool
        .tool
        .description
        .as_deref()
        .map(first_sentence)
        .unwrap_or_default();
    if summary.is_empty() {
        format!("tools.{}", tool.qualified())
    } else {
        format!("tools.{} - {summary}", tool.qualified())
    }
}

fn has_required(schema: &serde_json::Value) -> bool {
    schema
        .get("required")
        .and_then(|r| r.as_array())
        .is_some_and(|r| !r.is_empty())
}

fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let line = text.lines().next().unwrap_or("");
    let end = line
        .char_indices()
        .find(|(i, c)| *c == '.' && line[i + 1..].starts_with([' ', '\n']))
        .map_or(line.len(), |(i, _)| i + 1);
    let sentence = &line[..end];
    if sentence.chars().count() > 160 {
        let cut: String = sentence.chars().take(157).collect();
        format!("{cut}...")
    } else {
        sentence.to_string()
    }
}

fn status_text(status: &Status) -> String {
    match status {
        Status::Ready => "ready".into(),
        other => other.to_string(),
    }
}

/// `text` with each line indented `by`.
pub(crate) fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{by}{l}\n")
            }
        })
        .collect()
}
