//! The token benchmark: five realistic multi-step tasks over the reference MCP servers
//! (filesystem and memory, from npm), each done two ways by a scripted agent against the
//! real servers, with every token that crosses the model's context counted by a real
//! tokenizer (OpenAI's o200k_base BPE, bundled in `tiktoken-rs`: no download):
//!
//! - **tool calling**: the model's prompt holds every tool's name, description and input
//!   schema; it calls one tool per turn and each result joins its context for all later
//!   turns;
//! - **code mode**: the prompt holds `execute_code` (its contract and the TypeScript
//!   declarations); the model writes one program and reads only what it returns.
//!
//! Each turn costs its whole input (prompt + history) plus its output. The scripted agent
//! replays the plan a capable model would follow (no model runs), and both ways must reach
//! the same answer, computed from what the servers really returned.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use codemode_mcp::{CodeMode, config::Config, server::execute_code_description};
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, Tool},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tiktoken_rs::CoreBPE;

/// What one way of doing a task cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Model turns.
    pub turns: usize,
    /// Tokens the model read, summed over turns.
    pub input: usize,
    /// Tokens the model wrote.
    pub output: usize,
    /// Characters of the `execute_code` answer the model read (code mode only).
    pub answer_chars: usize,
}

impl Cost {
    /// Input and output.
    pub fn total(&self) -> usize {
        self.input + self.output
    }
}

/// One task, both ways.
#[derive(Debug, Clone)]
pub struct Report {
    /// The task, as the user asked it.
    pub task: &'static str,
    /// One tool call per turn.
    pub calling: Cost,
    /// One program.
    pub code_mode: Cost,
    /// Tool calls the program made inside one execution.
    pub calls_in_program: usize,
}

/// A conversation's running token count.
struct Transcript<'a> {
    bpe: &'a CoreBPE,
    prompt: usize,
    history: usize,
    cost: Cost,
}

impl<'a> Transcript<'a> {
    fn new(bpe: &'a CoreBPE, prompt: &str) -> Self {
        Self {
            bpe,
            prompt: count(bpe, prompt),
            history: 0,
            cost: Cost::default(),
        }
    }

    /// The model reads everything so far, writes `call`, and `result` comes back.
    fn turn(&mut self, call: &str, result: &str) {
        self.cost.turns += 1;
        self.cost.input += self.prompt + self.history;
        let written = count(self.bpe, call);
        self.cost.output += written;
        self.history += written + count(self.bpe, result);
    }

    /// The model reads everything and writes its answer.
    fn answer(mut self, answer: &str) -> Cost {
        self.cost.turns += 1;
        self.cost.input += self.prompt + self.history;
        self.cost.output += count(self.bpe, answer);
        self.cost
    }
}

fn count(bpe: &CoreBPE, text: &str) -> usize {
    bpe.encode_ordinary(text).len()
}

/// The reference servers, started for one run over a data set made here.
pub struct Lab {
    root: PathBuf,
    filesystem: RunningService<RoleClient, ()>,
    memory: RunningService<RoleClient, ()>,
    codemode: CodeMode,
    bpe: CoreBPE,
}

/// Where the npm reference servers are: `CODEMODE_TEST_NPM_BIN` (set by `scripts/test`
/// and `scripts/bench`), else the cache they install into.
pub fn npm_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("CODEMODE_TEST_NPM_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/codemode-mcp/npm/node_modules/.bin"))
        })?;
    dir.join("mcp-server-filesystem").exists().then_some(dir)
}

const COMPANIES: [&str; 4] = ["Acme", "Globex", "Initech", "Umbrella"];
const CITIES: [&str; 5] = ["Oslo", "Lisbon", "Cairo", "Osaka", "Santiago"];

