//! The pre-flight scan: before a program runs, parse it (with swc, the parser behind the
//! TypeScript stripping) and collect what it names statically: `tools.<ns>.<tool>`
//! references, `fetch` targets written as literals, and `eval` / `Function` /
//! `.constructor(...)`. The executor checks these against the policy and the egress rules
//! and fails the program at once, with the position, when it names something it may not
//! reach, before anything ran. It is a fast first line only: `tools[name]` and computed
//! URLs are still checked at call time, like every call.

use serde::{Deserialize, Serialize};
use swc_common::{FileName, SourceMap, Spanned, sync::Lrc};
use swc_ecma_ast::{CallExpr, Callee, Expr, Lit, MemberExpr, MemberProp, NewExpr};
use swc_ecma_parser::{Parser, StringInput, Syntax};
use swc_ecma_visit::{Visit, VisitWith};

use crate::transpile::{Position, program_line};

/// A name the program uses, where it first uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// `namespace.tool`, or a URL.
    pub name: String,
    /// Where, in the agent's source.
    pub position: Position,
}

/// What a program names statically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scan {
    /// `tools.<ns>.<tool>` references, first use of each.
    pub tools: Vec<Reference>,
    /// Literal `fetch` targets.
    pub urls: Vec<Reference>,
    /// Uses of `eval`, `Function` or `.constructor(...)` (code built at run time, which
    /// reaches nothing more than the program could, but is worth an auditor's look).
    pub dynamic_code: Vec<Position>,
    /// Whether the program reaches tools or fetches URLs through computed names, which
    /// only the call-time checks see.
    pub dynamic_access: bool,
}

/// Scans the transpiled program (`js` from [`crate::transpile`]); `program_lines` maps
/// positions back to the agent's source. A program the parser rejects scans as empty: the
/// engine reports its syntax error.
pub fn scan(js: &str, program_lines: u32) -> Scan {
    scan_with_globals(js, program_lines, &|_, _| false)
}

/// [`scan`], also counting `state.get(...)`-style calls through the host's namespaces
/// that are globals too ([`crate::catalog::GLOBAL_NAMESPACES`]), where `is_tool` says the
/// name is a real tool (a program's own `state` variable looks the same).
pub fn scan_with_globals(
    js: &str,
    program_lines: u32,
    is_tool: &dyn Fn(&str, &str) -> bool,
) -> Scan {
    let cm: Lrc<SourceMap> = Default::default();
    let file = cm.new_source_file(Lrc::new(FileName::Anon), js.to_string());
    let mut parser = Parser::new(
        Syntax::Es(Default::default()),
        StringInput::from(&*file),
        None,
    );
    let Ok(script) = parser.parse_script() else {
        return Scan::default();
    };
    let mut scanner = Scanner {
        cm,
        program_lines,
        found: Scan::default(),
        is_tool,
    };
    script.visit_with(&mut scanner);
    scanner.found
}

struct Scanner<'a> {
    cm: Lrc<SourceMap>,
    program_lines: u32,
    found: Scan,
    is_tool: &'a dyn Fn(&str, &str) -> bool,
}

impl Scanner<'_> {
    fn position(&self, node: &impl Spanned) -> Position {
        let loc = self.cm.lookup_char_pos(node.span().lo);
        Position {
            line: program_line(
                u32::try_from(loc.line).unwrap_or(u32::MAX),
                self.program_lines,
            ),
            column: u32::try_from(loc.col_display + 1).unwrap_or(u32::MAX),
        }
    }

    fn add(list: &mut Vec<Reference>, name: String, position: Position) {
        if !list.iter().any(|r| r.name == name) {
            list.push(Reference { name, position });
        }
    }
}

/// The name a member expression's property spells, if it is static.
fn static_name(prop: &MemberProp) -> Option<String> {
    match prop {
        MemberProp::Ident(ident) => Some(ident.sym.to_string()),
        MemberProp::Computed(computed) => literal_string(&computed.expr),
        MemberProp::PrivateName(_) => None,
    }
}

/// The value of a string literal or a template literal without substitutions.
fn literal_string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(Lit::Str(text)) => Some(text.value.to_string_lossy().into_owned()),
        Expr::Tpl(tpl) if tpl.exprs.is_empty() => tpl
            .quasis
            .first()
            .and_then(|q| q.cooked.as_ref())
            .map(|c| c.to_string_lossy().into_owned()),
        Expr::Paren(inner) => literal_string(&inner.expr),
        _ => None,
    }
}

fn is_ident(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Ident(ident) if ident.sym == *name)
}

