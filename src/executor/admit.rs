//! The first stages of an execution, before any isolate: read the program (transpile it,
//! type-check it if asked, scan what it names), then admit it (refuse what the policy or
//! the egress rules refuse, and ask up front about the tools it names that need the
//! user's word).

use crate::{
    catalog::Catalog,
    policy::{ConfirmRequest, Confirmation, SharedConfirmer, gate},
    preflight::{self, Scan},
    sandbox::{ErrorKind, ProgramError},
    tenants::Tenancy,
    transpile::{Position, line_count, transpile},
    typecheck::{self, CheckError},
    typegen,
};

use super::{Executor, calls};

/// What the caller of one execution asked for, as [`Executor::read`] and
/// [`Executor::admit`] need it.
pub(super) struct Asked<'a> {
    pub(super) confirmer: &'a Option<SharedConfirmer>,
    pub(super) depth: u32,
    pub(super) typecheck: bool,
    /// The principal's overlays: the URLs it names are checked against them too.
    pub(super) tenancy: &'a Tenancy,
}

impl Executor {
    /// Reads the program: transpiles it, type-checks it if asked, and scans what it names.
    /// The JavaScript to run and the scan, or why nothing runs.
    pub(super) async fn read(
        &self,
        code: &str,
        catalog: &Catalog,
        Asked {
            depth, typecheck, ..
        }: &Asked<'_>,
    ) -> Result<(String, Scan), ProgramError> {
        let max_depth = self.tools.policy().max_depth();
        if *depth > max_depth {
            return Err(ProgramError::new(
                ErrorKind::Policy,
                format!(
                    "nothing ran: this execution would nest {depth} deep (a program called a code-mode server whose program called this one), and codemode.policy.maxDepth allows {max_depth}. Do the work in the outer program instead of through another code-mode server"
                ),
            ));
        }
        let transpiled = transpile(code).map_err(|err| ProgramError {
            kind: ErrorKind::Syntax,
            message: err.message,
            position: err.position,
            stack: None,
            tool: None,
            schema_path: None,
        })?;
        if *typecheck {
            self.typecheck(code, catalog).await?;
        }
        let scan = preflight::scan_with_globals(&transpiled.js, line_count(code), &|ns, tool| {
            catalog.find(ns, tool).is_some() || catalog.is_denied(ns, tool)
        });
        Ok((transpiled.js, scan))
    }

    /// Admits a program read as `scan`: refuses what it names that the policy denies or the
    /// egress rules do not allow, and asks the user up front, in one question, about the
    /// tools it names that need their word (approving them on `host` for the run).
    pub(super) async fn admit(
        &self,
        scan: &Scan,
        catalog: &Catalog,
        Asked {
            confirmer, tenancy, ..
        }: &Asked<'_>,
        host: &calls::CallHost,
    ) -> Result<(), ProgramError> {
        let refuse = |position: Position, message: String| {
            let mut error = ProgramError::new(ErrorKind::Policy, message);
            error.position = Some(position);
            error
        };
        let named = |namespace: &str, tool: &str| {
            if catalog.is_denied(namespace, tool) {
                gate::Named::Denied
            } else {
                catalog
                    .find(namespace, tool)
                    .map_or(gate::Named::Unknown, |t| gate::Named::Shown(t.access))
            }
        };
        let to_confirm = match gate::before_run(&scan.tools, named) {
            Ok(to_confirm) => to_confirm,
            Err((denied, message)) => {
                let mut error = refuse(denied.position, message);
                error.tool = Some(denied.name.clone());
                return Err(error);
            }
        };
        for reference in &scan.urls {
            let why = match &self.egress {
                None => Some(
                    "fetch is off on this server (no codemode.egress.rules allow a URL)"
                        .to_string(),
                ),
                Some(_) if !tenancy.may_fetch() => Some(
                    "fetch is off for this principal (its codemode.tenants overlay allows no URLs)"
                        .to_string(),
                ),
                Some(egress) => egress.check_within(&reference.name, tenancy.egress()).err(),
            };
            if let Some(why) = why {
                return Err(refuse(
                    reference.position,
                    format!(
                        "nothing ran: line {} fetches {:?}: {why}",
                        reference.position.line, reference.name
                    ),
                ));
            }
        }
        if let (Some(confirmer), Some(first)) = (confirmer.as_ref(), to_confirm.first())
            && confirmer.can_ask()
        {
            let names: Vec<String> = to_confirm
                .iter()
                .map(|r| format!("tools.{}", r.name))
                .collect();
            let answer = confirmer
                .confirm(ConfirmRequest {
                    tool: names.join(", "),
                    arguments: String::new(),
                    site: Some(first.position),
                    reason: Some(
                        "the program calls these tools, which the policy asks you to confirm; approving allows them for this run of the program".into(),
                    ),
                    before_run: true,
                })
                .await;
            match answer {
                Confirmation::Once | Confirmation::ForExecution => {
                    host.approve(to_confirm.iter().map(|r| r.name.clone()));
                }
                Confirmation::Denied(why) => {
                    return Err(refuse(
                        first.position,
                        format!(
                            "nothing ran: the program calls {}, and {why}",
                            names.join(", ")
                        ),
                    ));
                }
                Confirmation::Deferred => {
                    let mut asking = ProgramError::new(
                        ErrorKind::InputRequired,
                        format!(
                            "nothing ran yet: the program calls {}, which the user is being asked to confirm",
                            names.join(", ")
                        ),
                    );
                    asking.position = Some(first.position);
                    return Err(asking);
                }
            }
        }
        Ok(())
    }

