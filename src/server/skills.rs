//! The saved-skill tools of the server (where `codemode.skills.path` is set):
//! `save_skill`, `list_skills`, `delete_skill`, and each skill as an MCP tool of its own
//! (`skill_<name>`, where `asTools` is on). The store itself is [`crate::skills`].

use std::sync::Arc;

use rmcp::{
    ErrorData as McpError, RoleServer,
    handler::server::wrapper::Parameters,
    model::{CallToolResult, ContentBlock, JsonObject, Tool},
    service::RequestContext,
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    CodeModeServer, execute_code_output_schema, input_schema, parse_arguments, tool_error,
};

/// Input of `save_skill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveSkillInput {
    /// What programs call it by: `skills.<name>(args)`. Lowercase letters, digits and underscores, starting with a letter. Saving an existing name adds a version.
    pub name: String,
    /// What it does, what it takes and what it returns, for whoever calls it later.
    pub description: String,
    /// The program, written like an execute_code program (the body of an async function: `await` and `return` work); it reads its arguments as `args`.
    pub code: String,
    /// JSON Schema of `args` (an object schema); calls are checked against it. Default: any object.
    pub input_schema: Option<JsonObject>,
}

/// Input of `delete_skill`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteSkillInput {
    /// The skill.
    pub name: String,
    /// One version to delete (the one before becomes current); omitted: every version.
    #[schemars(range(min = 1))]
    pub version: Option<u32>,
}

/// Input of `list_skills`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSkillsInput {}

#[tool_router(router = skills_router, vis = "pub(super)")]
impl CodeModeServer {
    #[tool(
        name = "save_skill",
        title = "Save a program as a skill",
        description = "Save a code-mode program as a skill: later programs call it as `skills.<name>(args)` (also `tools.skills.<name>`), with `args` checked against inputSchema. Save a program that worked, for a task that will come again. Saving an existing name adds a version; the newest is the one called. Kept as plain files a person can review.",
        input_schema = input_schema::<SaveSkillInput>()
    )]
    async fn save_skill(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        const EXPECTED: &str = "save_skill takes {\"name\": string, \"description\": string, \"code\": string, \"inputSchema\"?: object}";
        let input: SaveSkillInput = match parse_arguments(arguments, EXPECTED) {
            Ok(input) => input,
            Err(message) => return Ok(tool_error(message)),
        };
        let Some(skills) = self.codemode.skills() else {
            return Ok(tool_error(SKILLS_OFF.to_string()));
        };
        if let Some(refusal) = self.narrowed_skill_change(&context) {
            return Ok(refusal);
        }
        Ok(
            match skills.save(
                &input.name,
                &input.description,
                &input.code,
                input.input_schema.clone(),
                &self.skill_declarations(&input, &self.catalog_for(&context)),
            ) {
                Ok(saved) => CallToolResult::success(vec![ContentBlock::text(format!(
                    "saved skills.{} version {}: programs call it as skills.{}(args); search_tools shows its declaration",
                    saved.name, saved.version, saved.name
                ))]),
                Err(err) => tool_error(format!("nothing was saved: {err}")),
            },
        )
    }

    #[tool(
        name = "list_skills",
        title = "List saved skills",
        description = "List the saved skills: name, description, input schema, current version and the versions kept.",
        input_schema = input_schema::<ListSkillsInput>()
    )]
    async fn list_skills(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        if let Err(message) = parse_arguments::<ListSkillsInput>(arguments, "list_skills takes {}")
        {
            return Ok(tool_error(message));
        }
        let Some(skills) = self.codemode.skills() else {
            return Ok(tool_error(SKILLS_OFF.to_string()));
        };
        // The skills this principal's catalog shows: an overlay's hidden ones are absent.
        let catalog = self.catalog_for(&context);
        let shown: Vec<_> = skills
            .list()
            .into_iter()
            .filter(|s| {
                catalog
                    .find(crate::skills::NAMESPACE, &s.current.name)
                    .is_some()
            })
            .collect();
        let listing = serde_json::to_string_pretty(&shown).unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(listing)]))
    }

    #[tool(
        name = "delete_skill",
        title = "Delete a saved skill",
        description = "Delete a saved skill, or one version of it (the version before becomes the one called).",
        input_schema = input_schema::<DeleteSkillInput>()
    )]
    async fn delete_skill(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        const EXPECTED: &str = "delete_skill takes {\"name\": string, \"version\"?: integer >= 1}";
        let input: DeleteSkillInput = match parse_arguments(arguments, EXPECTED) {
            Ok(input) => input,
            Err(message) => return Ok(tool_error(message)),
        };
        let Some(skills) = self.codemode.skills() else {
            return Ok(tool_error(SKILLS_OFF.to_string()));
        };
        if let Some(refusal) = self.narrowed_skill_change(&context) {
            return Ok(refusal);
        }
        Ok(match skills.delete(&input.name, input.version) {
            Ok(deleted) => {
                let left = skills
                    .get(&input.name)
                    .map_or("none left".to_string(), |s| {
                        format!("version {} is now the one called", s.version)
                    });
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "deleted skills.{} version{} {}; {left}",
                    input.name,
                    if deleted.len() == 1 { "" } else { "s" },
                    deleted
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))])
            }
            Err(err) => tool_error(format!("nothing was deleted: {err}")),
        })
    }
}

