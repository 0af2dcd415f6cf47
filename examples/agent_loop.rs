//! A scripted agent (no model: it replays a fixed plan) doing one task two ways, and what
//! crossed the model's context each way:
//!
//! - tool calling: the model sees every tool's schema, calls one tool per turn, and every
//!   result goes back through its context;
//! - code mode: the model calls `search_tools`, writes one program, and reads only what
//!   the program returns.
//!
//! The task: the total order value of the customers in Norway. The tools are built in
//! (a small CRM written in Rust), so the example needs no server.
//! `cargo run --example agent_loop`

use codemode_mcp::{BuiltinTool, CodeMode, catalog::Detail, server::search_answer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

#[derive(Serialize, JsonSchema)]
struct Customers {
    customers: Vec<Customer>,
}

#[derive(Serialize, JsonSchema)]
struct Customer {
    id: u32,
    name: String,
    country: String,
    email: String,
}

#[derive(Deserialize, JsonSchema)]
struct OrdersArgs {
    /// The customer's id.
    customer_id: u32,
}

#[derive(Serialize, JsonSchema)]
struct Orders {
    orders: Vec<Order>,
}

#[derive(Serialize, JsonSchema)]
struct Order {
    id: u32,
    amount: f64,
    status: String,
}

const COUNTRIES: [&str; 5] = ["Norway", "Portugal", "Egypt", "Japan", "Chile"];

fn customers() -> Vec<Customer> {
    (1..=60)
        .map(|id| Customer {
            id,
            name: format!("Customer {id}"),
            country: COUNTRIES[id as usize % COUNTRIES.len()].to_string(),
            email: format!("customer{id}@example.com"),
        })
        .collect()
}

fn orders(customer_id: u32) -> Vec<Order> {
    (1..=8)
        .map(|n| Order {
            id: customer_id * 100 + n,
            amount: f64::from((customer_id * 37 + n * 11) % 500) + 0.5,
            status: if n % 3 == 0 { "refunded" } else { "paid" }.to_string(),
        })
        .collect()
}

/// Text the model reads or writes, and a rough token count (4 bytes a token; the
/// performance issue brings a real tokenizer).
#[derive(Default)]
struct Context {
    bytes: usize,
    turns: usize,
}

impl Context {
    fn add(&mut self, text: &str) {
        self.bytes += text.len();
    }
    fn tokens(&self) -> usize {
        self.bytes.div_ceil(4)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let codemode = CodeMode::builder()
        .tool(
            "crm",
            BuiltinTool::new(
                "list_customers",
                "Every customer: id, name, country, email",
                |_: NoArgs| async {
                    Ok(Customers {
                        customers: customers(),
                    })
                },
            ),
        )
        .tool(
            "crm",
            BuiltinTool::new(
                "get_orders",
                "The orders of one customer, with amount and status",
                |args: OrdersArgs| async move {
                    Ok(Orders {
                        orders: orders(args.customer_id),
                    })
                },
            ),
        )
        .build()
        .await?;

    // Tool calling: the schemas up front, then one call per turn, every result in context.
    let mut calling = Context::default();
    for tool in codemode.catalog().tools() {
        calling.add(&serde_json::to_string(&tool.tool)?);
    }
    let listed = codemode
        .execute("return await tools.crm.list_customers({});")
        .await;
    let listed = listed
        .outcome
        .result
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .json;
    calling.add(&listed);
    calling.turns += 1;
    let all: serde_json::Value = serde_json::from_str(&listed)?;
    let mut total_by_calling = 0.0;
    for customer in all["customers"].as_array().into_iter().flatten() {
        if customer["country"] != "Norway" {
            continue;
        }
        let call = format!(
            "return await tools.crm.get_orders({{ customer_id: {} }});",
            customer["id"]
        );
        calling.add(&call);
        let orders = codemode.execute(&call).await;
        let orders = orders
            .outcome
            .result
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .json;
        calling.add(&orders);
        calling.turns += 1;
        let orders: serde_json::Value = serde_json::from_str(&orders)?;
        for order in orders["orders"].as_array().into_iter().flatten() {
            if order["status"] == "paid" {
                total_by_calling += order["amount"].as_f64().unwrap_or(0.0);
            }
        }
    }

    // Code mode: search the tools, then one program; only its result comes back.
    let mut code_mode = Context::default();
    let found = search_answer(
        &codemode.catalog(),
        "customer orders",
        Detail::Signatures,
        10,
    );
    code_mode.add("search_tools {\"query\": \"customer orders\"}");
    code_mode.add(&found);
    let program = r#"const { customers } = await tools.crm.list_customers({});
const norway = customers.filter((c) => c.country === "Norway");
const orders = await Promise.all(norway.map((c) => tools.crm.get_orders({ customer_id: c.id })));
const total = orders.flatMap((o) => o.orders).filter((o) => o.status === "paid").reduce((sum, o) => sum + o.amount, 0);
return { customers: norway.length, total };"#;
    code_mode.add(program);
    let run = codemode.execute(program).await;
    let answer = run.outcome.result.map_err(|e| anyhow::anyhow!("{e}"))?.json;
    code_mode.add(&answer);
    code_mode.turns = 2;
    let answer: serde_json::Value = serde_json::from_str(&answer)?;

    println!("task: the total paid order value of the customers in Norway");
    println!(
        "tool calling: {} turns, {} bytes through the model (~{} tokens), total {:.2}",
        calling.turns,
        calling.bytes,
        calling.tokens(),
        total_by_calling
    );
    println!(
        "code mode:    {} turns, {} bytes through the model (~{} tokens), total {:.2}, {} tool calls inside one program",
        code_mode.turns,
        code_mode.bytes,
        code_mode.tokens(),
        answer["total"].as_f64().unwrap_or(f64::NAN),
        run.calls.len()
    );
    println!(
        "code mode used {:.1}% of the context tool calling used",
        100.0 * code_mode.bytes as f64 / calling.bytes as f64
    );
    Ok(())
}
