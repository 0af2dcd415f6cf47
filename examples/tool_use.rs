//! Code mode in a model's tool-use loop of your own (any provider's API): the model is
//! given the `execute_code` tool exactly as the MCP server lists it, its tool call runs in
//! a fresh isolate, and the rendered answer, budgeted for its context, is the tool result.
//! The model is scripted here: replace `model_turn` with your API call.
//! `cargo run --example tool_use`

use codemode_mcp::{
    BuiltinTool, CodeMode,
    server::{ExecuteCodeInput, execute_code_tool, render_output, render_text},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize, JsonSchema)]
struct StockArgs {
    /// The product's SKU.
    sku: String,
}

#[derive(Serialize, JsonSchema)]
struct Stock {
    sku: String,
    units: u32,
}

async fn stock(args: StockArgs) -> Result<Stock, String> {
    let units = match args.sku.as_str() {
        "A-1" => 12,
        "B-2" => 0,
        "C-3" => 7,
        other => return Err(format!("no product {other}")),
    };
    Ok(Stock {
        sku: args.sku,
        units,
    })
}

/// What the model would answer to `request`: here, always one `execute_code` call.
fn model_turn(request: &Value) -> Value {
    assert_eq!(request["tools"][0]["name"], "execute_code");
    json!({
        "type": "tool_use",
        "id": "toolu_01",
        "name": "execute_code",
        "input": {
            "code": "const skus = ['A-1', 'B-2', 'C-3'];\nconst stock = await Promise.all(skus.map((sku) => tools.inventory.stock({ sku })));\nreturn stock.filter((s) => s.units === 0).map((s) => s.sku);"
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let codemode = CodeMode::builder()
        .tool(
            "inventory",
            BuiltinTool::new("stock", "Units in stock of a product", stock),
        )
        .build()
        .await?;

    // The tool definition, in the request's `tools` (Anthropic's field names; OpenAI's
    // `function` takes the same three).
    let tool = execute_code_tool(&codemode);
    let definition = json!({
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
    });
    let request = json!({
        "messages": [{ "role": "user", "content": "Which products are out of stock?" }],
        "tools": [definition],
    });
    println!(
        "tool definition: execute_code, {} characters of description",
        tool.description.as_deref().map_or(0, str::len)
    );

    let tool_use = model_turn(&request);
    let input: ExecuteCodeInput = serde_json::from_value(tool_use["input"].clone())?;
    let execution = codemode.execute(&input.code).await;
    let output = render_output(&execution);
    let text = render_text(&execution, &output);
    let tool_result = json!({
        "type": "tool_result",
        "tool_use_id": tool_use["id"],
        "content": text,
        "is_error": output.error.is_some(),
    });
    println!("tool result: {tool_result}");

    // The host program reads the value itself, parsed.
    if let Ok(returned) = &execution.outcome.result {
        println!("value: {}", returned.value().unwrap_or(Value::Null));
    }
    Ok(())
}
