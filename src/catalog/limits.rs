//! What one tool may bring into the catalog. Its schemas are walked by code that recurses
//! (the declarations, argument validation, serialisation) and a hostile or broken upstream
//! can list a schema nested hundreds of levels deep, megabytes long, or whose `$ref`s
//! expand exponentially: such a tool is left out, alone, with a warning naming the limit.
//! The checks here never recurse, so they are safe on any schema.

use std::collections::HashSet;

use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

/// Most levels of JSON objects and arrays in one schema, the schema itself being the first.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Most bytes of a tool's definition (name, description, schemas) as JSON.
pub const MAX_TOOL_BYTES: usize = 256 << 10;
/// Most subschemas one schema may stand for with its `$ref`s expanded (a `$ref` already
/// being expanded is not followed again): validating arguments walks them all.
pub const MAX_SCHEMA_EXPANSION: usize = 100_000;

/// Why a tool was left out of the catalog. Permanent for that definition: the upstream
/// must list another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaLimit {
    /// A schema nests too deep.
    #[error(
        "its {field} nests deeper than {MAX_SCHEMA_DEPTH} levels of JSON objects and arrays, the most allowed"
    )]
    Depth {
        /// `inputSchema`, `outputSchema`, or `definition` when the wire could not tell.
        field: String,
    },
    /// The definition is too large.
    #[error(
        "its definition is {bytes} bytes or more as JSON, over the {MAX_TOOL_BYTES} bytes (256 KiB) allowed"
    )]
    Size {
        /// How many bytes were counted before giving up.
        bytes: usize,
    },
    /// A schema's `$ref`s expand to too many subschemas.
    #[error(
        "its {field}'s $refs expand to more than {MAX_SCHEMA_EXPANSION} subschemas, the most allowed"
    )]
    Expansion {
        /// `inputSchema` or `outputSchema`.
        field: &'static str,
    },
}

/// What the catalog may do with a tool that is within the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Admitted {
    /// Whether its input schema may be compiled to validate arguments here: not when it
    /// has `$ref`s this check cannot follow, whose cost it could not bound. The upstream
    /// judges those arguments.
    pub(super) validate: bool,
}

/// Checks `tool` against every limit, cheapest first: the depth before anything that
/// recurses, the size before the expansion.
pub(super) fn admit(tool: &Tool) -> Result<Admitted, SchemaLimit> {
    let schemas = [
        ("inputSchema", Some(&*tool.input_schema)),
        ("outputSchema", tool.output_schema.as_deref()),
    ];
    for (field, schema) in schemas {
        if let Some(schema) = schema
            && nests_deeper(schema, MAX_SCHEMA_DEPTH)
        {
            return Err(SchemaLimit::Depth {
                field: field.to_string(),
            });
        }
    }
    let bytes = json_size(tool, MAX_TOOL_BYTES);
    if bytes > MAX_TOOL_BYTES {
        return Err(SchemaLimit::Size { bytes });
    }
    let mut validate = true;
    for (field, schema) in schemas {
        let Some(schema) = schema else { continue };
        match expansion(&Value::Object(schema.clone()), MAX_SCHEMA_EXPANSION) {
            Expansion::Over => return Err(SchemaLimit::Expansion { field }),
            Expansion::Within { followed_all } => {
                if field == "inputSchema" {
                    validate = followed_all;
                }
            }
        }
    }
    Ok(Admitted { validate })
}