impl Lab {
    /// Writes the data set under a new directory and starts the servers (twice: once for
    /// the tool-calling agent's own client, once behind code mode).
    pub async fn start(npm_bin: &Path) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("codemode-scenarios-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let project = root.join("project");
        for dir in ["src/core", "src/net", "docs", "data", "logs"] {
            std::fs::create_dir_all(project.join(dir))?;
        }
        for i in 0..18 {
            let dir = if i % 2 == 0 { "src/core" } else { "src/net" };
            let body = format!("// module {i}\npub fn f{i}() -> u32 {{ {i} }}\n").repeat(1 + i * 3);
            std::fs::write(project.join(dir).join(format!("m{i}.rs")), body)?;
        }
        for i in 0..8 {
            let body = format!(
                "# Chapter {i}\n\n{}\n",
                "Words about the system. ".repeat(20 + i * 15)
            );
            std::fs::write(project.join("docs").join(format!("ch{i}.md")), body)?;
        }
        for i in 0..30 {
            let status = if i % 7 == 3 { "failed" } else { "passed" };
            let report = json!({
                "id": format!("run-{i:03}"),
                "status": status,
                "durationMs": 1000 + i * 37,
                "steps": (0..12).map(|s| json!({ "name": format!("step {s}"), "ok": !(status == "failed" && s == 7), "log": "x".repeat(40) })).collect::<Vec<_>>(),
            });
            std::fs::write(
                project.join("data").join(format!("report-{i:03}.json")),
                serde_json::to_string_pretty(&report)?,
            )?;
        }
        for i in 0..4 {
            let lines: String = (0..150)
                .map(|n| {
                    format!(
                        "2026-11-2{i}T10:{:02}:00Z INFO request {n} served in {} ms\n",
                        n % 60,
                        n % 17
                    )
                })
                .collect();
            std::fs::write(project.join("logs").join(format!("app-{i}.log")), lines)?;
        }
        let mut csv = String::from("customer,amount\n");
        for i in 0..60 {
            csv.push_str(&format!(
                "Person {},{}.{:02}\n",
                i % 40,
                20 + (i * 13) % 180,
                (i * 7) % 100
            ));
        }
        std::fs::write(root.join("orders.csv"), csv)?;

        let memory_file = root.join("memory.jsonl");
        let filesystem_command = npm_bin.join("mcp-server-filesystem");
        let memory_command = npm_bin.join("mcp-server-memory");
        let start = |command: &Path, args: Vec<String>| {
            let mut command = tokio::process::Command::new(command);
            command
                .args(args)
                .env("MEMORY_FILE_PATH", &memory_file)
                .stderr(std::process::Stdio::null());
            command
        };
        let filesystem = ()
            .serve(TokioChildProcess::new(start(
                &filesystem_command,
                vec![root.display().to_string()],
            ))?)
            .await?;
        let memory = ().serve(TokioChildProcess::new(start(&memory_command, vec![]))?).await?;
        // The knowledge graph: 40 people, each at a company and in a city.
        let entities: Vec<Value> = (0..40)
            .map(|i| {
                json!({
                    "name": format!("Person {i}"),
                    "entityType": "person",
                    "observations": [
                        format!("works at {}", COMPANIES[i % COMPANIES.len()]),
                        format!("lives in {}", CITIES[i % CITIES.len()]),
                        format!("joined in {}", 2015 + i % 10),
                        "prefers email over phone".to_string(),
                    ],
                })
            })
            .collect();
        call(&memory, "create_entities", json!({ "entities": entities })).await?;

        let config = Config::parse(
            &json!({ "mcpServers": {
                "filesystem": { "command": filesystem_command, "args": [root] },
                "memory": { "command": memory_command, "env": { "MEMORY_FILE_PATH": memory_file } },
            } })
            .to_string(),
            "scenarios",
        )?;
        let codemode = CodeMode::builder().config(config).build().await?;
        Ok(Self {
            root,
            filesystem,
            memory,
            codemode,
            bpe: tiktoken_rs::o200k_base()?,
        })
    }