    /// Checks the program against the tools' declarations; its type errors, or a checker
    /// that could not run, refuse it.
    async fn typecheck(&self, code: &str, catalog: &Catalog) -> Result<(), ProgramError> {
        let checker =
            self.typecheck.checker.as_ref().ok_or_else(|| {
                ProgramError::new(ErrorKind::Type, CheckError::Missing.to_string())
            })?;
        let mut declarations = typegen::all_declarations_as(catalog, typegen::Returns::Checked);
        declarations.push_str(typegen::DISCOVERY_DECLARATION);
        match checker
            .check(code, &declarations, self.egress.is_some())
            .await
        {
            Ok(errors) if errors.is_empty() => Ok(()),
            Ok(errors) => {
                let mut error = ProgramError::new(ErrorKind::Type, typecheck::report(&errors));
                error.position = Some(errors[0].position);
                Err(error)
            }
            Err(err) => Err(ProgramError::new(
                ErrorKind::Type,
                format!("nothing ran: {err}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{catalog::LiveCatalog, executor::ExecutorSettings};

    fn executor() -> Executor {
        let settings = ExecutorSettings {
            concurrency: 1,
            queue: 0,
            ..ExecutorSettings::default()
        };
        Executor::with_tools(settings, Arc::new(LiveCatalog::empty())).unwrap()
    }

    fn asked(confirmer: &Option<crate::policy::SharedConfirmer>, depth: u32) -> Asked<'_> {
        Asked {
            confirmer,
            depth,
            typecheck: false,
            tenancy: Box::leak(Box::default()),
        }
    }

    #[tokio::test]
    async fn reading_refuses_bad_syntax_at_its_position_and_too_deep_a_nesting() {
        let executor = executor();
        let catalog = executor.tools.current();
        let none = None;
        let syntax = executor
            .read("const x = ;", &catalog, &asked(&none, 0))
            .await
            .unwrap_err();
        assert_eq!(syntax.kind, ErrorKind::Syntax);
        assert_eq!(syntax.position.map(|p| p.line), Some(1));
        let max = executor.tools.policy().max_depth();
        let deep = executor
            .read("return 1", &catalog, &asked(&none, max + 1))
            .await
            .unwrap_err();
        assert_eq!(deep.kind, ErrorKind::Policy);
        assert!(deep.message.contains("maxDepth"), "{}", deep.message);
        let (js, scan) = executor
            .read("return 1", &catalog, &asked(&none, max))
            .await
            .unwrap();
        assert!(js.contains("return 1") && scan.tools.is_empty());
    }

    #[tokio::test]
    async fn admitting_refuses_a_fetch_when_fetch_is_off_at_its_line() {
        let executor = executor();
        let catalog = executor.tools.current();
        let none = None;
        let code = "const a = 1;\nawait fetch('https://example.com/x');";
        let (_, scan) = executor
            .read(code, &catalog, &asked(&none, 0))
            .await
            .unwrap();
        let host = calls::CallHost::for_tests(&executor.tools, catalog.clone());
        let refused = executor
            .admit(&scan, &catalog, &asked(&none, 0), &host)
            .await
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Policy);
        assert_eq!(refused.position.map(|p| p.line), Some(2));
        assert!(
            refused.message.contains("fetch is off"),
            "{}",
            refused.message
        );
    }
}