/// `fetch`, `globalThis.fetch`.
fn is_global(expr: &Expr, name: &str) -> bool {
    match expr {
        Expr::Ident(ident) => ident.sym == *name,
        Expr::Member(member) => {
            is_ident(&member.obj, "globalThis")
                && static_name(&member.prop).as_deref() == Some(name)
        }
        Expr::Paren(inner) => is_global(&inner.expr, name),
        _ => false,
    }
}

impl Visit for Scanner<'_> {
    fn visit_member_expr(&mut self, member: &MemberExpr) {
        // tools.<ns>.<tool>: the outer member's object is `tools.<ns>`.
        if let Expr::Member(inner) = &*member.obj
            && is_global(&inner.obj, "tools")
        {
            match (static_name(&inner.prop), static_name(&member.prop)) {
                (Some(namespace), Some(tool)) => {
                    let position = self.position(member);
                    Self::add(
                        &mut self.found.tools,
                        format!("{namespace}.{tool}"),
                        position,
                    );
                }
                _ => self.found.dynamic_access = true,
            }
        } else if is_global(&member.obj, "tools") && static_name(&member.prop).is_none() {
            self.found.dynamic_access = true;
        } else if let Some(namespace) = crate::catalog::GLOBAL_NAMESPACES
            .iter()
            .find(|namespace| is_global(&member.obj, namespace))
            && let Some(tool) = static_name(&member.prop)
            && (self.is_tool)(namespace, &tool)
        {
            let position = self.position(member);
            Self::add(
                &mut self.found.tools,
                format!("{namespace}.{tool}"),
                position,
            );
        }
        member.visit_children_with(self);
    }

    fn visit_call_expr(&mut self, call: &CallExpr) {
        if let Callee::Expr(callee) = &call.callee {
            if is_global(callee, "fetch") {
                match call.args.first().and_then(|a| literal_string(&a.expr)) {
                    Some(url) => {
                        let position = self.position(call);
                        Self::add(&mut self.found.urls, url, position);
                    }
                    None => self.found.dynamic_access = true,
                }
            }
            let dynamic = is_global(callee, "eval")
                || is_global(callee, "Function")
                || matches!(&**callee, Expr::Member(m) if static_name(&m.prop).as_deref() == Some("constructor"));
            if dynamic {
                let position = self.position(call);
                self.found.dynamic_code.push(position);
            }
        }
        call.visit_children_with(self);
    }

    fn visit_new_expr(&mut self, new: &NewExpr) {
        if is_global(&new.callee, "Function") {
            let position = self.position(new);
            self.found.dynamic_code.push(position);
        }
        if is_global(&new.callee, "Request") {
            match new
                .args
                .as_ref()
                .and_then(|args| args.first())
                .and_then(|a| literal_string(&a.expr))
            {
                Some(url) => {
                    let position = self.position(new);
                    Self::add(&mut self.found.urls, url, position);
                }
                None => self.found.dynamic_access = true,
            }
        }
        new.visit_children_with(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transpile::{line_count, transpile};

    fn scanned(code: &str) -> Scan {
        scan(&transpile(code).unwrap().js, line_count(code))
    }

    #[test]
    fn finds_tools_urls_and_dynamic_code_with_positions() {
        let found = scanned(
            "const a: number = 1;\nconst r = await tools.github.create_issue({});\nawait tools[\"fs\"].read({});\nawait fetch(\"https://x.com/a\");\nawait fetch(`https://y.com/${a}`);\neval('1');\nnew Function('return 1');\n",
        );
        let tools: Vec<_> = found
            .tools
            .iter()
            .map(|r| (r.name.as_str(), r.position.line, r.position.column))
            .collect();
        assert_eq!(tools, [("github.create_issue", 2, 17), ("fs.read", 3, 7)]);
        assert_eq!(found.urls.len(), 1);
        assert_eq!(found.urls[0].name, "https://x.com/a");
        assert_eq!(found.urls[0].position.line, 4);
        assert!(found.dynamic_access, "the template URL is computed");
        assert_eq!(
            found
                .dynamic_code
                .iter()
                .map(|p| p.line)
                .collect::<Vec<_>>(),
            [6, 7]
        );
    }

    #[test]
    fn computed_tool_names_are_dynamic() {
        let found = scanned("const n = 'x';\nawait tools.fs[n]({});\n");
        assert!(found.tools.is_empty());
        assert!(found.dynamic_access);
        assert!(!scanned("return 1").dynamic_access);
    }

    #[test]
    fn constructor_escape_is_flagged() {
        let found = scanned("return (() => {}).constructor('return this')();");
        assert_eq!(found.dynamic_code.len(), 1);
    }
}
