//! One JSON Schema -> one TypeScript type expression.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// How deep nested types are written before they become `unknown`.
const MAX_DEPTH: usize = 12;
/// How deep the writer itself may recurse, whatever the schema nests by (`anyOf` in
/// `anyOf`, a chain of `$ref`s): deeper subschemas are `unknown`, the stack stays small.
const MAX_NESTING: usize = 64;
/// Subschemas written for one root before the rest become `unknown`: `$ref`s can make a
/// small schema stand for exponentially many.
const MAX_WRITTEN: usize = 20_000;
/// Bytes of type text written for one root (inner types counted again in outer ones)
/// before the rest become `unknown`.
const MAX_TEXT: usize = 1 << 20;

/// Writes TypeScript types for schemas within one root document (for `$ref`).
#[derive(Debug)]
pub struct TypeWriter<'a> {
    root: &'a Value,
    visiting: HashSet<String>,
    /// Calls of [`Self::write`] under way.
    nesting: usize,
    /// Subschemas written so far.
    written: usize,
    /// Bytes of type text written so far.
    text: usize,
}

/// The TypeScript type of `schema` (its own root for `$ref`s).
pub fn ts_type(schema: &Value) -> String {
    TypeWriter::new(schema).write(schema, 0)
}

impl<'a> TypeWriter<'a> {
    /// A writer resolving `$ref`s against `root`.
    pub fn new(root: &'a Value) -> Self {
        Self {
            root,
            visiting: HashSet::new(),
            nesting: 0,
            written: 0,
            text: 0,
        }
    }

    /// The type of `schema`, `depth` levels of indentation in.
    pub fn write(&mut self, schema: &Value, depth: usize) -> String {
        if depth > MAX_DEPTH
            || self.nesting >= MAX_NESTING
            || self.written >= MAX_WRITTEN
            || self.text >= MAX_TEXT
        {
            return "unknown".into();
        }
        self.nesting += 1;
        self.written += 1;
        let ty = self.write_schema(schema, depth);
        self.nesting -= 1;
        self.text += ty.len();
        ty
    }

    fn write_schema(&mut self, schema: &Value, depth: usize) -> String {
        let object = match schema {
            Value::Bool(true) => return "unknown".into(),
            Value::Bool(false) => return "never".into(),
            Value::Object(o) => o,
            _ => return "unknown".into(),
        };
        let mut ty = self.write_object(object, depth);
        if object.get("nullable") == Some(&Value::Bool(true)) && !ty.ends_with("| null") {
            ty = format!("{} | null", wrap_union(&ty));
        }
        ty
    }

    fn write_object(&mut self, schema: &Map<String, Value>, depth: usize) -> String {
        if let Some(Value::String(reference)) = schema.get("$ref") {
            return self.write_ref(reference, depth);
        }
        if let Some(value) = schema.get("const") {
            return literal(value);
        }
        if let Some(Value::Array(values)) = schema.get("enum") {
            let parts: Vec<String> = values.iter().map(literal).collect();
            return if parts.is_empty() {
                "never".into()
            } else {
                parts.join(" | ")
            };
        }
        for (keyword, joiner) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")] {
            if let Some(Value::Array(variants)) = schema.get(keyword) {
                let mut parts: Vec<String> = Vec::new();
                for variant in variants {
                    let part = wrap_union(&self.write(variant, depth));
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                // Keywords beside the combinator (say, `type: object` with shared
                // properties) still constrain the value; only schemas that have some pay
                // for the copy.
                if has_type_keywords(schema) {
                    let mut rest = schema.clone();
                    rest.remove(keyword);
                    rest.remove("description");
                    rest.remove("title");
                    let base = wrap_union(&self.write_object(&rest, depth));
                    return format!("{base} & ({})", parts.join(joiner));
                }
                return match parts.len() {
                    0 => "unknown".into(),
                    1 => parts.remove(0),
                    _ => parts.join(joiner),
                };
            }
        }
        match schema.get("type") {
            Some(Value::String(ty)) => self.write_typed(ty, schema, depth),
            Some(Value::Array(types)) => {
                let parts: Vec<String> = types
                    .iter()
                    .filter_map(|t| t.as_str())
                    .map(|t| wrap_union(&self.write_typed(t, schema, depth)))
                    .collect();
                if parts.is_empty() {
                    "unknown".into()
                } else {
                    parts.join(" | ")
                }
            }
            _ if schema.contains_key("properties")
                || schema.contains_key("additionalProperties") =>
            {
                self.write_typed("object", schema, depth)
            }
            _ if schema.contains_key("items") || schema.contains_key("prefixItems") => {
                self.write_typed("array", schema, depth)
            }
            _ => "unknown".into(),
        }
    }

