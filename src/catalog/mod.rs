//! The single list of callable tools: each upstream's, under namespace = its key in
//! `mcpServers`, and the built-in tools written in Rust ([`builtin`]), with MCP names
//! mapped to JS identifiers deterministically (the rule is in `names`). A tool whose
//! schemas are past the `limits` is left out, alone, with a warning. Argument validation
//! and word search live here too.

mod builtin;
mod learned;
mod limits;
mod names;
mod search;

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

use crate::{
    policy::{Access, Flow, Policy},
    tenants::Tenancy,
    upstream::{Snapshot, Status, Upstreams},
};

pub(crate) use builtin::on_behalf_of;
pub use builtin::{
    BuiltinHandler, BuiltinTool, Builtins, Caller, Taint, ToolSource, portable_schema,
};
pub use learned::{LearnedShape, LearnedTypes};
pub use limits::{MAX_SCHEMA_DEPTH, MAX_SCHEMA_EXPANSION, MAX_TOOL_BYTES, SchemaLimit};
pub(crate) use names::is_identifier;
pub use names::to_identifier;
pub use search::Detail;

/// One callable tool.
#[derive(Debug)]
pub struct CatalogTool {
    /// Where it comes from: the upstream's key in `mcpServers`, or the built-in namespace.
    pub upstream: String,
    /// Whether it is a built-in tool, answered in process.
    pub builtin: bool,
    /// Allowed, or allowed once the user confirms (denied tools are not in the catalog).
    pub access: Access,
    /// Whether the data-flow guard counts it as an untrusted source, a sink, or both.
    pub flow: Flow,
    /// `tools.<namespace>` in programs.
    pub namespace: String,
    /// `tools.<namespace>.<js_name>` in programs: always an identifier, never a reserved
    /// word or a name objects already have.
    pub js_name: String,
    /// The tool's MCP name, as the upstream knows it.
    pub mcp_name: String,
    /// The tool as the upstream listed it.
    pub tool: Tool,
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    /// Where the shapes of its results are learned: upstream tools without an
    /// `outputSchema` only.
    learned: Option<Arc<LearnedTypes>>,
}

/// Why arguments were refused before any upstream saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentError {
    /// What is wrong, naming the argument's path.
    pub message: String,
    /// JSON pointer into the tool's `inputSchema` of the keyword that failed.
    pub schema_path: String,
}

impl CatalogTool {
    /// `namespace.js_name`, as programs write it after `tools.`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.js_name)
    }

    /// The MCP name, where it reaches the tool too as `tools.<namespace>["<name>"]`: when
    /// it is not the JS name (and is neither `then` nor `toJSON`).
    pub fn alias(&self) -> Option<&str> {
        names::alias(&self.mcp_name, &self.js_name)
    }

    /// Whether programs reach this tool as `tools.<namespace>.<name>` or
    /// `tools.<namespace>["<name>"]`.
    fn answers_to(&self, name: &str) -> bool {
        self.js_name == name || self.alias() == Some(name)
    }

    /// The input schema.
    pub fn input_schema(&self) -> &JsonObject {
        &self.tool.input_schema
    }

    /// The output schema, if declared.
    pub fn output_schema(&self) -> Option<&JsonObject> {
        self.tool.output_schema.as_deref()
    }

    /// The shape learned from this tool's results so far, when it declares none.
    pub fn learned_return(&self) -> Option<LearnedShape> {
        self.learned.as_ref()?.shape(&self.upstream, &self.mcp_name)
    }

    /// Records one successful result, when this tool's return type is being learned.
    pub fn observe_result(&self, result: &Value) {
        if let Some(learned) = &self.learned {
            learned.observe(&self.upstream, &self.mcp_name, result);
        }
    }

    /// Checks `arguments` against the input schema. A schema that does not compile is
    /// not held against the caller: the upstream judges the arguments then.
    pub fn validate(&self, arguments: &Value) -> Result<(), ArgumentError> {
        let validator = self.validator.get_or_init(|| {
            jsonschema::validator_for(&Value::Object(self.input_schema().clone()))
                .map_err(|e| e.to_string())
        });
        let Ok(validator) = validator else {
            return Ok(());
        };
        let Some(error) = validator.iter_errors(arguments).next() else {
            return Ok(());
        };
        let at = error.instance_path().to_string();
        let at = if at.is_empty() {
            "args".to_string()
        } else {
            format!("args{}", pointer_to_path(&at))
        };
        Err(ArgumentError {
            message: format!("{at}: {error}"),
            schema_path: error.schema_path().to_string(),
        })
    }
}