/// What the skill tools answer on a server without skills (they are not listed there).
const SKILLS_OFF: &str =
    "this server keeps no skills: codemode.skills.path is not set in its config";

/// The MCP tool name of a skill offered as a tool of its own (`codemode.skills.asTools`).
const SKILL_TOOL_PREFIX: &str = "skill_";

impl CodeModeServer {
    /// The refusal of a change to the saved skills by a principal an overlay narrows:
    /// skills are shared, and a version it saved would run with the rights of whoever
    /// calls it next.
    fn narrowed_skill_change(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Option<CallToolResult> {
        (!self.tenancy(context).is_unrestricted()).then(|| {
            tool_error(
                "nothing was changed: the saved skills are shared by every principal, and this one's rights are narrowed (codemode.tenants), so it may call skills but not save or delete them; ask an operator whose rights are not narrowed to save it".into(),
            )
        })
    }

    /// What is saved beside a skill's program: its own declaration, and the declarations
    /// of the tools its program names, as `catalog` (the saving principal's) shows them
    /// now.
    fn skill_declarations(
        &self,
        input: &SaveSkillInput,
        catalog: &crate::catalog::Catalog,
    ) -> String {
        let schema = input.input_schema.clone().map_or_else(
            || serde_json::json!({ "type": "object" }),
            serde_json::Value::Object,
        );
        let function = format!(
            "{}function {}(args: {}): Promise<unknown>;\n",
            crate::typegen::doc_comment(input.description.trim(), ""),
            input.name,
            crate::typegen::TypeWriter::new(&schema).write(&schema, 0)
        );
        let mut text = format!(
            "declare namespace skills {{\n{}}}\n",
            crate::typegen::indent(&function, "  ")
        );
        let Ok(transpiled) = crate::transpile::transpile(&input.code) else {
            return text;
        };
        let scan =
            crate::preflight::scan(&transpiled.js, crate::transpile::line_count(&input.code));
        for reference in &scan.tools {
            let Some((namespace, tool)) = reference.name.split_once('.') else {
                continue;
            };
            if let Some(tool) = catalog.find(namespace, tool) {
                text.push_str(&format!(
                    "\ndeclare namespace tools.{namespace} {{\n{}}}\n",
                    crate::typegen::indent(
                        &crate::typegen::function_declaration_as(
                            tool,
                            crate::typegen::Returns::Declared
                        ),
                        "  "
                    )
                ));
            }
        }
        text
    }

    /// Each saved skill as an MCP tool of its own, where `codemode.skills.asTools` is on:
    /// those `catalog` (the asking principal's) shows.
    pub(super) fn skill_tools(&self, catalog: &crate::catalog::Catalog) -> Vec<Tool> {
        let Some(skills) = self.codemode.skills().filter(|s| s.as_tools()) else {
            return Vec::new();
        };
        skills
            .list()
            .into_iter()
            .filter(|skill| catalog.find(crate::skills::NAMESPACE, &skill.current.name).is_some())
            .map(|skill| {
                Tool::new(
                    format!("{SKILL_TOOL_PREFIX}{}", skill.current.name),
                    format!(
                        "{}\n\n(A saved code-mode skill, version {}; its answer is shaped like execute_code's.)",
                        skill.current.description, skill.current.version
                    ),
                    Arc::new(skill.current.input_schema),
                )
                .with_raw_output_schema(execute_code_output_schema())
            })
            .collect()
    }

    /// The program a call of MCP tool `name` stands for, when it is a saved skill offered
    /// as a tool: one line, so the call takes the path of every program (argument
    /// validation, the policy, the limits, the audit log).
    pub(super) fn skill_tool_program(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Option<String> {
        let skill = name.strip_prefix(SKILL_TOOL_PREFIX)?;
        let skills = self.codemode.skills().filter(|s| s.as_tools())?;
        skills.get(skill)?;
        let arguments = serde_json::Value::Object(arguments.unwrap_or_default());
        Some(format!("return await tools.skills.{skill}({arguments});"))
    }
}
