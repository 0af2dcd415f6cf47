//! Least privilege per principal: the overlays of `codemode.tenants`, compiled
//! ([`Tenants`]), and what they make of one principal's requests ([`Tenancy`]): which
//! tools it sees and calls (the catalog is narrowed, see [`crate::policy::Narrowing`]),
//! which URLs its programs fetch, and the limits of its executions. Every overlay that
//! matches applies, and each can only narrow: the strictest word wins. The quotas each
//! principal has over time are kept in [`quota`].

pub mod quota;

use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use quota::QuotaLimits;

use crate::{
    config::{PolicyAction, QuotaSettings, TenantDefault, TenantLimits, TenantSettings},
    egress::EgressNarrowing,
    policy::{Access, Narrowing},
    sandbox::Limits,
};

/// A bad `codemode.tenants` entry.
#[derive(Debug, thiserror::Error)]
#[error("codemode.tenants[{index}].{key}: {message}")]
pub struct TenantError {
    index: usize,
    key: String,
    message: String,
}

/// One compiled overlay.
#[derive(Debug)]
struct Overlay {
    /// How messages name it: `codemode.tenants[0] (readers)`.
    label: String,
    principals: GlobSet,
    scopes: Vec<String>,
    narrowing: Arc<Narrowing>,
    egress: Option<Arc<EgressNarrowing>>,
    limits: TenantLimits,
    quotas: QuotaLimits,
}

/// The overlays of `codemode.tenants`, and the quotas every principal has.
#[derive(Debug, Default)]
pub struct Tenants {
    overlays: Vec<Overlay>,
    quotas: QuotaLimits,
}

/// What the overlays make of one principal: the ones that match it, merged.
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    /// Which overlays match, as their indices (`0,2`): the key of the catalog it sees.
    key: String,
    narrowing: Vec<Arc<Narrowing>>,
    egress: Vec<Arc<EgressNarrowing>>,
    limits: TenantLimits,
    quotas: QuotaLimits,
    /// Which overlay set each limit, by key (`toolCalls`), with its value: what a
    /// refusal for the limit names.
    limit_keys: Vec<(&'static str, u64, String)>,
}

impl Tenants {
    /// No overlays: every principal has what the server allows.
    pub fn none() -> Self {
        Self::default()
    }

    /// Compiles `settings`; `limits` are the server's, which an overlay's above them
    /// cannot raise (that is warned about, once, here); `quotas` (`codemode.quotas`) are
    /// every principal's.
    pub fn new(
        settings: &[TenantSettings],
        limits: &Limits,
        quotas: &QuotaSettings,
    ) -> Result<Self, TenantError> {
        let overlays = settings
            .iter()
            .enumerate()
            .map(|(index, tenant)| compile(index, tenant, limits))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            overlays,
            quotas: QuotaLimits::of(quotas, "codemode.quotas"),
        })
    }

    /// Whether any overlay is configured.
    pub fn is_empty(&self) -> bool {
        self.overlays.is_empty()
    }

    /// The overlays that apply to the principal named `principal` whose token carries
    /// `scopes`. A request nobody checked has no name, which `"*"` matches (it is
    /// everyone) and no other glob does.
    pub fn resolve(&self, principal: Option<&str>, scopes: &[String]) -> Arc<Tenancy> {
        self.resolve_any(&principal.into_iter().collect::<Vec<_>>(), scopes)
    }

    /// [`Self::resolve`] for a principal known by several `names` (a hashed subject's
    /// name and the subject itself): an overlay matching any of them applies.
    pub fn resolve_any(&self, names: &[&str], scopes: &[String]) -> Arc<Tenancy> {
        let mut tenancy = Tenancy {
            quotas: self.quotas.clone(),
            ..Tenancy::default()
        };
        for (index, overlay) in self.overlays.iter().enumerate() {
            let by_name = if names.is_empty() {
                overlay.principals.is_match("")
            } else {
                names.iter().any(|name| overlay.principals.is_match(name))
            };
            let by_scope = overlay.scopes.iter().any(|s| scopes.contains(s));
            if !(by_name || by_scope) {
                continue;
            }
            if !tenancy.key.is_empty() {
                tenancy.key.push(',');
            }
            tenancy.key.push_str(&index.to_string());
            tenancy.narrowing.push(overlay.narrowing.clone());
            tenancy.egress.extend(overlay.egress.clone());
            for (key, value) in overlay.limits.entries() {
                let Some(value) = value else { continue };
                let lower = tenancy.limit_keys.iter().position(|(k, _, _)| *k == key);
                match lower {
                    Some(at) if tenancy.limit_keys[at].1 <= value => {}
                    Some(at) => tenancy.limit_keys[at] = (key, value, overlay.label.clone()),
                    None => tenancy.limit_keys.push((key, value, overlay.label.clone())),
                }
            }
            tenancy.limits = lowest(tenancy.limits, overlay.limits);
            tenancy.quotas = tenancy.quotas.lowest(&overlay.quotas);
        }
        Arc::new(tenancy)
    }
}