/// `/items/0/name` -> `.items[0].name`
fn pointer_to_path(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| {
            let part = part.replace("~1", "/").replace("~0", "~");
            if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
                format!("[{part}]")
            } else if names::is_identifier(&part) {
                format!(".{part}")
            } else {
                format!("[{}]", serde_json::to_string(&part).unwrap_or_default())
            }
        })
        .collect()
}

/// The tools of one upstream.
#[derive(Debug)]
pub struct Namespace {
    /// The upstream's key in `mcpServers`.
    pub upstream: String,
    /// `tools.<name>` in programs.
    pub name: String,
    /// `stdio`, `http`, `sse`, or `builtin`.
    pub transport: &'static str,
    /// Connection state when the catalog was built.
    pub status: Status,
    /// Its tools, by JS name.
    pub tools: Vec<Arc<CatalogTool>>,
}

/// The host's own namespaces that programs also reach as globals (`state.get(...)`).
pub const GLOBAL_NAMESPACES: &[&str] = &["state", "skills"];

/// The transport a built-in namespace shows.
pub const BUILTIN_TRANSPORT: &str = "builtin";

/// All callable tools at one moment; rebuilt when an upstream changes.
#[derive(Debug, Default)]
pub struct Catalog {
    namespaces: Vec<Namespace>,
    /// Each tool the policy denies, for the pre-flight scan.
    denied: Vec<Denied>,
}

/// A tool the policy denies, by the names a program could write for it.
#[derive(Debug)]
struct Denied {
    namespace: String,
    js_name: String,
    alias: Option<String>,
}

impl Catalog {
    /// The catalog of the upstreams as they are now and the built-in tools, less what
    /// `policy` denies.
    pub fn build(
        upstreams: &Upstreams,
        builtins: &Builtins,
        policy: &Policy,
        learned: Option<&Arc<LearnedTypes>>,
    ) -> Self {
        let mut snapshots: Vec<Snapshot> = upstreams.iter().map(|u| u.snapshot()).collect();
        snapshots.extend(
            builtins
                .namespaces()
                .into_iter()
                .map(|(name, tools)| Snapshot {
                    name: name.to_string(),
                    transport: BUILTIN_TRANSPORT,
                    status: Status::Ready,
                    tools: Arc::new(tools.iter().map(|t| t.tool().clone()).collect()),
                    ready_in: None,
                    last_words: String::new(),
                }),
        );
        Self::learning(snapshots, policy, learned)
    }

    /// The catalog of these upstream states, less what `policy` denies.
    pub fn from_snapshots(snapshots: Vec<Snapshot>, policy: &Policy) -> Self {
        Self::learning(snapshots, policy, None)
    }