    /// Runs every task both ways.
    pub async fn run_all(&self) -> anyhow::Result<Vec<Report>> {
        Ok(vec![
            self.summarise_tree().await?,
            self.find_and_update().await?,
            self.join_two_servers().await?,
            self.loop_over_many().await?,
            self.handle_errors().await?,
        ])
    }

    /// The prompt of the tool-calling agent: the task and every tool as the model sees it.
    async fn calling_prompt(&self, task: &str) -> anyhow::Result<String> {
        let mut tools: Vec<Tool> = self.filesystem.list_all_tools().await?;
        tools.extend(self.memory.list_all_tools().await?);
        let listed: Vec<Value> = tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.input_schema }))
            .collect();
        Ok(format!(
            "{task}\n\nTools:\n{}",
            serde_json::to_string(&listed)?
        ))
    }

    /// The prompt of the code-mode agent: the task and `execute_code` as served.
    fn code_prompt(&self, task: &str) -> String {
        let catalog = self.codemode.catalog();
        format!(
            "{task}\n\nTools:\n{}",
            serde_json::to_string(&json!([{
                "name": "execute_code",
                "description": execute_code_description(&catalog, None),
                "input_schema": { "type": "object", "properties": { "code": { "type": "string" }, "timeoutMs": { "type": "integer" } }, "required": ["code"] },
            }]))
            .unwrap_or_default()
        )
    }

    /// Runs `program` through code mode and returns the cost and the program's value.
    async fn code_mode(&self, task: &str, program: &str) -> anyhow::Result<(Cost, Value, usize)> {
        let execution = self.codemode.execute(program).await;
        let output = codemode_mcp::server::render_output(&execution);
        let text = codemode_mcp::server::render_text(&execution, &output);
        if let Some(error) = &output.error {
            anyhow::bail!("the {task:?} program failed: {}", error.message);
        }
        let mut transcript = Transcript::new(&self.bpe, &self.code_prompt(task));
        transcript.turn(
            &json!({ "name": "execute_code", "arguments": { "code": program } }).to_string(),
            &text,
        );
        let value = output.result.clone();
        let mut cost = transcript.answer(&value.to_string());
        cost.answer_chars = text.chars().count();
        Ok((cost, value, execution.calls.len()))
    }

    async fn summarise_tree(&self) -> anyhow::Result<Report> {
        let task = "Summarise the project/ directory: for each file extension, the number of files and their total size in bytes.";
        let project = self.root.join("project");
        let mut transcript = Transcript::new(&self.bpe, &self.calling_prompt(task).await?);
        let tree_args = json!({ "path": project });
        let tree = call(&self.filesystem, "directory_tree", tree_args.clone()).await?;
        transcript.turn(&call_text("directory_tree", &tree_args), &tree);
        let mut files = Vec::new();
        collect_files(&serde_json::from_str(&tree)?, &project, &mut files);
        let mut by_extension: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for file in &files {
            let args = json!({ "path": file });
            let info = call(&self.filesystem, "get_file_info", args.clone()).await?;
            transcript.turn(&call_text("get_file_info", &args), &info);
            let entry = by_extension.entry(extension(file)).or_default();
            entry.0 += 1;
            entry.1 += size_of(&info);
        }
        let answer = json!(by_extension);
        let calling = transcript.answer(&answer.to_string());

        let program = format!(
            r#"const root = {root:?};
const tree = JSON.parse((await tools.filesystem.directory_tree({{ path: root }})).content);
const files: string[] = [];
const walk = (nodes: any[], dir: string) => {{
  for (const n of nodes) {{
    if (n.type === "directory") walk(n.children ?? [], dir + "/" + n.name);
    else files.push(dir + "/" + n.name);
  }}
}};
walk(tree, root);
const infos = await Promise.all(files.map((path) => tools.filesystem.get_file_info({{ path }})));
const summary: Record<string, [number, number]> = {{}};
files.forEach((f, i) => {{
  const ext = f.includes(".") ? f.slice(f.lastIndexOf(".") + 1) : "";
  const size = Number(/size: (\d+)/.exec(infos[i].content)?.[1] ?? 0);
  const s = (summary[ext] ??= [0, 0]);
  s[0] += 1;
  s[1] += size;
}});
return summary;"#,
            root = project.display().to_string()
        );
        let (code_mode, value, calls) = self.code_mode(task, &program).await?;
        agree(task, &answer, &value)?;
        Ok(report(task, calling, code_mode, calls))
    }

    async fn find_and_update(&self) -> anyhow::Result<Report> {
        let task = "Find everyone who works at Acme in the knowledge graph and record the observation 'invited to the 2026 summit' for each of them; tell me who.";
        let mut transcript = Transcript::new(&self.bpe, &self.calling_prompt(task).await?);
        let search = json!({ "query": "works at Acme" });
        let found = call(&self.memory, "search_nodes", search.clone()).await?;
        transcript.turn(&call_text("search_nodes", &search), &found);
        let found: Value = serde_json::from_str(&found)?;
        let mut names: Vec<String> = found["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["observations"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o == "works at Acme"))
            })
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        let add = json!({ "observations": names.iter().map(|n| json!({ "entityName": n, "contents": ["invited to the 2026 summit (calling)"] })).collect::<Vec<_>>() });
        let added = call(&self.memory, "add_observations", add.clone()).await?;
        transcript.turn(&call_text("add_observations", &add), &added);
        let answer = json!(names);
        let calling = transcript.answer(&answer.to_string());

        let program = r#"const found = await tools.memory.search_nodes({ query: "works at Acme" });