fn compile(index: usize, tenant: &TenantSettings, limits: &Limits) -> Result<Overlay, TenantError> {
    let error = |key: String, message: String| TenantError {
        index,
        key,
        message,
    };
    let mut principals = GlobSetBuilder::new();
    for (i, glob) in tenant.principals.iter().enumerate() {
        principals.add(Glob::new(glob).map_err(|e| {
            error(
                format!("principals[{i}]"),
                format!(
                    "{glob:?} is not a glob ({}); write e.g. \"agent-*\"",
                    e.kind()
                ),
            )
        })?);
    }
    let principals = principals
        .build()
        .map_err(|e| error("principals".into(), e.to_string()))?;
    let rules = tenant
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let glob = Glob::new(&rule.tools).map_err(|e| {
                error(
                    format!("rules[{i}].tools"),
                    format!(
                        "{:?} is not a glob ({}); write e.g. \"github.delete_*\" or \"*.write_file\"",
                        rule.tools,
                        e.kind()
                    ),
                )
            })?;
            let access = match rule.action {
                PolicyAction::Allow => Access::Allow,
                PolicyAction::Confirm => Access::Confirm,
                PolicyAction::Deny => Access::Deny,
            };
            Ok((glob.compile_matcher(), access))
        })
        .collect::<Result<_, _>>()?;
    let default = match tenant.default {
        TenantDefault::Allow => Access::Allow,
        TenantDefault::Confirm => Access::Confirm,
        TenantDefault::Deny => Access::Deny,
    };
    let label = tenant.label(index);
    let egress = match &tenant.egress {
        None => None,
        Some(patterns) => Some(Arc::new(
            EgressNarrowing::new(label.clone(), patterns)
                .map_err(|(i, message)| error(format!("egress[{i}]"), message))?,
        )),
    };
    for (key, asked, server) in [
        (
            "timeoutMs",
            tenant.limits.timeout_ms,
            limits.timeout.as_millis() as u64,
        ),
        (
            "heapMiB",
            tenant.limits.heap_mib,
            (limits.heap_bytes >> 20) as u64,
        ),
        (
            "toolCalls",
            tenant.limits.tool_calls,
            u64::from(limits.tool_calls),
        ),
        ("fetches", tenant.limits.fetches, u64::from(limits.fetches)),
    ] {
        if let Some(asked) = asked
            && asked > server
        {
            tracing::warn!(
                target: "config",
                "{label}.limits.{key} is {asked}, above the server's {server}: the server's applies (an overlay can only narrow)"
            );
        }
    }
    Ok(Overlay {
        label: label.clone(),
        principals,
        scopes: tenant.scopes.clone(),
        narrowing: Arc::new(Narrowing::new(rules, default)),
        egress,
        limits: tenant.limits,
        quotas: QuotaLimits::of(&tenant.quotas, &format!("codemode.tenants[{index}].quotas")),
    })
}