    fn write_ref(&mut self, reference: &str, depth: usize) -> String {
        let Some(pointer) = reference.strip_prefix('#') else {
            return "unknown".into();
        };
        if !self.visiting.insert(reference.to_string()) {
            // The name lands in a comment: only characters that cannot end one.
            let name: String = reference
                .rsplit('/')
                .next()
                .unwrap_or("type")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_$-.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            return format!("unknown /* {name}, recursive */");
        }
        // Borrowed from the root, not copied: a schema may name one large definition many
        // times.
        let root = self.root;
        let ty = match root.pointer(pointer) {
            Some(target) => self.write(target, depth),
            None => "unknown".into(),
        };
        self.visiting.remove(reference);
        ty
    }

    fn write_typed(&mut self, ty: &str, schema: &Map<String, Value>, depth: usize) -> String {
        match ty {
            "string" => "string".into(),
            "number" | "integer" => "number".into(),
            "boolean" => "boolean".into(),
            "null" => "null".into(),
            "array" => self.write_array(schema, depth),
            "object" => self.write_properties(schema, depth),
            _ => "unknown".into(),
        }
    }

    fn write_array(&mut self, schema: &Map<String, Value>, depth: usize) -> String {
        let tuple = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(items)), _) | (None, Some(Value::Array(items))) => Some(items),
            _ => None,
        };
        if let Some(items) = tuple {
            let parts: Vec<String> = items.iter().map(|i| self.write(i, depth)).collect();
            return format!("[{}]", parts.join(", "));
        }
        match schema.get("items") {
            Some(items) => format!("{}[]", wrap_union(&self.write(items, depth))),
            None => "unknown[]".into(),
        }
    }

    fn write_properties(&mut self, schema: &Map<String, Value>, depth: usize) -> String {
        let required: HashSet<&str> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let properties = schema.get("properties").and_then(|p| p.as_object());
        let additional = schema.get("additionalProperties");
        let pad = "  ".repeat(depth + 1);
        let mut members = Vec::new();
        if let Some(properties) = properties {
            for (name, property) in properties {
                let doc = property_doc(property);
                // Reserved words are fine as property names; anything else that is not
                // an identifier is quoted.
                let key = if crate::catalog::is_identifier(name) {
                    name.clone()
                } else {
                    Value::from(name.as_str()).to_string()
                };
                let optional = if required.contains(name.as_str()) {
                    ""
                } else {
                    "?"
                };
                let ty = self.write(property, depth + 1);
                members.push(format!(
                    "{}{pad}{key}{optional}: {ty};",
                    doc_comment(&doc, &pad)
                ));
            }
        }
        match additional {
            Some(Value::Bool(false)) => {}
            Some(Value::Object(extra)) if !extra.is_empty() => {
                let ty = self.write(&Value::Object(extra.clone()), depth + 1);
                members.push(format!("{pad}[key: string]: {ty};"));
            }
            _ if members.is_empty() => return "Record<string, unknown>".into(),
            _ => {}
        }
        if members.is_empty() {
            return "{}".into();
        }
        format!("{{\n{}\n{}}}", members.join("\n"), "  ".repeat(depth))
    }
}

fn has_type_keywords(schema: &Map<String, Value>) -> bool {
    ["type", "properties", "items", "enum", "const", "$ref"]
        .iter()
        .any(|k| schema.contains_key(*k))
}

/// The doc text of a property: description, then facts the type cannot say.
fn property_doc(schema: &Value) -> String {
    let mut lines = Vec::new();
    if let Some(d) = schema.get("description").and_then(|d| d.as_str()) {
        lines.push(d.trim().to_string());
    } else if let Some(t) = schema.get("title").and_then(|d| d.as_str()) {
        lines.push(t.trim().to_string());
    }
    let mut facts = Vec::new();
    if let Some(f) = schema.get("format").and_then(|f| f.as_str()) {
        facts.push(format!("format: {f}"));
    }
    for key in [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
    ] {
        if let Some(v) = schema.get(key) {
            facts.push(format!("{key}: {v}"));
        }
    }
    if let Some(v) = schema.get("default") {
        facts.push(format!("default: {v}"));
    }
    if !facts.is_empty() {
        lines.push(facts.join(", "));
    }
    lines.join("\n")
}

