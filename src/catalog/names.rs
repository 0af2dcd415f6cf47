//! MCP names -> JS identifiers: deterministic, collision-free.

/// Whether `name` is usable as `tools.<name>` without quoting.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `get-sum` -> `get_sum`, `2fa.check` -> `_2fa_check`: every character that cannot be in
/// an identifier becomes `_`.
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
    out
}

/// Identifiers for `names` (in the order given, which callers sort): a name that maps to an
/// identifier already taken gets `_2`, `_3`, ... in that order.
pub(crate) fn assign(names: Vec<&str>) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    // Names that are already identifiers keep them, whatever their order.
    for name in &names {
        if is_identifier(name) {
            taken.insert(name.to_string());
        }
    }
    names
        .iter()
        .map(|name| {
            if is_identifier(name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_identifiers_without_collisions() {
        assert_eq!(to_identifier("get-sum"), "get_sum");
        assert_eq!(to_identifier("2fa.check"), "_2fa_check");
        assert_eq!(
            assign(vec!["get-sum", "get_sum", "get.sum", "read"]),
            vec!["get_sum_2", "get_sum", "get_sum_3", "read"]
        );
    }
}
