//! The resources: the declarations (`codemode://types/all.d.ts` and one `.d.ts` per namespace,
//! for clients that show or cache what programs can call), and the whole outputs of answers
//! the budget cut, each its owner's (`codemode://executions/ID/output`).

use rmcp::{
    ErrorData as McpError,
    model::{CacheScope, ListResourcesResult, ReadResourceResult, Resource, ResourceContents},
};

use crate::{catalog::Catalog, typegen};

/// URI of the declarations of every namespace.
const ALL_TYPES_URI: &str = "codemode://types/all.d.ts";

/// `resources/list`.
pub(super) fn list(catalog: &Catalog) -> ListResourcesResult {
    let mut resources = vec![
        Resource::new(ALL_TYPES_URI, "all.d.ts")
            .with_description("TypeScript declarations of every tool programs can call")
            .with_mime_type("application/typescript"),
    ];
    for namespace in catalog.namespaces() {
        resources.push(
            Resource::new(
                format!("codemode://types/{}.d.ts", namespace.name),
                format!("{}.d.ts", namespace.name),
            )
            .with_description(format!(
                "TypeScript declarations of tools.{}",
                namespace.name
            ))
            .with_mime_type("application/typescript"),
        );
    }
    // A namespace's declarations come and go with its upstream, as the tools do.
    ListResourcesResult::with_all_items(resources)
        .with_ttl_ms(0)
        .with_cache_scope(CacheScope::Private)
}

/// `resources/read` of a whole output the budget cut (see [`super::outputs`]): the text
/// block and the structured content, whole.
pub(super) fn whole_output(
    whole: Result<super::outputs::Whole, String>,
    uri: String,
) -> Result<ReadResourceResult, McpError> {
    match whole {
        Ok(whole) => Ok(ReadResourceResult::new(vec![
            ResourceContents::text(whole.text, uri.clone()).with_mime_type("text/plain"),
            ResourceContents::text(whole.structured, uri).with_mime_type("application/json"),
        ])),
        Err(message) => Err(McpError::resource_not_found(message, None)),
    }
}

/// `resources/read`.
pub(super) fn read(catalog: &Catalog, uri: String) -> Result<ReadResourceResult, McpError> {
    let text = if uri == ALL_TYPES_URI {
        Some(typegen::all_declarations(catalog))
    } else {
        uri.strip_prefix("codemode://types/")
            .and_then(|rest| rest.strip_suffix(".d.ts"))
            .and_then(|name| catalog.namespaces().iter().find(|n| n.name == name))
            .map(typegen::namespace_declarations)
    };
    match text {
        Some(text) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )])),
        None => Err(McpError::resource_not_found(
            format!("no resource {uri}; resources/list shows what exists"),
            None,
        )),
    }
}