/// A `/** ... */` block (empty text gives nothing), each line prefixed with `pad`.
pub(crate) fn doc_comment(text: &str, pad: &str) -> String {
    let text = text.replace("*/", "*\\/");
    let lines: Vec<&str> = text.lines().collect();
    match lines.len() {
        0 => String::new(),
        1 => format!("{pad}/** {} */\n", lines[0].trim_end()),
        _ => {
            let mut out = format!("{pad}/**\n");
            for line in lines {
                let line = line.trim_end();
                if line.is_empty() {
                    out.push_str(&format!("{pad} *\n"));
                } else {
                    out.push_str(&format!("{pad} * {line}\n"));
                }
            }
            out.push_str(&format!("{pad} */\n"));
            out
        }
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        _ => "unknown".into(),
    }
}

/// Parenthesises a union or intersection so it can be an array element or a union member.
fn wrap_union(ty: &str) -> String {
    let mut level = 0i32;
    let mut top_level_operator = false;
    for c in ty.chars() {
        match c {
            '{' | '(' | '[' | '<' => level += 1,
            '}' | ')' | ']' | '>' => level -= 1,
            '|' | '&' if level == 0 => top_level_operator = true,
            _ => {}
        }
    }
    if top_level_operator {
        format!("({ty})")
    } else {
        ty.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ts_type;

    #[test]
    fn objects_required_optional_docs_and_formats() {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "File to read" },
                "when": { "type": "string", "format": "date-time" },
                "my-key": { "type": "integer", "minimum": 1, "default": 5 }
            },
            "required": ["path"],
            "additionalProperties": false
        });
        let ty = ts_type(&schema);
        assert!(ty.starts_with("{\n") && ty.ends_with("\n}"), "{ty}");
        for member in [
            "  /** File to read */\n  path: string;",
            "  /** format: date-time */\n  when?: string;",
            "  /** minimum: 1, default: 5 */\n  \"my-key\"?: number;",
        ] {
            assert!(ty.contains(member), "{member} missing from\n{ty}");
        }
    }

    #[test]
    fn unions_enums_tuples_refs_and_nullable() {
        assert_eq!(
            ts_type(&json!({ "enum": ["a", "b", 3] })),
            "\"a\" | \"b\" | 3"
        );
        assert_eq!(
            ts_type(&json!({ "type": ["string", "null"] })),
            "string | null"
        );
        assert_eq!(
            ts_type(&json!({ "type": "string", "nullable": true })),
            "string | null"
        );
        assert_eq!(
            ts_type(
                &json!({ "type": "array", "items": { "anyOf": [{ "type": "string" }, { "type": "number" }] } })
            ),
            "(string | number)[]"
        );
        assert_eq!(
            ts_type(
                &json!({ "type": "array", "prefixItems": [{ "type": "string" }, { "const": 1 }] })
            ),
            "[string, 1]"
        );
        assert_eq!(
            ts_type(&json!({ "$defs": { "Id": { "type": "string" } }, "$ref": "#/$defs/Id" })),
            "string"
        );
        let recursive = json!({
            "$defs": { "Node": { "type": "object", "properties": { "next": { "$ref": "#/$defs/Node" } } } },
            "$ref": "#/$defs/Node"
        });
        assert_eq!(
            ts_type(&recursive),
            "{\n  next?: unknown /* Node, recursive */;\n}"
        );
        assert_eq!(
            ts_type(&json!({ "type": "object", "additionalProperties": { "type": "number" } })),
            "{\n  [key: string]: number;\n}"
        );
        assert_eq!(
            ts_type(&json!({ "type": "object" })),
            "Record<string, unknown>"
        );
        assert_eq!(
            ts_type(
                &json!({ "allOf": [{ "type": "object", "properties": { "a": { "type": "string" } }, "required": ["a"] }, { "type": "object", "properties": { "b": { "type": "number" } } }] })
            ),
            "{\n  a: string;\n} & {\n  b?: number;\n}"
        );
    }
}
