//! codemode-mcp inside a plain Rust program: a tool written in Rust (a typed function
//! whose schema schemars derives) called from a code-mode program, with no MCP transport
//! in between. `cargo run --example embed`

use codemode_mcp::{BuiltinTool, CodeMode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `tools.weather.forecast` takes.
#[derive(Deserialize, JsonSchema)]
struct ForecastArgs {
    /// The city, e.g. "Oslo".
    city: String,
    /// How many days ahead, 1 to 7.
    #[schemars(range(min = 1, max = 7))]
    days: u8,
}

/// What it returns.
#[derive(Serialize, JsonSchema)]
struct Forecast {
    city: String,
    days: Vec<Day>,
}

#[derive(Serialize, JsonSchema)]
struct Day {
    /// Days from today.
    day: u8,
    high_c: f64,
    low_c: f64,
}

/// A stand-in for a real weather service: deterministic numbers from the city's name.
async fn forecast(args: ForecastArgs) -> Result<Forecast, String> {
    if args.city.trim().is_empty() {
        return Err("city must not be empty".into());
    }
    let seed = args.city.bytes().map(f64::from).sum::<f64>() % 20.0;
    let days = (1..=args.days)
        .map(|day| Day {
            day,
            high_c: seed + f64::from(day),
            low_c: seed - 5.0 + f64::from(day) / 2.0,
        })
        .collect();
    Ok(Forecast {
        city: args.city,
        days,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let codemode = CodeMode::builder()
        .tool(
            "weather",
            BuiltinTool::new(
                "forecast",
                "Daily high and low temperatures for a city",
                forecast,
            ),
        )
        .build()
        .await?;

    println!("What a model is shown:\n{}", codemode.declarations());

    let program = r#"
const cities = ["Oslo", "Lisbon", "Cairo"];
const forecasts = await Promise.all(cities.map((city) => tools.weather.forecast({ city, days: 3 })));
return forecasts.map((f) => ({ city: f.city, warmest: Math.max(...f.days.map((d) => d.high_c)) }));
"#;
    let run = codemode.execute(program).await;
    match &run.outcome.result {
        Ok(value) => println!("result: {}", value.json),
        Err(error) => println!("error: {error}"),
    }
    println!("tool calls: {}", run.calls.len());

    // Arguments are validated against the schema derived from ForecastArgs.
    let invalid = codemode
        .execute("return await tools.weather.forecast({ city: 'Oslo', days: 9 });")
        .await;
    if let Err(error) = &invalid.outcome.result {
        println!(
            "invalid call: {} (schema path {})",
            error.message,
            error.schema_path.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
