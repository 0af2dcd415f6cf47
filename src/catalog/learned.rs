//! Return types learned from real results. Most MCP tools declare no `outputSchema`, so the
//! model would guess the shape of what a tool returns. For those tools the shape of every
//! successful result is recorded as a JSON Schema, merged across calls (the fields seen,
//! their types, which ones were sometimes missing), kept per upstream tool, optionally in a
//! file, and written as the tool's TypeScript return type, marked as inferred.
//!
//! An inferred type is a guide, never a check: no call is refused or changed by it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Nesting kept; deeper values are `unknown`.
const MAX_DEPTH: usize = 6;
/// Properties kept per object; a result with more (a map keyed by data) gets no new ones.
const MAX_PROPERTIES: usize = 64;
/// Array items looked at per result.
const MAX_ITEMS: usize = 50;
/// Alternatives kept in a union before it becomes `unknown`.
const MAX_VARIANTS: usize = 6;
/// Size of one tool's schema as JSON text: merging results of ever-new shapes stops
/// widening it here (the caps above bound one result, not their union).
const MAX_SCHEMA_BYTES: usize = 32 << 10;

/// What the results of one tool looked like so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedShape {
    /// Successful results observed.
    pub observed: u64,
    /// Their shape, as a JSON Schema.
    pub schema: Value,
}

/// The learned shapes of every upstream tool, by upstream then by MCP tool name.
#[derive(Debug, Default)]
pub struct LearnedTypes {
    shapes: Mutex<BTreeMap<String, BTreeMap<String, LearnedShape>>>,
    /// Where they are kept across restarts, if anywhere.
    path: Option<PathBuf>,
}

impl LearnedTypes {
    /// Shapes kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Shapes kept in `path` (JSON), loaded from it if it exists. A file that cannot be
    /// read is reported and replaced by what is learned from now on.
    pub fn persisted(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let shapes = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(
                    "learned return types: {} is not a file this server wrote ({e}); starting afresh",
                    path.display()
                );
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(
                    "learned return types: cannot read {}: {e}; starting afresh",
                    path.display()
                );
                BTreeMap::new()
            }
        };
        Self {
            shapes: Mutex::new(shapes),
            path: Some(path),
        }
    }

    /// Records one successful result of `upstream`'s tool `tool`.
    pub fn observe(&self, upstream: &str, tool: &str, result: &Value) {
        let mut observed = infer(result, 0);
        if too_large(&observed) {
            observed = json!({});
        }
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shapes
            .entry(upstream.to_string())
            .or_default()
            .entry(tool.to_string());
        let changed = match entry {
            std::collections::btree_map::Entry::Vacant(vacant) => {
                vacant.insert(LearnedShape {
                    observed: 1,
                    schema: observed,
                });
                true
            }
            std::collections::btree_map::Entry::Occupied(mut occupied) => {
                let shape = occupied.get_mut();
                shape.observed += 1;
                let merged = merge(&shape.schema, &observed, 0);
                let changed = merged != shape.schema && !too_large(&merged);
                if changed {
                    shape.schema = merged;
                }
                // The count is kept exact in memory; on disk it is refreshed when the shape
                // changes and at powers of two, not on every call.
                changed || shape.observed.is_power_of_two()
            }
        };
        if changed && let Some(path) = &self.path {
            save(path, &shapes);
        }
    }

    /// The shape learned for `upstream`'s tool `tool`, if any result was observed.
    pub fn shape(&self, upstream: &str, tool: &str) -> Option<LearnedShape> {
        let shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        shapes.get(upstream)?.get(tool).cloned()
    }
}

/// Writes the file whole, through a temporary file, so a crash never leaves half of it.
fn save(path: &Path, shapes: &BTreeMap<String, BTreeMap<String, LearnedShape>>) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(shapes)?)?;
        std::fs::rename(&temporary, path)
    };
    if let Err(e) = write() {
        tracing::warn!("learned return types: cannot write {}: {e}", path.display());
    }
}

/// The shape of one value.
fn infer(value: &Value, depth: usize) -> Value {
    if depth >= MAX_DEPTH {
        return json!({});
    }
    match value {
        Value::Null => json!({ "type": "null" }),
        Value::Bool(_) => json!({ "type": "boolean" }),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({ "type": "integer" }),
        Value::Number(_) => json!({ "type": "number" }),
        Value::String(_) => json!({ "type": "string" }),
        Value::Array(items) => {
            let mut schema = json!({ "type": "array" });
            let merged = items
                .iter()
                .take(MAX_ITEMS)
                .map(|item| infer(item, depth + 1))
                .reduce(|a, b| merge(&a, &b, depth + 1));
            if let Some(items) = merged {
                schema["items"] = items;
            }
            schema
        }
        Value::Object(object) => {
            let mut properties = Map::new();
            for (key, value) in object.iter().take(MAX_PROPERTIES) {
                properties.insert(key.clone(), infer(value, depth + 1));
            }
            let required: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
            json!({ "type": "object", "properties": properties, "required": required })
        }
    }
}