    /// [`Self::from_snapshots`], learning the return types of upstream tools that declare
    /// none into `learned`.
    fn learning(
        mut snapshots: Vec<Snapshot>,
        policy: &Policy,
        learned: Option<&Arc<LearnedTypes>>,
    ) -> Self {
        snapshots.sort_by(|a, b| a.name.cmp(&b.name));
        // `tools.$search` and `tools.$describe` are the host's: no namespace begins with `$`.
        let shown: Vec<String> = snapshots
            .iter()
            .map(|s| match s.name.strip_prefix('$') {
                Some(rest) => format!("_{rest}"),
                None => s.name.clone(),
            })
            .collect();
        let namespace_names = names::assign(shown.iter().map(String::as_str).collect());
        let mut denied = Vec::new();
        let namespaces = snapshots
            .into_iter()
            .zip(namespace_names)
            .filter_map(|(snapshot, namespace)| {
                let mut tools: Vec<&Tool> = snapshot.tools.iter().collect();
                tools.sort_by(|a, b| a.name.cmp(&b.name));
                // Calls go upstream by MCP name: a second tool of the same name could only
                // ever reach the first.
                tools.dedup_by(|later, first| {
                    let same = later.name == first.name;
                    if same {
                        tracing::warn!(
                            upstream = %snapshot.name,
                            tool = %later.name,
                            "tool left out of the catalog: the server lists a tool of this name more than once; the first is kept"
                        );
                    }
                    same
                });
                // Names are given before anything is left out, so that they depend on the
                // names the upstream lists alone.
                let js_names = names::assign(tools.iter().map(|t| t.name.as_ref()).collect());
                let listed = tools.len();
                let tools: Vec<Arc<CatalogTool>> = tools
                    .into_iter()
                    .zip(js_names)
                    .filter_map(|(tool, js_name)| match limits::admit(tool) {
                        Ok(admitted) => Some((tool, js_name, admitted)),
                        Err(limit) => {
                            tracing::warn!(
                                upstream = %snapshot.name,
                                tool = %tool.name,
                                "tool left out of the catalog: {limit}"
                            );
                            None
                        }
                    })
                    .filter_map(|(tool, js_name, admitted)| {
                        let access = policy.access(&snapshot.name, tool, &namespace, &js_name);
                        // What the principal's overlays deny is left out unseen, even where
                        // the server denies it too: a refusal would name it.
                        let narrowed = policy.narrow(access, &snapshot.name, tool, &namespace, &js_name);
                        if access == Access::Deny
                            && policy.narrow(Access::Allow, &snapshot.name, tool, &namespace, &js_name)
                                != Access::Deny
                        {
                            denied.push(Denied {
                                namespace: namespace.clone(),
                                alias: names::alias(&tool.name, &js_name).map(str::to_string),
                                js_name: js_name.clone(),
                            });
                        }
                        (narrowed != Access::Deny).then_some((tool, js_name, narrowed, admitted))
                    })
                    .map(|(tool, js_name, access, admitted)| {
                        let validator = OnceLock::new();
                        if !admitted.validate {
                            let _ = validator.set(Err(
                                "its $refs are not all ones this server can follow".to_string()
                            ));
                        }
                        Arc::new(CatalogTool {
                            upstream: snapshot.name.clone(),
                            builtin: snapshot.transport == BUILTIN_TRANSPORT,
                            access,
                            flow: policy.flow(&snapshot.name, tool, &namespace, &js_name),
                            namespace: namespace.clone(),
                            js_name,
                            mcp_name: tool.name.to_string(),
                            tool: tool.clone(),
                            validator,
                            learned: learned
                                .filter(|_| {
                                    snapshot.transport != BUILTIN_TRANSPORT
                                        && tool.output_schema.is_none()
                                })
                                .cloned(),
                        })
                    })
                    .collect();
                // A namespace whose every tool the principal's overlays hide is hidden too,
                // and so is one that lists none now (down) whose tools they would deny.
                let hidden = policy.is_narrowed()
                    && tools.is_empty()
                    && (listed > 0 || policy.hides_namespace(&snapshot.name, &namespace));
                (!hidden).then(|| Namespace {
                    upstream: snapshot.name,
                    name: namespace,
                    transport: snapshot.transport,
                    status: snapshot.status,
                    tools,
                })
            })
            .collect();
        Self { namespaces, denied }
    }

    /// Whether the policy denies `tools.<namespace>.<name>`, by JS or MCP name.
    pub fn is_denied(&self, namespace: &str, name: &str) -> bool {
        self.denied.iter().any(|d| {
            d.namespace == namespace && (d.js_name == name || d.alias.as_deref() == Some(name))
        })
    }

    /// Namespaces, sorted by name.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// Every tool, namespace by namespace.
    pub fn tools(&self) -> impl Iterator<Item = &Arc<CatalogTool>> {
        self.namespaces.iter().flat_map(|n| n.tools.iter())
    }

    /// The tool a program calls as `tools.<namespace>.<name>`, by JS name or, where it is
    /// an alias, MCP name. The two never clash: a JS name is always a safe identifier, an
    /// alias never is (a safe MCP name is its own JS name).
    pub fn find(&self, namespace: &str, name: &str) -> Option<&Arc<CatalogTool>> {
        self.namespaces
            .iter()
            .find(|n| n.name == namespace)?
            .tools
            .iter()
            .find(|t| t.answers_to(name))
    }