const names = found.entities
  .filter((e) => e.observations.includes("works at Acme"))
  .map((e) => e.name)
  .sort();
await tools.memory.add_observations({
  observations: names.map((entityName) => ({ entityName, contents: ["invited to the 2026 summit"] })),
});
return names;"#;
        let (code_mode, value, calls) = self.code_mode(task, program).await?;
        agree(task, &answer, &value)?;
        Ok(report(task, calling, code_mode, calls))
    }

    async fn join_two_servers(&self) -> anyhow::Result<Report> {
        let task = "Using orders.csv (on the file server) and the knowledge graph (which says where each person works), give the total order amount per company.";
        let mut transcript = Transcript::new(&self.bpe, &self.calling_prompt(task).await?);
        let read = json!({ "path": self.root.join("orders.csv") });
        let csv = call(&self.filesystem, "read_text_file", read.clone()).await?;
        transcript.turn(&call_text("read_text_file", &read), &csv);
        let graph = call(&self.memory, "read_graph", json!({})).await?;
        transcript.turn(&call_text("read_graph", &json!({})), &graph);
        let graph: Value = serde_json::from_str(&graph)?;
        let company: BTreeMap<String, String> = graph["entities"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let works = e["observations"]
                    .as_array()?
                    .iter()
                    .find_map(|o| o.as_str()?.strip_prefix("works at "))?;
                Some((e["name"].as_str()?.to_string(), works.to_string()))
            })
            .collect();
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for line in csv.lines().skip(1) {
            let Some((customer, amount)) = line.split_once(',') else {
                continue;
            };
            if let (Some(company), Ok(amount)) = (company.get(customer), amount.parse::<f64>()) {
                *totals.entry(company.clone()).or_default() += amount;
            }
        }
        let answer = json!(
            totals
                .into_iter()
                .map(|(k, v)| (k, (v * 100.0).round() / 100.0))
                .collect::<BTreeMap<_, _>>()
        );
        let calling = transcript.answer(&answer.to_string());

        let program = format!(
            r#"const [file, graph] = await Promise.all([
  tools.filesystem.read_text_file({{ path: {csv:?} }}),
  tools.memory.read_graph({{}}),
]);
const company = new Map();
for (const e of graph.entities) {{
  const works = e.observations.find((o) => o.startsWith("works at "));
  if (works) company.set(e.name, works.slice("works at ".length));
}}
const totals: Record<string, number> = {{}};
for (const line of file.content.split("\n").slice(1)) {{
  const [customer, amount] = line.split(",");
  const c = company.get(customer);
  if (c && amount) totals[c] = (totals[c] ?? 0) + Number(amount);
}}
for (const k of Object.keys(totals)) totals[k] = Math.round(totals[k] * 100) / 100;
return Object.fromEntries(Object.entries(totals).sort());"#,
            csv = self.root.join("orders.csv").display().to_string()
        );
        let (code_mode, value, calls) = self.code_mode(task, &program).await?;
        agree(task, &answer, &value)?;
        Ok(report(task, calling, code_mode, calls))
    }

    async fn loop_over_many(&self) -> anyhow::Result<Report> {
        let task = "Which of the test reports in project/data failed, and at which step?";
        let data = self.root.join("project/data");
        let mut transcript = Transcript::new(&self.bpe, &self.calling_prompt(task).await?);
        let list = json!({ "path": data });
        let listing = call(&self.filesystem, "list_directory", list.clone()).await?;
        transcript.turn(&call_text("list_directory", &list), &listing);
        let mut failed = BTreeMap::new();
        for name in listing.lines().filter_map(|l| l.strip_prefix("[FILE] ")) {
            let args = json!({ "path": data.join(name) });
            let text = call(&self.filesystem, "read_text_file", args.clone()).await?;
            transcript.turn(&call_text("read_text_file", &args), &text);
            let report: Value = serde_json::from_str(&text)?;
            if report["status"] == "failed" {
                let step = report["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| s["ok"] == false);
                failed.insert(
                    report["id"].as_str().unwrap_or("").to_string(),
                    step.map_or(Value::Null, |s| s["name"].clone()),
                );
            }
        }
        let answer = json!(failed);
        let calling = transcript.answer(&answer.to_string());

        let program = format!(
            r#"const dir = {dir:?};
const listing = (await tools.filesystem.list_directory({{ path: dir }})).content;
const names = listing.split("\n").filter((l) => l.startsWith("[FILE] ")).map((l) => l.slice(7));
const failed: Record<string, string | null> = {{}};
for (const name of names) {{
  const report = JSON.parse((await tools.filesystem.read_text_file({{ path: dir + "/" + name }})).content);
  if (report.status === "failed") failed[report.id] = report.steps.find((s) => !s.ok)?.name ?? null;
}}
return Object.fromEntries(Object.entries(failed).sort());"#,
            dir = data.display().to_string()
        );
        let (code_mode, value, calls) = self.code_mode(task, &program).await?;
        agree(task, &answer, &value)?;
        Ok(report(task, calling, code_mode, calls))
    }

    async fn handle_errors(&self) -> anyhow::Result<Report> {
        let task = "Give me the size of each of these files, and list the ones that do not exist: the 8 chapters docs/ch0.md .. docs/ch7.md and docs/ch8.md .. docs/ch11.md.";
        let docs = self.root.join("project/docs");
        let mut transcript = Transcript::new(&self.bpe, &self.calling_prompt(task).await?);
        let mut sizes = BTreeMap::new();
        let mut missing = Vec::new();
        for i in 0..12 {
            let path = docs.join(format!("ch{i}.md"));
            let args = json!({ "path": path });
            match call(&self.filesystem, "get_file_info", args.clone()).await {
                Ok(info) => {
                    transcript.turn(&call_text("get_file_info", &args), &info);
                    sizes.insert(format!("ch{i}.md"), size_of(&info));
                }
                Err(error) => {
                    transcript.turn(&call_text("get_file_info", &args), &error.to_string());
                    missing.push(format!("ch{i}.md"));
                }
            }
        }
        let answer = json!({ "sizes": sizes, "missing": missing });
        let calling = transcript.answer(&answer.to_string());

        let program = format!(
            r#"const dir = {dir:?};
const sizes: Record<string, number> = {{}};
const missing: string[] = [];
await Promise.all(Array.from({{ length: 12 }}, async (_, i) => {{
  const name = `ch${{i}}.md`;
  try {{
    const info = await tools.filesystem.get_file_info({{ path: `${{dir}}/${{name}}` }});
    sizes[name] = Number(/size: (\d+)/.exec(info.content)?.[1]);
  }} catch (e) {{
    missing.push(name);
  }}
}}));
return {{ sizes: Object.fromEntries(Object.entries(sizes).sort()), missing: missing.sort((a, b) => parseInt(a.slice(2)) - parseInt(b.slice(2))) }};"#,
            dir = docs.display().to_string()
        );
        let (code_mode, value, calls) = self.code_mode(task, &program).await?;
        agree(task, &answer, &value)?;
        Ok(report(task, calling, code_mode, calls))
    }

    /// Stops the servers and removes the data set.
    pub async fn stop(self) {
        let _ = self.filesystem.cancel().await;
        let _ = self.memory.cancel().await;
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn report(task: &'static str, calling: Cost, code_mode: Cost, calls: usize) -> Report {
    Report {
        task,
        calling,
        code_mode,
        calls_in_program: calls,
    }
}

/// Both ways must reach the same answer: the comparison is between two ways of doing the
/// same work, not between a complete and a partial one.
fn agree(task: &str, calling: &Value, code_mode: &Value) -> anyhow::Result<()> {
    anyhow::ensure!(
        calling == code_mode,
        "the two ways disagree on {task:?}:\ncalling:   {calling}\ncode mode: {code_mode}"
    );
    Ok(())
}

/// A tool call as the model writes it.
fn call_text(name: &str, arguments: &Value) -> String {
    json!({ "name": name, "arguments": arguments }).to_string()
}

/// Calls `tool` and returns its text, as a tool-calling model reads it; an `isError`
/// result is an error with that text.
async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<String> {
    let Value::Object(arguments) = arguments else {
        anyhow::bail!("arguments must be an object");
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await?;
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error == Some(true) {
        anyhow::bail!("{text}");
    }
    Ok(text)
}

fn collect_files(nodes: &Value, dir: &Path, out: &mut Vec<PathBuf>) {
    for node in nodes.as_array().into_iter().flatten() {
        let name = node["name"].as_str().unwrap_or_default();
        if node["type"] == "directory" {
            collect_files(&node["children"], &dir.join(name), out);
        } else {
            out.push(dir.join(name));
        }
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn size_of(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix("size: "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Prints the table of `reports`: both totals and the ratio per task, then the suite.
pub fn print(reports: &[Report]) {
    println!(
        "{:<58} {:>16} {:>16} {:>8} {:>14}",
        "task (tokens: o200k_base, input + output over all turns)",
        "tool calling",
        "code mode",
        "ratio",
        "answer chars"
    );
    let (mut calling, mut code) = (0, 0);
    for r in reports {
        calling += r.calling.total();
        code += r.code_mode.total();
        let task: String = r.task.chars().take(56).collect();
        println!(
            "{:<58} {:>7} ({:>2} turns) {:>6} ({} turns, {:>2} calls) {:>7.1}% {:>14}",
            task,
            r.calling.total(),
            r.calling.turns,
            r.code_mode.total(),
            r.code_mode.turns,
            r.calls_in_program,
            100.0 * r.code_mode.total() as f64 / r.calling.total() as f64,
            r.code_mode.answer_chars
        );
    }
    println!(
        "{:<58} {:>16} {:>24} {:>7.1}%   (target <= 10%)",
        "suite",
        calling,
        code,
        100.0 * code as f64 / calling as f64
    );
}
