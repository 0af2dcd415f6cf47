//! The one prompt, `write-a-program`: how to write a code-mode program, with the
//! declarations of the tools connected now.

use rmcp::{
    ErrorData as McpError,
    model::{CacheScope, GetPromptResult, ListPromptsResult, Prompt, PromptMessage, Role},
};

use crate::{catalog::Catalog, typegen};

/// How long a client may cache the prompt list.
const PROMPTS_TTL_MS: u64 = 3_600_000;

/// The prompt on writing code-mode programs.
const WRITING_PROGRAMS_PROMPT: &str = include_str!("../../prompts/write-a-program.md");

/// `prompts/list`.
pub(super) fn list() -> ListPromptsResult {
    // The one prompt is fixed for the life of the server.
    ListPromptsResult::with_all_items(vec![Prompt::new(
        "write-a-program",
        Some("How to write one code-mode program against the connected tools, with an example"),
        None,
    )])
    .with_ttl_ms(PROMPTS_TTL_MS)
    .with_cache_scope(CacheScope::Public)
}

/// `prompts/get`.
pub(super) fn get(catalog: &Catalog, name: &str) -> Result<GetPromptResult, McpError> {
    if name != "write-a-program" {
        return Err(McpError::invalid_params(
            format!("no prompt \"{name}\"; the prompts are: write-a-program"),
            None,
        ));
    }
    let text = format!(
        "{}\n\n## The tools connected now\n\n```ts\n{}```",
        WRITING_PROGRAMS_PROMPT.trim_end(),
        typegen::all_declarations(catalog)
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description("Writing code-mode programs"),
    )
}
