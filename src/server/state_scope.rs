//! Whose `state.*` store an execution sees. A legacy session (stdio, or an HTTP session with
//! its `Mcp-Session-Id`) has one implicitly, as before. A modern (2026-07-28) HTTP request
//! has no session: its store is named by a handle the server mints and the client passes
//! back as `execute_code`'s `state`, bound to its owner (SEP-2567). A handle carries this
//! process's tag, so one it did not issue is refused; the store's key is a hash of owner
//! and handle, so a handle copied to another owner opens an empty store, beside a keyed
//! tag of the owner (never the token's plain hash: keys reach the disk and the audit log),
//! by which a full store drops the stores of whoever holds most.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::digest;

/// What starts every handle, so that a model can tell one from other strings.
const PREFIX: &str = "cms_";
/// Bytes in a handle: 16 random and a 16-byte tag.
const RANDOM_BYTES: usize = 32;

/// The store one execution uses.
#[derive(Debug, Clone)]
pub(super) struct StateScope {
    /// The key of the store (`tools.state` keeps stores by it).
    pub(super) key: String,
    /// The handle to give back with the result; `None` for an implicit (session) store.
    pub(super) handle: Option<String>,
    /// Whether the client passed the handle (it is given back whatever the run did).
    pub(super) given: bool,
    /// Set by the run's `state.*` calls (a skill's too).
    pub(super) used: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The store for a run: the `given` handle's (bound to `owner`), else the session's
/// (`implicit`), else a fresh handle's.
pub(super) fn scope(
    given: Option<&str>,
    owner: &str,
    implicit: Option<&str>,
    signing: &[u8; 32],
) -> Result<StateScope, String> {
    match (given, implicit) {
        (Some(handle), _) => {
            check(handle, signing)?;
            Ok(StateScope {
                key: key(owner, handle, signing),
                handle: Some(handle.to_string()),
                given: true,
                used: Default::default(),
            })
        }
        (None, Some(session)) => Ok(StateScope {
            key: session.to_string(),
            handle: None,
            given: false,
            used: Default::default(),
        }),
        (None, None) => {
            let handle = mint(signing);
            Ok(StateScope {
                key: key(owner, &handle, signing),
                handle: Some(handle),
                given: false,
                used: Default::default(),
            })
        }
    }
}

/// HMAC-SHA256 of `message` under the signing key, cut to 16 bytes. The key is the state
/// database's (or this process's, for stores in memory): a handle it did not issue (one a
/// prompt-injected program chose, to read later) is refused, not opened.
fn tag(signing: &[u8; 32], message: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest::hmac_sha256(signing, message)[..16]);
    out
}

/// 16 random bytes and their tag.
fn mint(signing: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(RANDOM_BYTES);
    bytes.extend_from_slice(&digest::random_bytes::<16>());
    let signature = tag(signing, &bytes);
    bytes.extend_from_slice(&signature);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn check(handle: &str, signing: &[u8; 32]) -> Result<(), String> {
    let decoded = handle
        .strip_prefix(PREFIX)
        .and_then(|rest| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rest)
                .ok()
        })
        .filter(|bytes| bytes.len() == RANDOM_BYTES);
    let issued = decoded.is_some_and(|bytes| {
        let (random, signature) = bytes.split_at(RANDOM_BYTES / 2);
        // Constant-time: the comparison tells a prober nothing about the tag.
        subtle::ConstantTimeEq::ct_eq(&tag(signing, random)[..], signature).into()
    });
    if issued {
        Ok(())
    } else {
        Err(format!(
            "invalid argument state: {:?} is not a state handle this server issued. Pass the `state` string an earlier execute_code result returned, or omit it to start with an empty store",
            handle.chars().take(80).collect::<String>()
        ))
    }
}

fn key(owner: &str, handle: &str, signing: &[u8; 32]) -> String {
    let mut hash = Sha256::new();
    hash.update(owner.as_bytes());
    hash.update([0]);
    hash.update(handle.as_bytes());
    format!(
        "handle:{}/{}",
        owner_tag(owner, signing),
        digest::hex(&hash.finalize())
    )
}

/// The store key of a legacy session's implicit store: the session's id under its owner,
/// so that an id used by anyone but the principal that opened the session (which the
/// front door already refuses) would open another, empty store.
pub(super) fn session_key(owner: &str, session: &str, signing: &[u8; 32]) -> String {
    format!("session:{}/{session}", owner_tag(owner, signing))
}

/// Who a store belongs to, as it may be written to disk and the audit log.
fn owner_tag(owner: &str, signing: &[u8; 32]) -> String {
    let tag = digest::hmac_sha256(signing, format!("owner\0{owner}").as_bytes());
    digest::hex(&tag[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn handles_are_fresh_checked_and_bound_to_their_owner() {
        let fresh = scope(None, "bearer:a", None, &KEY).unwrap();
        let handle = fresh.handle.clone().unwrap();
        assert!(handle.starts_with(PREFIX));
        assert_ne!(
            scope(None, "bearer:a", None, &KEY).unwrap().handle,
            Some(handle.clone())
        );
        let again = scope(Some(&handle), "bearer:a", None, &KEY).unwrap();
        assert_eq!(again.key, fresh.key);
        let stolen = scope(Some(&handle), "bearer:b", None, &KEY).unwrap();
        assert_ne!(
            stolen.key, fresh.key,
            "another owner's store is another store"
        );
        assert!(
            scope(Some("cms_short"), "x", None, &KEY)
                .unwrap_err()
                .contains("not a state handle")
        );
        assert_ne!(
            session_key("bearer:a", "s1", &KEY),
            session_key("bearer:b", "s1", &KEY),
            "a session id is its owner's store only"
        );
        let session = scope(None, "x", Some("session-1"), &KEY).unwrap();
        assert_eq!((session.key.as_str(), session.handle), ("session-1", None));
        assert!(
            scope(Some(&handle), "bearer:a", None, &[8; 32]).is_err(),
            "a handle signed under another key is not this store's"
        );
    }
}