/// The lower of each limit two overlays set.
fn lowest(a: TenantLimits, b: TenantLimits) -> TenantLimits {
    let low = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    TenantLimits {
        timeout_ms: low(a.timeout_ms, b.timeout_ms),
        heap_mib: low(a.heap_mib, b.heap_mib),
        output_kib: low(a.output_kib, b.output_kib),
        result_kib: low(a.result_kib, b.result_kib),
        tool_calls: low(a.tool_calls, b.tool_calls),
        calls_per_tool: low(a.calls_per_tool, b.calls_per_tool),
        received_kib: low(a.received_kib, b.received_kib),
        fetches: low(a.fetches, b.fetches),
        output_chars: low(a.output_chars, b.output_chars),
    }
}

impl Tenancy {
    /// No overlay applies.
    pub fn unrestricted() -> Arc<Self> {
        Arc::default()
    }

    /// Whether no overlay applies.
    pub fn is_unrestricted(&self) -> bool {
        self.key.is_empty()
    }

    /// Which overlays apply, as their indices: principals with the same key see the same
    /// catalog.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The policy overlays, for [`crate::policy::Policy::narrowed`].
    pub fn narrowing(&self) -> &[Arc<Narrowing>] {
        &self.narrowing
    }

    /// The egress overlays, checked beside the server's rules.
    pub fn egress(&self) -> &[Arc<EgressNarrowing>] {
        &self.egress
    }

    /// Whether programs get `fetch` at all (an overlay with `"egress": []` takes it away).
    pub fn may_fetch(&self) -> bool {
        self.egress.iter().all(|e| e.allows_any())
    }

    /// The URL patterns the description shows: the server's, or where overlays narrow
    /// them, each overlay's (a fetch must match every one of them, and the server's rules).
    pub fn shown_egress(&self, server: Vec<&str>) -> Vec<String> {
        let mut shown: Vec<String> = Vec::new();
        for (index, overlay) in self.egress.iter().enumerate() {
            let patterns = overlay.patterns().join(", ");
            shown.push(if index == 0 {
                patterns
            } else {
                format!("and also within {patterns}")
            });
        }
        if shown.is_empty() {
            shown = server.into_iter().map(str::to_string).collect();
        }
        shown
    }

    /// The server's per-execution limits, lowered where an overlay says.
    pub fn limits(&self, server: Limits) -> Limits {
        let l = &self.limits;
        let bytes = |v: Option<u64>, shift: u32, server: usize| {
            v.map_or(server, |v| {
                usize::try_from(v << shift)
                    .unwrap_or(usize::MAX)
                    .min(server)
            })
        };
        let count = |v: Option<u64>, server: u32| {
            v.map_or(server, |v| u32::try_from(v).unwrap_or(u32::MAX).min(server))
        };
        Limits {
            timeout: l.timeout_ms.map_or(server.timeout, |ms| {
                std::time::Duration::from_millis(ms).min(server.timeout)
            }),
            heap_bytes: bytes(l.heap_mib, 20, server.heap_bytes),
            output_bytes: bytes(l.output_kib, 10, server.output_bytes),
            result_bytes: bytes(l.result_kib, 10, server.result_bytes),
            tool_calls: count(l.tool_calls, server.tool_calls),
            calls_per_tool: count(l.calls_per_tool, server.calls_per_tool),
            received_bytes: bytes(l.received_kib, 10, server.received_bytes),
            fetches: count(l.fetches, server.fetches),
            stack_bytes: server.stack_bytes,
        }
    }

    /// Where the limit `key` (`toolCalls`, `fetches`, ...) of value `effective` comes
    /// from, when an overlay set it: `codemode.tenants[0] (readers).limits.toolCalls`.
    pub fn limit_source(&self, key: &str, effective: u64) -> Option<String> {
        self.limit_keys
            .iter()
            .find(|(k, value, _)| *k == key && *value == effective)
            .map(|(key, _, label)| format!("{label}.limits.{key}"))
    }

