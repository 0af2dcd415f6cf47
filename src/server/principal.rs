//! Who a request comes from, as far as this server has checked: the front door
//! ([`super::http`]'s guard) names the principal of a request whose bearer token it
//! verified (a token of the token file, or an access token of the OAuth issuer); everything
//! else an HTTP request says about itself (an `Authorization` header nobody checked, an
//! `Mcp-Session-Id` nobody issued) is the client's word and names no one.

use sha2::{Digest, Sha256};

use crate::digest;

/// The scope that opens the console and `/metrics`, which show every principal's
/// executions.
pub const OPERATOR_SCOPE: &str = "codemode:operator";

/// A verified caller, put in the request's extensions by the guard that checked it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// What owns its state, tasks and approvals: stable, never shown to other principals.
    id: String,
    /// How records, metrics and the console name it.
    name: String,
    /// What it may do, as its token says.
    scopes: Vec<String>,
    /// Who vouched for it.
    vouched_by: Voucher,
    /// The issuer's subject as it came, where the name is a hash of it: overlays whose
    /// globs name subjects match it too.
    subject: Option<String>,
}

/// Who vouched for a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voucher {
    /// The token file, which the operator wrote.
    TokenFile,
    /// The OAuth authorization server the server trusts, by a signed access token.
    Issuer,
}

/// Two requests are the same principal's when their ids are the same, whatever scopes
/// each token carried: a refreshed token keeps its sessions.
impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Principal {}

impl Principal {
    /// The principal holding an unnamed `token` of the token file, which the guard has
    /// checked. Only a hash of it is kept: the id reaches store keys.
    #[cfg(test)]
    pub(crate) fn of_token(token: &str) -> Self {
        Self::of_token_hash(&Sha256::digest(token.as_bytes()).into(), Vec::new())
    }

    /// The principal of an unnamed token whose SHA-256 is `hash`.
    pub(crate) fn of_token_hash(hash: &[u8; 32], scopes: Vec<String>) -> Self {
        let id = format!("bearer:{}", digest::hex(&hash[..16]));
        Self {
            name: id[..15].to_string(),
            id,
            scopes,
            vouched_by: Voucher::TokenFile,
            subject: None,
        }
    }

    /// A principal the token file names.
    pub(crate) fn named(name: &str, scopes: Vec<String>) -> Self {
        Self {
            id: format!("token:{name}"),
            name: name.to_string(),
            scopes,
            vouched_by: Voucher::TokenFile,
            subject: None,
        }
    }

    /// The subject of an OAuth access token. A subject that is long or holds characters
    /// a label or a log line should not is named by a hash of it.
    pub(crate) fn of_subject(subject: &str, scopes: Vec<String>) -> Self {
        let plain = !subject.is_empty()
            && subject.len() <= 128
            && subject
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@:+-|".contains(&b));
        let name = if plain {
            subject.to_string()
        } else {
            let hash = Sha256::digest(subject.as_bytes());
            format!("sub#{}", digest::hex(&hash[..8]))
        };
        Self {
            id: format!("oauth:{name}"),
            subject: (!plain).then(|| subject.to_string()),
            name,
            scopes,
            vouched_by: Voucher::Issuer,
        }
    }

    /// What owns state, tasks and approvals of this principal.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Its name in records, metrics, traces and the console.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who vouched for it.
    pub fn vouched_by(&self) -> Voucher {
        self.vouched_by
    }

    /// The names overlays match it by: its name, and the subject its name hashes.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(self.name.as_str())
            .chain(self.subject.as_deref())
            .collect()
    }

    /// The scopes its token carries.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether its token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether it may open the console and the metrics.
    pub fn is_operator(&self) -> bool {
        self.has_scope(OPERATOR_SCOPE)
    }
}

/// The owner of an HTTP request: its checked principal, else nobody in particular (then a
/// handle alone names a store, and an id alone a task).
pub(super) fn owner(extensions: Option<&http::Extensions>) -> String {
    extensions
        .and_then(|e| e.get::<Principal>())
        .map_or_else(|| ANONYMOUS.to_string(), |p| p.id().to_string())
}

/// The name of an HTTP request's checked principal, for its records.
pub(super) fn name(extensions: Option<&http::Extensions>) -> Option<String> {
    extensions
        .and_then(|e| e.get::<Principal>())
        .map(|p| p.name().to_string())
}

/// Whether `name` may name a principal (in the token file, `codemode.principal`): short,
/// and nothing a log line, a metric label or a store key would have to escape.
pub fn is_principal_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// The owner of unauthenticated HTTP requests.
pub(super) const ANONYMOUS: &str = "anonymous";

/// The principal of a server's one client over stdio (and of `codemode-mcp run`), unless
/// the configuration names it.
pub const LOCAL: &str = "local";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_kinds_apart_and_subjects_stay_printable() {
        let raw = Principal::of_token("alpha");
        assert!(raw.id().starts_with("bearer:") && raw.id().len() == 39);
        assert_eq!(raw.name(), &raw.id()[..15]);
        assert_eq!(Principal::named("ci", vec![]).id(), "token:ci");
        let agent = Principal::of_subject("agent-a", vec![OPERATOR_SCOPE.into()]);
        assert_eq!((agent.id(), agent.name()), ("oauth:agent-a", "agent-a"));
        assert!(agent.is_operator() && !raw.is_operator());
        // A subject that could forge a log line or a label is hashed.
        let odd = Principal::of_subject("a\nb\"} 1", vec![]);
        assert!(odd.name().starts_with("sub#") && odd.name().len() == 20);
        assert_ne!(odd, Principal::of_subject("a\nb\"} 2", vec![]));
        // The same subject is the same principal whatever its token's scopes.
        assert_eq!(agent, Principal::of_subject("agent-a", vec![]));
        // A named token cannot pose as a subject, nor a subject as a named token.
        assert_ne!(
            Principal::named("x", vec![]),
            Principal::of_subject("x", vec![])
        );
    }
}
