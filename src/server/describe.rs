//! The texts the model reads about the catalog: the `execute_code` description (contract +
//! tool index), the server instructions, and `search_tools` answers.

use crate::{
    catalog::{Catalog, Detail},
    typegen,
    upstream::Status,
};

/// The program's contract, the stable head of the `execute_code` description.
pub const EXECUTE_CODE_CONTRACT: &str = include_str!("execute_code.md");

/// Full declarations go into the description while they stay under this many bytes.
const FULL_DECLARATIONS_BUDGET: usize = 8_000;
/// The one-line index goes in while it stays under this many bytes.
const INDEX_BUDGET: usize = 16_000;

/// The `execute_code` description for `catalog`, and for the URL patterns `fetch` may
/// reach when programs have it ([`crate::egress::Egress::allowed`], or a principal's narrower list).
pub fn execute_code_description(catalog: &Catalog, fetch: Option<&[&str]>) -> String {
    let mut text = EXECUTE_CODE_CONTRACT.trim_end().to_string();
    if let Some(allowed) = fetch {
        text.push_str(&format!(
            "\n\n`fetch` is on, for these URLs only (others fail before the program runs, or throw a TypeError): {}. `Request`, `Response` and `Headers` work as on the web; credentials the server adds are never visible to the program. Once a run has read untrusted data (a fetch response, an open-world tool), sending data out again (another fetch, a destructive tool) needs the user's confirmation.",
            allowed.join(", ")
        ));
    }
    let Some(example) = catalog.tools().next() else {
        text.push_str("\n\nNo upstream tools are connected: programs have plain JavaScript only.");
        return text;
    };
    text.push_str(&format!(
        "\n\nTools: every tool below is an async function of the global `tools`, e.g. `const r = await tools.{}({{ ... }});`. A call resolves to what its declared return type says (a string field may hold JSON text: parse that field). A failed call throws a `ToolError` (`.tool`, `.message`, `.schemaPath`) you can catch. Run independent calls together with `Promise.all`. `search_tools` finds declarations by keyword; in a program, `await tools.$search('words')` does (call a hit as `tools[hit.namespace][hit.tool](args)`) and `tools.$describe('ns.tool')` adds its schemas.\n",
        example.qualified()
    ));
    // Declared types only: learning must never change this text (clients cache it).
    let full = typegen::all_declarations_as(catalog, typegen::Returns::Declared);
    if full.len() <= FULL_DECLARATIONS_BUDGET {
        text.push_str("\n```ts\n");
        text.push_str(&full);
        text.push_str("```");
    } else {
        let index: Vec<String> = catalog.tools().map(|t| typegen::index_line(t)).collect();
        let index = index.join("\n");
        if index.len() <= INDEX_BUDGET {
            text.push_str("\nIndex (call `search_tools` for the argument and result types before using a tool):\n");
            text.push_str(&index);
        } else {
            text.push_str(
                "\nNamespaces (call `search_tools` with keywords to find tools and their types):\n",
            );
            for namespace in catalog.namespaces() {
                text.push_str(&format!(
                    "- tools.{}: {} tools\n",
                    namespace.name,
                    namespace.tools.len()
                ));
            }
        }
    }
    let down = unavailable(catalog);
    if !down.is_empty() {
        text.push_str("\n\n");
        text.push_str(&down);
    }
    text
}

/// Lines naming the upstreams that are not ready, or nothing.
pub(super) fn unavailable(catalog: &Catalog) -> String {
    catalog
        .namespaces()
        .iter()
        .filter(|n| n.status != Status::Ready)
        .map(|n| {
            format!(
                "Server \"{}\" is {}: its tools are unavailable for now.",
                n.upstream, n.status
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The answer to `search_tools`.
pub fn search_answer(catalog: &Catalog, query: &str, detail: Detail, limit: usize) -> String {
    let found = catalog.search(query, limit);
    let mut text = if found.is_empty() {
        let namespaces: Vec<String> = catalog
            .namespaces()
            .iter()
            .map(|n| format!("tools.{} ({} tools)", n.name, n.tools.len()))
            .collect();
        if namespaces.is_empty() {
            "No tools are connected.".to_string()
        } else {
            format!(
                "No tool matches \"{query}\". Namespaces: {}. Try other words, or an empty query to list everything.",
                namespaces.join(", ")
            )
        }
    } else {
        let parts: Vec<String> = found
            .iter()
            .map(|tool| match detail {
                Detail::Names => typegen::index_line(tool),
                Detail::Signatures | Detail::Full => format!(
                    "// tools.{}\n{}",
                    tool.qualified(),
                    typegen::function_declaration(tool)
                ),
            })
            .collect();
        match detail {
            Detail::Names => parts.join("\n"),
            Detail::Signatures => format!("```ts\n{}```", parts.join("\n")),
            Detail::Full => format!(
                "```ts\n{}\n{}```",
                typegen::TOOL_ERROR_DECLARATION,
                parts.join("\n")
            ),
        }
    };
    let down = unavailable(catalog);
    if !down.is_empty() {
        text.push_str("\n\n");
        text.push_str(&down);
    }
    text
}
