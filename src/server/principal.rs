//! Who a request comes from, as far as this server has checked: the front door
//! ([`super::http`]'s guard) names the principal of a request whose bearer token it
//! verified; everything else an HTTP request says about itself (an `Authorization` header
//! nobody checked, an `Mcp-Session-Id` nobody issued) is the client's word and names no one.

use sha2::{Digest, Sha256};

use crate::digest;

/// A verified caller, put in the request's extensions by the guard that checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    /// The principal holding `token`, which the guard has checked. Only a hash of it is
    /// kept: the id reaches store keys.
    pub(crate) fn of_token(token: &str) -> Self {
        let hash = Sha256::digest(token.as_bytes());
        Self(format!("bearer:{}", digest::hex(&hash[..16])))
    }

    /// What owns state, tasks and approvals of this principal.
    pub(crate) fn id(&self) -> &str {
        &self.0
    }
}

/// The owner of an HTTP request: its checked principal, else nobody in particular (then a
/// handle alone names a store, and an id alone a task).
pub(super) fn owner(extensions: Option<&http::Extensions>) -> String {
    extensions
        .and_then(|e| e.get::<Principal>())
        .map_or_else(|| ANONYMOUS.to_string(), |p| p.id().to_string())
}

/// The owner of unauthenticated HTTP requests.
pub(super) const ANONYMOUS: &str = "anonymous";
