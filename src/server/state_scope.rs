//! Whose `state.*` store an execution sees. A legacy session (stdio, or an HTTP session with
//! its `Mcp-Session-Id`) has one implicitly, as before. A modern (2026-07-28) HTTP request
//! has no session: its store is named by a handle the server mints and the client passes
//! back as `execute_code`'s `state`, bound to its owner (SEP-2567). The store's key is a
//! hash of owner and handle, so a handle copied to another owner opens an empty store, the
//! same as a handle nobody ever minted: nothing tells a prober that it exists.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// What starts every handle, so that a model can tell one from other strings.
const PREFIX: &str = "cms_";
/// Random bytes in a handle: 2 x 122 random bits of UUID v4.
const RANDOM_BYTES: usize = 32;

/// The store one execution uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateScope {
    /// The key of the store (`tools.state` keeps stores by it).
    pub(super) key: String,
    /// The handle to give back with the result; `None` for an implicit (session) store.
    pub(super) handle: Option<String>,
    /// Whether the client passed the handle (it is given back whatever the run did).
    pub(super) given: bool,
}

/// The store for a run: the `given` handle's (bound to `owner`), else the session's
/// (`implicit`), else a fresh handle's.
pub(super) fn scope(
    given: Option<&str>,
    owner: &str,
    implicit: Option<&str>,
) -> Result<StateScope, String> {
    match (given, implicit) {
        (Some(handle), _) => {
            check(handle)?;
            Ok(StateScope {
                key: key(owner, handle),
                handle: Some(handle.to_string()),
                given: true,
            })
        }
        (None, Some(session)) => Ok(StateScope {
            key: session.to_string(),
            handle: None,
            given: false,
        }),
        (None, None) => {
            let handle = mint();
            Ok(StateScope {
                key: key(owner, &handle),
                handle: Some(handle),
                given: false,
            })
        }
    }
}

fn mint() -> String {
    let mut bytes = Vec::with_capacity(RANDOM_BYTES);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn check(handle: &str) -> Result<(), String> {
    let encoded_len = RANDOM_BYTES.div_ceil(3) * 4 - (3 - RANDOM_BYTES % 3) % 3;
    let well_formed = handle.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == encoded_len
            && base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rest)
                .is_ok()
    });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "invalid argument state: {:?} is not a state handle. Pass the `state` string an earlier execute_code result returned (it starts with \"{PREFIX}\"), or omit it to start with an empty store",
            handle.chars().take(80).collect::<String>()
        ))
    }
}

fn key(owner: &str, handle: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(owner.as_bytes());
    hash.update([0]);
    hash.update(handle.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("handle:{hex}")
}

/// Who an HTTP request comes from: the bearer token it authenticated with (hashed), or
/// nobody in particular (then a handle alone names a store).
pub(super) fn owner(headers: Option<&http::HeaderMap>) -> String {
    let token = headers
        .and_then(|h| h.get(http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(token) => {
            let digest = Sha256::digest(token.trim().as_bytes());
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("bearer:{hex}")
        }
        None => "anonymous".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_fresh_checked_and_bound_to_their_owner() {
        let fresh = scope(None, "bearer:a", None).unwrap();
        let handle = fresh.handle.clone().unwrap();
        assert!(handle.starts_with(PREFIX));
        assert_ne!(
            scope(None, "bearer:a", None).unwrap().handle,
            Some(handle.clone())
        );
        let again = scope(Some(&handle), "bearer:a", None).unwrap();
        assert_eq!(again.key, fresh.key);
        let stolen = scope(Some(&handle), "bearer:b", None).unwrap();
        assert_ne!(
            stolen.key, fresh.key,
            "another owner's store is another store"
        );
        assert!(
            scope(Some("cms_short"), "x", None)
                .unwrap_err()
                .contains("not a state handle")
        );
        let session = scope(None, "x", Some("session-1")).unwrap();
        assert_eq!((session.key.as_str(), session.handle), ("session-1", None));
    }
}
