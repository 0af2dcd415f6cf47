//! MCP names -> JS identifiers: deterministic, collision-free, and safe both as a name in
//! the declarations and as a property of the namespace objects programs see.
//!
//! The rule: a name that is an identifier and none of [`RESERVED_WORDS`] or
//! [`PROTOTYPE_NAMES`] is its own JS name. Any other name has each character that cannot be
//! in an identifier replaced by `_` (and `_` put first if it then starts with a digit or is
//! empty); if that is a reserved or prototype name, `_` is appended (`delete` -> `delete_`,
//! `__proto__` -> `__proto___`). A JS name already taken gets `_2`, `_3`, ... in sorted
//! order. The original name still reaches the tool as `tools.ns["original name"]`, except
//! `then` and `toJSON`, which would make a namespace look like a promise or serialise
//! itself.

/// Words that cannot be declared as a function or namespace in strict code: ES2023's
/// reserved words, strict mode's, the literals, and the two names strict code may not bind.
const RESERVED_WORDS: &[&str] = &[
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "implements",
    "interface",
    "let",
    "package",
    "private",
    "protected",
    "public",
    "static",
    "arguments",
    "eval",
];

/// Names every plain object already has, and the two the engine and `JSON.stringify` look
/// up on any object (`then` makes it a thenable, `toJSON` replaces it when serialised): as a
/// tool or namespace they would shadow or be shadowed by those, whatever the glue does.
const PROTOTYPE_NAMES: &[&str] = &[
    "__proto__",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "then",
    "toJSON",
];

/// Original names the namespace objects never answer to: a namespace with an own `then`
/// would be awaited as a promise, one with `toJSON` would serialise as a call's result.
const NO_ALIAS: &[&str] = &["then", "toJSON"];

/// Whether `name` is usable as `tools.<name>` without quoting.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Whether `name` is its own JS name: an identifier that is neither reserved nor a name
/// objects already have.
pub(crate) fn is_safe(name: &str) -> bool {
    is_identifier(name) && !is_reserved(name)
}

fn is_reserved(name: &str) -> bool {
    RESERVED_WORDS.contains(&name) || PROTOTYPE_NAMES.contains(&name)
}

/// `get-sum` -> `get_sum`, `2fa.check` -> `_2fa_check`, `delete` -> `delete_`: every
/// character that cannot be in an identifier becomes `_`, and a reserved or prototype name
/// gets `_` appended.
pub fn to_identifier(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if is_reserved(&out) {
        out.push('_');
    }
    out
}

/// The original name under which a tool whose JS name is `js_name` is reachable too, if
/// it needs one.
pub(crate) fn alias<'a>(name: &'a str, js_name: &str) -> Option<&'a str> {
    (name != js_name && !NO_ALIAS.contains(&name)).then_some(name)
}

/// Identifiers for `names` (in the order given, which callers sort): a name that maps to an
/// identifier already taken gets `_2`, `_3`, ... in that order.
pub(crate) fn assign(names: Vec<&str>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    // Names that are already safe identifiers keep them, whatever their order.
    for name in &names {
        if is_safe(name) {
            taken.insert(name.to_string());
        }
    }
    let mut kept = std::collections::HashSet::new();
    names
        .iter()
        .map(|name| {
            // A second tool of the same name is mapped like any other, so that no two
            // tools share a JS name.
            if is_safe(name) && kept.insert(*name) {
                return name.to_string();
            }
            let base = to_identifier(name);
            let mut candidate = base.clone();
            let mut n = 2;
            while !taken.insert(candidate.clone()) {
                candidate = format!("{base}_{n}");
                n += 1;
            }
            candidate
        })
        .collect()
}

/// Every name the mapping must move out of the way: reserved words, the literals,
/// what strict code may not bind, and what objects already have.
#[cfg(test)]
pub(crate) const HOSTILE: &[&str] = &[
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "arguments",
    "eval",
    "__proto__",
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "then",
    "toJSON",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_identifiers_without_collisions() {
        assert_eq!(to_identifier("get-sum"), "get_sum");
        assert_eq!(to_identifier("2fa.check"), "_2fa_check");
        assert_eq!(to_identifier(""), "_");
        assert_eq!(
            assign(vec!["get-sum", "get_sum", "get.sum", "read"]),
            vec!["get_sum_2", "get_sum", "get_sum_3", "read"]
        );
    }

    #[test]
    fn reserved_and_prototype_names_get_a_suffix() {
        for name in HOSTILE {
            assert!(!is_safe(name), "{name} counts as safe");
            let js = to_identifier(name);
            assert_eq!(js, format!("{name}_"));
            assert!(is_safe(&js), "{name} -> {js}, which is not safe");
        }
        assert_eq!(to_identifier("__proto__"), "__proto___");
        assert_eq!(to_identifier("constructor"), "constructor_");
        // Near misses are names like any other.
        for name in ["Delete", "classes", "__proto", "then_", "toJson"] {
            assert!(is_safe(name), "{name}");
            assert_eq!(to_identifier(name), name);
        }
    }

    #[test]
    fn suffixed_names_yield_to_names_already_taken() {
        // `delete_` is an upstream's own name: it keeps it, `delete` moves on.
        assert_eq!(
            assign(vec!["delete", "delete_", "delete-"]),
            vec!["delete__2", "delete_", "delete__3"]
        );
        let all = assign(HOSTILE.to_vec());
        let unique: std::collections::HashSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), HOSTILE.len());
        assert!(all.iter().all(|n| is_safe(n)), "{all:?}");
    }

    #[test]
    fn the_same_name_twice_gets_two_js_names() {
        assert_eq!(
            assign(vec!["a", "a", "b-c", "b-c"]),
            vec!["a", "a_2", "b_c", "b_c_2"]
        );
    }

    #[test]
    fn original_names_are_aliases_except_then_and_to_json() {
        assert_eq!(alias("delete", "delete_"), Some("delete"));
        assert_eq!(alias("get-sum", "get_sum"), Some("get-sum"));
        assert_eq!(alias("__proto__", "__proto___"), Some("__proto__"));
        assert_eq!(alias("read", "read"), None);
        assert_eq!(alias("then", "then_"), None);
        assert_eq!(alias("toJSON", "toJSON_"), None);
    }
}