    /// What programs see as `tools`.
    pub fn bindings(&self) -> Vec<crate::sandbox::Binding> {
        self.namespaces
            .iter()
            .map(|n| crate::sandbox::Binding {
                namespace: n.name.clone(),
                tools: n.tools.iter().map(|t| t.js_name.clone()).collect(),
                aliases: n
                    .tools
                    .iter()
                    .filter_map(|t| {
                        Some(crate::sandbox::Alias {
                            name: t.alias()?.to_string(),
                            tool: t.js_name.clone(),
                        })
                    })
                    .collect(),
                global: n.transport == BUILTIN_TRANSPORT
                    && GLOBAL_NAMESPACES.contains(&n.name.as_str()),
                unavailable: (n.status != Status::Ready).then(|| {
                    format!(
                        "its server \"{}\" (mcpServers.{}) is {}",
                        n.upstream, n.upstream, n.status
                    )
                }),
            })
            .collect()
    }

    /// Whether there is nothing to call.
    pub fn is_empty(&self) -> bool {
        self.namespaces.iter().all(|n| n.tools.is_empty())
    }
}

/// The catalog of live upstreams and the built-in tools under a policy, rebuilt when an
/// upstream changes.
#[derive(Debug)]
pub struct LiveCatalog {
    upstreams: Arc<Upstreams>,
    builtins: Arc<Builtins>,
    policy: Policy,
    learned: Arc<LearnedTypes>,
    cached: RwLock<(u64, Arc<Catalog>)>,
    /// The catalogs principals with overlays see, by [`Tenancy::key`], for the generation
    /// they were built at.
    narrowed: RwLock<(u64, HashMap<String, Arc<Catalog>>)>,
}

/// Distinct overlay combinations whose catalogs are kept at once; past it they are built
/// again as asked (a combination is which overlays match a principal, so few in practice).
const NARROWED_CATALOGS: usize = 256;

impl LiveCatalog {
    /// The catalog of `upstreams`, with the default policy.
    pub fn new(upstreams: Arc<Upstreams>) -> Self {
        Self::with(upstreams, Arc::new(Builtins::none()), Policy::default())
    }

    /// The catalog of `upstreams` and `builtins`, less what `policy` denies.
    pub fn with(upstreams: Arc<Upstreams>, builtins: Arc<Builtins>, policy: Policy) -> Self {
        Self::learning(
            upstreams,
            builtins,
            policy,
            Arc::new(LearnedTypes::in_memory()),
        )
    }

    /// [`Self::with`], learning the return types of tools that declare none into
    /// `learned`.
    pub fn learning(
        upstreams: Arc<Upstreams>,
        builtins: Arc<Builtins>,
        policy: Policy,
        learned: Arc<LearnedTypes>,
    ) -> Self {
        let generation = upstreams.generation().wrapping_add(builtins.generation());
        let catalog = Arc::new(Catalog::build(
            &upstreams,
            &builtins,
            &policy,
            Some(&learned),
        ));
        Self {
            upstreams,
            builtins,
            policy,
            learned,
            cached: RwLock::new((generation, catalog)),
            narrowed: RwLock::default(),
        }
    }

    /// A catalog with no tools.
    pub fn empty() -> Self {
        Self::new(Upstreams::none())
    }

    /// The upstreams behind the catalog.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// The policy the catalog follows.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The built-in tools in the catalog.
    pub fn builtins(&self) -> &Arc<Builtins> {
        &self.builtins
    }

    /// Changes whenever an upstream's tools or a built-in namespace's change.
    fn generation(&self) -> u64 {
        self.upstreams
            .generation()
            .wrapping_add(self.builtins.generation())
    }

    /// The catalog as of now.
    pub fn current(&self) -> Arc<Catalog> {
        let generation = self.generation();
        {
            let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
            if cached.0 == generation {
                return cached.1.clone();
            }
        }
        let catalog = Arc::new(Catalog::build(
            &self.upstreams,
            &self.builtins,
            &self.policy,
            Some(&self.learned),
        ));
        let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
        *cached = (generation, catalog.clone());
        catalog
    }