    /// The quotas of the principal: the lowest of `codemode.quotas` and its overlays'.
    pub fn quotas(&self) -> &QuotaLimits {
        &self.quotas
    }

    /// The wall clock an overlay sets, which bounds even a task's longer one.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.limits.timeout_ms.map(std::time::Duration::from_millis)
    }

    /// The server's answer budget, lowered where an overlay says.
    pub fn answer_chars(&self, server: usize) -> usize {
        self.limits.output_chars.map_or(server, |chars| {
            usize::try_from(chars).unwrap_or(usize::MAX).min(server)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(json: serde_json::Value) -> Tenants {
        let settings: Vec<TenantSettings> = serde_json::from_value(json).unwrap();
        Tenants::new(&settings, &Limits::default(), &QuotaSettings::default()).unwrap()
    }

    #[test]
    fn every_matching_overlay_applies_and_limits_only_go_down() {
        let tenants = tenants(serde_json::json!([
            {"principals": ["agent-*"], "limits": {"timeoutMs": 5000, "toolCalls": 50}},
            {"scopes": ["team:read"], "limits": {"timeoutMs": 2000, "heapMiB": 100000}},
            {"principals": ["bob"], "egress": []}
        ]));
        let none = tenants.resolve(Some("carol"), &[]);
        assert!(none.is_unrestricted());
        assert_eq!(
            none.limits(Limits::default()).timeout,
            Limits::default().timeout
        );
        let both = tenants.resolve(Some("agent-7"), &["team:read".to_string()]);
        assert_eq!(both.key(), "0,1");
        let limits = both.limits(Limits::default());
        assert_eq!(limits.timeout.as_millis(), 2000);
        assert_eq!(limits.tool_calls, 50);
        // Above the server's: the server's stays.
        assert_eq!(limits.heap_bytes, Limits::default().heap_bytes);
        assert!(both.may_fetch());
        let bob = tenants.resolve(Some("bob"), &[]);
        assert_eq!(bob.key(), "2");
        assert!(!bob.may_fetch());
        // A principal nobody checked has no name: `*` is everyone, other globs miss it.
        assert!(tenants.resolve(None, &[]).is_unrestricted());
        let everyone = super::tests::tenants(serde_json::json!([{"principals": ["*"]}]));
        assert_eq!(everyone.resolve(None, &[]).key(), "0");
        // A subject named by its hash is matched by the subject as it came, too.
        let weird = crate::server::Principal::of_subject("agent-\u{1}x", Vec::new());
        assert!(weird.name().starts_with("sub#"));
        assert_eq!(tenants.resolve_any(&weird.names(), &[]).key(), "0");
    }

    #[test]
    fn bad_globs_and_urls_name_their_key() {
        let bad = |json: serde_json::Value| {
            let settings: Vec<TenantSettings> = serde_json::from_value(json).unwrap();
            Tenants::new(&settings, &Limits::default(), &QuotaSettings::default())
                .unwrap_err()
                .to_string()
        };
        let message = bad(serde_json::json!([{"principals": ["a["]}]));
        assert!(
            message.starts_with("codemode.tenants[0].principals[0]: "),
            "{message}"
        );
        let message = bad(serde_json::json!([
            {"principals": ["a"]},
            {"principals": ["b"], "rules": [{"tools": "x.{", "action": "deny"}]}
        ]));
        assert!(
            message.starts_with("codemode.tenants[1].rules[0].tools: "),
            "{message}"
        );
        let message = bad(serde_json::json!([{"principals": ["a"], "egress": ["ftp://x"]}]));
        assert!(
            message.starts_with("codemode.tenants[0].egress[0]: "),
            "{message}"
        );
    }
}