/// Whether `schema` has more than `max` levels of objects and arrays.
fn nests_deeper(schema: &JsonObject, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = schema.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(object) => Box::new(object.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > max {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// Bytes of `value` as JSON, counted up to just past `max`.
fn json_size(value: &impl serde::Serialize, max: usize) -> usize {
    struct Counter {
        bytes: usize,
        max: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len();
            if self.bytes > self.max {
                // Stops the serialiser: the rest need not be counted.
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { bytes: 0, max };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.bytes
}

/// How far a schema's `$ref`s take a walk through it.
#[derive(Debug, PartialEq, Eq)]
enum Expansion {
    /// Within the limit; `followed_all` unless some `$ref` pointed outside the document or
    /// by a name this walk does not resolve.
    Within { followed_all: bool },
    /// Past the limit.
    Over,
}

/// Counts the subschemas (objects and arrays) of `root` with its local `$ref`s expanded,
/// up to `max`. A `$ref` being expanded is not followed again inside itself, as a
/// validator or the declarations would not go round a cycle either.
fn expansion(root: &Value, max: usize) -> Expansion {
    enum Step<'a> {
        Enter(&'a Value),
        Leave(&'a str),
    }
    let mut stack = vec![Step::Enter(root)];
    let mut active: HashSet<&str> = HashSet::new();
    let mut count = 0;
    let mut followed_all = true;
    while let Some(step) = stack.pop() {
        let value = match step {
            Step::Leave(reference) => {
                active.remove(reference);
                continue;
            }
            Step::Enter(value) => value,
        };
        count += 1;
        if count > max {
            return Expansion::Over;
        }
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    match (key.as_str(), child) {
                        ("$ref", Value::String(reference)) => match resolve(root, reference) {
                            Some(target) => {
                                if active.insert(reference) {
                                    stack.push(Step::Leave(reference));
                                    stack.push(Step::Enter(target));
                                }
                            }
                            None => followed_all = false,
                        },
                        // Resolved against other bases than the document: not followed.
                        ("$dynamicRef" | "$recursiveRef", _) => followed_all = false,
                        ("$id" | "id", Value::String(_)) if !std::ptr::eq(value, root) => {
                            followed_all = false;
                        }
                        (_, Value::Object(_) | Value::Array(_)) => stack.push(Step::Enter(child)),
                        _ => {}
                    }
                }
            }
            Value::Array(items) => stack.extend(
                items
                    .iter()
                    .filter(|i| i.is_object() || i.is_array())
                    .map(Step::Enter),
            ),
            _ => {}
        }
    }
    Expansion::Within { followed_all }
}

/// The subschema a local `$ref` (`#`, `#/$defs/a%20b`) names in `root`.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if !pointer.is_empty() && !pointer.starts_with('/') {
        // `#name`: an anchor.
        return None;
    }
    root.pointer(&percent_decode(pointer)?)
}

/// `%24defs` -> `$defs`, as a URI fragment is read; `None` if it is not valid UTF-8 then.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Map, json};

    use super::*;

    /// A schema `levels` objects deep, built without recursion.
    pub(crate) fn nested(levels: usize) -> Value {
        let mut schema = json!({ "type": "string" });
        for _ in 1..levels {
            schema = json!({ "anyOf": [schema] });
        }
        schema
    }

    /// `$defs` d0..dn where each is `allOf` of the next twice: 2^n subschemas expanded.
    pub(crate) fn ref_bomb(n: usize) -> Value {
        let mut defs = Map::new();
        for i in 0..n {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(
                format!("d{i}"),
                json!({ "allOf": [{ "$ref": next }, { "$ref": next }] }),
            );
        }
        defs.insert(format!("d{n}"), json!({ "type": "string" }));
        json!({ "$defs": defs, "$ref": "#/$defs/d0" })
    }

    fn tool(input: Value) -> Tool {
        let Value::Object(input) = input else {
            panic!("not an object")
        };
        Tool::new("t", "test", std::sync::Arc::new(input))
    }

    /// Levels of objects and arrays in `value`, counted by recursion (for test values).
    fn levels(value: &Value) -> usize {
        match value {
            Value::Object(o) => 1 + o.values().map(levels).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(levels).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn depth_is_counted_in_objects_and_arrays() {
        // `anyOf` and its array are two levels per step.
        let at_limit = nested(MAX_SCHEMA_DEPTH / 2);
        assert_eq!(levels(&at_limit), MAX_SCHEMA_DEPTH - 1);
        assert!(admit(&tool(at_limit)).is_ok());
        let over = nested(MAX_SCHEMA_DEPTH / 2 + 1);
        assert_eq!(levels(&over), MAX_SCHEMA_DEPTH + 1);
        let error = admit(&tool(over)).unwrap_err();
        assert_eq!(
            error,
            SchemaLimit::Depth {
                field: "inputSchema".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "its inputSchema nests deeper than 64 levels of JSON objects and arrays, the most allowed"
        );
    }

    #[test]
    fn a_definition_past_256_kib_is_refused() {
        let big = "x".repeat(MAX_TOOL_BYTES);
        let error = admit(&tool(json!({ "type": "object", "description": big }))).unwrap_err();
        assert!(matches!(error, SchemaLimit::Size { bytes } if bytes > MAX_TOOL_BYTES));
        assert!(
            error.to_string().contains("262144 bytes (256 KiB) allowed"),
            "{error}"
        );
    }

    #[test]
    fn refs_that_expand_exponentially_are_refused_and_cycles_are_not() {
        let error = admit(&tool(ref_bomb(40))).unwrap_err();
        assert_eq!(
            error,
            SchemaLimit::Expansion {
                field: "inputSchema"
            }
        );
        let recursive = json!({
            "$defs": { "Node": { "type": "object", "properties": {
                "children": { "type": "array", "items": { "$ref": "#/$defs/Node" } },
                "parent": { "$ref": "#/$defs/Node" }
            } } },
            "$ref": "#/$defs/Node"
        });
        assert_eq!(admit(&tool(recursive)), Ok(Admitted { validate: true }));
        // Percent-encoded pointers are followed as a validator would follow them.
        let encoded = json!({
            "$defs": { "a b": { "type": "string" } },
            "properties": { "x": { "$ref": "#/%24defs/a%20b" } }
        });
        assert_eq!(admit(&tool(encoded)), Ok(Admitted { validate: true }));
    }

    #[test]
    fn refs_it_cannot_follow_leave_validation_to_the_upstream() {
        for schema in [
            json!({ "properties": { "a": { "$ref": "#thing" } } }),
            json!({ "properties": { "a": { "$ref": "https://example.com/s.json" } } }),
            json!({ "properties": { "a": { "$id": "urn:a", "$ref": "#/$defs/x" } } }),
            json!({ "$dynamicRef": "#meta" }),
        ] {
            assert_eq!(
                admit(&tool(schema.clone())),
                Ok(Admitted { validate: false }),
                "{schema}"
            );
        }
    }

    #[test]
    fn checks_do_not_recurse() {
        // Far deeper than any stack would take by recursion, on a small stack.
        let deep = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let mut object = JsonObject::new();
                for _ in 0..100_000 {
                    let mut outer = JsonObject::new();
                    outer.insert("a".into(), Value::Object(object));
                    object = outer;
                }
                let over = nests_deeper(&object, MAX_SCHEMA_DEPTH);
                // Taken apart level by level: dropping it whole would recurse.
                let mut value = Value::Object(object);
                while let Some(inner) = value.as_object_mut().and_then(|o| o.remove("a")) {
                    value = inner;
                }
                over
            })
            .expect("thread starts")
            .join()
            .expect("no overflow");
        assert!(deep);
    }
}