/// One shape that covers both: fields of objects are merged (required only if both
/// require them), items of arrays merged, integers widened to numbers, other differences
/// kept as a union.
fn merge(a: &Value, b: &Value, depth: usize) -> Value {
    if a == b {
        return a.clone();
    }
    // `{}` is unknown: it covers anything.
    if is_unknown(a) || is_unknown(b) {
        return json!({});
    }
    let variants: Vec<Value> = alternatives(a).into_iter().chain(alternatives(b)).collect();
    let mut merged: Vec<Value> = Vec::new();
    for variant in variants {
        match merged.iter_mut().find(|m| same_kind(m, &variant)) {
            Some(existing) => *existing = merge_same(existing, &variant, depth),
            None => merged.push(variant),
        }
    }
    match merged.len() {
        1 => merged.remove(0),
        n if n > MAX_VARIANTS => json!({}),
        _ => json!({ "anyOf": merged }),
    }
}

fn too_large(schema: &Value) -> bool {
    serde_json::to_vec(schema).map_or(true, |text| text.len() > MAX_SCHEMA_BYTES)
}

fn is_unknown(schema: &Value) -> bool {
    schema.as_object().is_some_and(Map::is_empty)
}

fn alternatives(schema: &Value) -> Vec<Value> {
    match schema.get("anyOf").and_then(Value::as_array) {
        Some(variants) => variants.clone(),
        None => vec![schema.clone()],
    }
}

fn kind(schema: &Value) -> &str {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => "number",
        Some(other) => other,
        None => "",
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    kind(a) == kind(b)
}

/// Merges two shapes of the same kind.
fn merge_same(a: &Value, b: &Value, depth: usize) -> Value {
    match kind(a) {
        "number" => {
            if a.get("type") == b.get("type") {
                a.clone()
            } else {
                json!({ "type": "number" })
            }
        }
        "array" => {
            let mut schema = json!({ "type": "array" });
            let items = match (a.get("items"), b.get("items")) {
                (Some(x), Some(y)) => Some(merge(x, y, depth + 1)),
                (Some(x), None) | (None, Some(x)) => Some(x.clone()),
                (None, None) => None,
            };
            if let Some(items) = items {
                schema["items"] = items;
            }
            schema
        }
        "object" => {
            let props = |s: &Value| s.get("properties").and_then(Value::as_object).cloned();
            let (pa, pb) = (props(a).unwrap_or_default(), props(b).unwrap_or_default());
            let required = |s: &Value| -> Vec<String> {
                s.get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (ra, rb) = (required(a), required(b));
            let mut properties = pa.clone();
            for (key, schema) in &pb {
                match properties.get(key) {
                    Some(existing) => {
                        let merged = merge(existing, schema, depth + 1);
                        properties.insert(key.clone(), merged);
                    }
                    None if properties.len() < MAX_PROPERTIES => {
                        properties.insert(key.clone(), schema.clone());
                    }
                    None => {}
                }
            }
            let required: Vec<Value> = properties
                .keys()
                .filter(|k| ra.contains(k) && rb.contains(k))
                .cloned()
                .map(Value::String)
                .collect();
            json!({ "type": "object", "properties": properties, "required": required })
        }
        _ => a.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(results: &[Value]) -> Value {
        let types = LearnedTypes::in_memory();
        for result in results {
            types.observe("s", "t", result);
        }
        types.shape("s", "t").unwrap().schema
    }

    #[test]
    fn fields_missing_from_some_results_become_optional() {
        let schema = learned(&[
            json!({ "id": 1, "name": "a", "tags": ["x"] }),
            json!({ "id": 2.5, "tags": [], "extra": null }),
        ]);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "id": { "type": "number" },
                    "name": { "type": "string" },
                    "tags": { "type": "array", "items": { "type": "string" } },
                    "extra": { "type": "null" }
                },
                "required": ["id", "tags"]
            })
        );
    }

    #[test]
    fn different_kinds_become_a_union_and_too_many_become_unknown() {
        assert_eq!(
            learned(&[json!("text"), json!(3)]),
            json!({ "anyOf": [{ "type": "string" }, { "type": "integer" }] })
        );
        let many = learned(&[
            json!(1),
            json!("a"),
            json!(true),
            json!(null),
            json!([]),
            json!({}),
            json!([1]),
        ]);
        assert_eq!(many["anyOf"].as_array().map(Vec::len), Some(6));
        let deep = learned(&[json!([[[[[[[[1]]]]]]]])]);
        assert!(deep.to_string().contains("{}"), "{deep}");
        // Results of ever-new shapes stop widening the schema at its size cap.
        let types = LearnedTypes::in_memory();
        for i in 0..300 {
            let fields: Map<String, Value> = (0..64)
                .map(|j| (format!("f{i}_{j}"), json!({ "x": { "y": i } })))
                .collect();
            types.observe("s", "t", &json!({ format!("k{i}"): fields }));
        }
        let shape = types.shape("s", "t").unwrap();
        assert_eq!(shape.observed, 300);
        assert!(serde_json::to_vec(&shape.schema).unwrap().len() <= MAX_SCHEMA_BYTES);
    }

    #[test]
    fn persisted_shapes_survive_a_restart_and_a_bad_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("codemode-learned-{}", std::process::id()));
        let path = dir.join("types.json");
        let types = LearnedTypes::persisted(&path);
        types.observe("s", "t", &json!({ "a": 1 }));
        let again = LearnedTypes::persisted(&path);
        assert_eq!(again.shape("s", "t").unwrap().observed, 1);
        std::fs::write(&path, "not json").unwrap();
        let fresh = LearnedTypes::persisted(&path);
        assert!(fresh.shape("s", "t").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