    /// The catalog as of now for a principal under `tenancy`: less what its overlays deny
    /// (left out unseen), asking where they ask.
    pub fn current_for(&self, tenancy: &Tenancy) -> Arc<Catalog> {
        if tenancy.is_unrestricted() {
            return self.current();
        }
        let generation = self.generation();
        {
            let narrowed = self.narrowed.read().unwrap_or_else(|e| e.into_inner());
            if narrowed.0 == generation
                && let Some(catalog) = narrowed.1.get(tenancy.key())
            {
                return catalog.clone();
            }
        }
        let policy = self.policy.narrowed(tenancy.narrowing().to_vec());
        let catalog = Arc::new(Catalog::build(
            &self.upstreams,
            &self.builtins,
            &policy,
            Some(&self.learned),
        ));
        let mut narrowed = self.narrowed.write().unwrap_or_else(|e| e.into_inner());
        if narrowed.0 != generation || narrowed.1.len() >= NARROWED_CATALOGS {
            *narrowed = (generation, HashMap::new());
        }
        narrowed
            .1
            .insert(tenancy.key().to_string(), catalog.clone());
        catalog
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use rmcp::model::Tool;
    use serde_json::{Value, json};

    pub(crate) use super::limits::tests::{nested, ref_bomb};
    use super::*;
    use crate::upstream::{Snapshot, Status};

    pub(crate) fn tool(name: &str, input: Value) -> Tool {
        let Value::Object(input) = input else {
            panic!("schemas are objects")
        };
        Tool::new(
            name.to_string(),
            format!("The {name} tool."),
            Arc::new(input),
        )
    }

    pub(crate) fn snapshot(name: &str, tools: Vec<Tool>) -> Snapshot {
        Snapshot {
            name: name.to_string(),
            transport: "stdio",
            status: Status::Ready,
            tools: Arc::new(tools),
            ready_in: None,
            last_words: String::new(),
        }
    }

    /// One upstream per hostile name, each with a tool of every hostile name.
    pub(crate) fn hostile_catalog() -> Catalog {
        let tools = || {
            names::HOSTILE
                .iter()
                .map(|name| tool(name, json!({ "type": "object" })))
                .collect::<Vec<_>>()
        };
        let snapshots = names::HOSTILE
            .iter()
            .map(|name| snapshot(name, tools()))
            .collect();
        Catalog::from_snapshots(snapshots, &Policy::default())
    }

    #[test]
    fn an_overlay_hides_what_it_denies_and_never_opens_what_the_server_denies() {
        let settings: crate::config::PolicySettings =
            serde_json::from_value(json!({"rules": [{"tools": "a.gone", "action": "deny"}]}))
                .unwrap();
        let policy = Policy::new(&settings).unwrap();
        let glob = |g: &str| globset::Glob::new(g).unwrap().compile_matcher();
        let overlay = Arc::new(crate::policy::Narrowing::new(
            vec![
                (glob("a.gone"), Access::Allow),
                (glob("a.secret"), Access::Deny),
                (glob("a.ask"), Access::Confirm),
                (glob("b.*"), Access::Deny),
                (glob("down.*"), Access::Deny),
            ],
            Access::Allow,
        ));
        let schema = || json!({"type": "object"});
        let mut down = snapshot("down", Vec::new());
        down.status = Status::Connecting;
        let tools = ["gone", "secret", "ask", "open"]
            .map(|name| tool(name, schema()))
            .to_vec();
        let catalog = Catalog::from_snapshots(
            vec![
                snapshot("a", tools),
                snapshot("b", vec![tool("x", schema())]),
                down,
            ],
            &policy.narrowed(vec![overlay]),
        );
        // A namespace the overlay empties, or would deny while it lists nothing, is gone.
        let shown: Vec<&str> = catalog
            .namespaces()
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(shown, ["a"]);
        // The server's deny stays a deny programs are told of; the overlay's is unseen.
        assert!(catalog.is_denied("a", "gone") && catalog.find("a", "gone").is_none());
        assert!(!catalog.is_denied("a", "secret") && catalog.find("a", "secret").is_none());
        assert_eq!(catalog.find("a", "ask").unwrap().access, Access::Confirm);
        assert_eq!(catalog.find("a", "open").unwrap().access, Access::Allow);
    }

    #[test]
    fn hostile_names_become_safe_js_names_and_stay_reachable() {
        let catalog = hostile_catalog();
        assert_eq!(catalog.namespaces().len(), names::HOSTILE.len());
        for namespace in catalog.namespaces() {
            assert!(names::is_safe(&namespace.name), "{}", namespace.name);
            assert_eq!(namespace.name, format!("{}_", namespace.upstream));
            assert_eq!(namespace.tools.len(), names::HOSTILE.len());
            for tool in &namespace.tools {
                assert!(names::is_safe(&tool.js_name), "{}", tool.js_name);
                assert_eq!(tool.js_name, format!("{}_", tool.mcp_name));
                let found = catalog.find(&namespace.name, &tool.js_name);
                assert!(found.is_some_and(|t| Arc::ptr_eq(t, tool)));
                let by_mcp_name = catalog.find(&namespace.name, &tool.mcp_name);
                if ["then", "toJSON"].contains(&tool.mcp_name.as_str()) {
                    assert!(by_mcp_name.is_none(), "{}", tool.mcp_name);
                } else {
                    assert!(by_mcp_name.is_some_and(|t| Arc::ptr_eq(t, tool)));
                }
            }
        }
        let bindings = catalog.bindings();
        let delete = bindings
            .iter()
            .find(|b| b.namespace == "delete_")
            .expect("the namespace of the upstream called delete");
        assert!(delete.tools.contains(&"__proto___".to_string()));
        assert!(delete.aliases.contains(&crate::sandbox::Alias {
            name: "__proto__".into(),
            tool: "__proto___".into(),
        }));
        assert!(!delete.aliases.iter().any(|a| a.name == "then"));
        assert_eq!(delete.aliases.len(), names::HOSTILE.len() - 2);
    }

    /// Answers every call with the name it reached the host under.
    struct Echo;

    impl crate::sandbox::ToolHost for Echo {
        fn call_tool(&self, call: crate::sandbox::ToolCall) -> crate::sandbox::ReplyFuture {
            let name = Value::from(format!("{}.{}", call.namespace, call.tool));
            Box::pin(std::future::ready(crate::sandbox::ToolReply::Ok(
                name.to_string(),
            )))
        }
    }

    /// The value `code` returns with `catalog`'s tools, on the default engine.
    fn run(catalog: &Catalog, code: &str) -> Value {
        use crate::sandbox::{CancelHandle, Engine, EngineKind, Limits, RunRequest};
        let limits = Limits {
            timeout: std::time::Duration::from_secs(5),
            ..Limits::default()
        };
        let request = RunRequest {
            js: crate::transpile::transpile(code).expect("parses").js,
            program_lines: crate::transpile::line_count(code),
            bindings: catalog.bindings(),
            fetch: false,
            limits,
        };
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(Engine::new(EngineKind::default()).run(
                &request,
                &CancelHandle::default(),
                Arc::new(Echo),
            ));
        match outcome.result {
            Ok(value) => serde_json::from_str(&value.json).expect("JSON"),
            Err(error) => panic!("{code}\n=> {error:?}"),
        }
    }

    #[test]
    fn programs_reach_hostile_names_by_both_names_and_namespaces_stay_plain() {
        let catalog = hostile_catalog();
        assert_eq!(run(&catalog, "return 1;"), json!(1));
        let js_names: Vec<String> = names::HOSTILE.iter().map(|n| format!("{n}_")).collect();
        let code = r#"
            const report = { namespaces: Object.keys(tools), problems: [] };
            for (const ns of Object.keys(tools)) {
              const space = tools[ns];
              const names = Object.keys(space);
              if (names.length !== 62) report.problems.push(ns + " lists " + names.length);
              for (const name of names) {
                if (typeof space[name] !== "function") report.problems.push(ns + "." + name);
                const original = name.slice(0, -1);
                const alias = space[original];
                const expected = original === "then" || original === "toJSON" ? undefined : space[name];
                if (alias !== expected) report.problems.push(ns + "[" + original + "]");
              }
              if (Object.getPrototypeOf(space) !== null) report.problems.push(ns + " has a prototype");
            }
            report.awaited = (await tools.then_) === tools.then_ && (await tools.delete_) === tools.delete_;
            report.json = JSON.stringify(tools.toJSON_);
            report.calls = await Promise.all([
              tools.delete_["__proto__"]({}),
              tools.__proto___.constructor({}),
              tools.class_.then_({}),
              tools.eval_["valueOf"]({}),
            ]);
            try { tools.delete_.nope; } catch (e) { report.unknown = e.message; }
            return report;
        "#;
        let report = run(&catalog, code);
        assert_eq!(report["problems"], json!([]), "{report:#}");
        let mut namespaces = js_names.clone();
        namespaces.sort();
        let mut listed: Vec<String> =
            serde_json::from_value(report["namespaces"].clone()).expect("names");
        listed.sort();
        assert_eq!(listed, namespaces);
        assert_eq!(report["awaited"], true);
        assert_eq!(report["json"], "{}");
        assert_eq!(
            report["calls"],
            json!([
                "delete_.__proto___",
                "__proto___.constructor_",
                "class_.then_",
                "eval_.valueOf_"
            ])
        );
        let unknown = report["unknown"].as_str().expect("a ToolError");
        assert!(
            unknown.starts_with("tools.delete_.nope does not exist. tools.delete_ has: "),
            "{unknown}"
        );
        assert!(!unknown.contains("__proto__,"), "{unknown}");
    }

    #[test]
    fn denied_tools_are_denied_by_either_name() {
        let settings: crate::config::PolicySettings = serde_json::from_value(json!({
            "rules": [{ "tools": "up.delete", "action": "deny" }]
        }))
        .expect("settings");
        let policy = Policy::new(&settings).expect("policy");
        let catalog = Catalog::from_snapshots(
            vec![snapshot(
                "up",
                vec![
                    tool("delete", json!({ "type": "object" })),
                    tool("get-sum", json!({ "type": "object" })),
                ],
            )],
            &policy,
        );
        assert!(catalog.is_denied("up", "delete_"));
        assert!(catalog.is_denied("up", "delete"));
        assert!(catalog.find("up", "delete").is_none());
        assert!(!catalog.is_denied("up", "get-sum"));
        assert!(catalog.find("up", "get-sum").is_some());
    }

    #[test]
    fn a_tool_listed_twice_is_kept_once() {
        let catalog = Catalog::from_snapshots(
            vec![snapshot(
                "up",
                vec![
                    tool("a-b", json!({ "type": "object" })),
                    tool("a-b", json!({ "type": "string" })),
                ],
            )],
            &Policy::default(),
        );
        let tools = &catalog.namespaces()[0].tools;
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].input_schema()["type"], "object");
        assert_eq!(catalog.bindings()[0].aliases.len(), 1);
    }

    #[test]
    fn a_tool_past_a_limit_is_left_out_alone_with_the_others_named_as_before() {
        let deep = nested(300);
        let big = json!({ "type": "object", "description": "x".repeat(MAX_TOOL_BYTES) });
        let bomb = ref_bomb(40);
        let catalog = Catalog::from_snapshots(
            vec![snapshot(
                "up",
                vec![
                    tool("get-sum", deep),
                    tool("get.sum", json!({ "type": "object" })),
                    tool("big", big),
                    tool("bomb", bomb),
                    tool("read", json!({ "type": "object" })),
                ],
            )],
            &Policy::default(),
        );
        let names: Vec<&str> = catalog.tools().map(|t| t.js_name.as_str()).collect();
        // `get.sum` keeps the name it has beside `get-sum`, listed or not.
        assert_eq!(names, ["get_sum_2", "read"]);
    }

    #[test]
    fn arguments_of_a_schema_whose_refs_cannot_be_followed_are_left_to_the_upstream() {
        let catalog = Catalog::from_snapshots(
            vec![snapshot(
                "up",
                vec![tool(
                    "t",
                    json!({ "type": "object", "properties": { "a": { "$ref": "#anchor" } }, "required": ["a"] }),
                )],
            )],
            &Policy::default(),
        );
        let tool = catalog.find("up", "t").expect("listed");
        assert_eq!(tool.validate(&json!({})), Ok(()));
    }
}
