//! Which principal opened each streamable-HTTP session. A session id travels in a header
//! any proxy log, browser tab or prompt-injected program may see; with several tokens, a
//! principal that learns another's id must not reach that session's store, tasks or
//! questions through it. So the principal that opened a session is its only user: for
//! anyone else the id is answered exactly as one that never existed (a prober learns
//! nothing by trying ids). Without tokens every request is anonymous, and the id alone is
//! the session, as the protocol has it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::Method;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use super::is_streamable;
use crate::server::Principal;

const SESSION_HEADER: &str = "mcp-session-id";

/// The principal of every open session (`None`: anonymous).
pub(super) struct SessionOwners {
    owners: Mutex<HashMap<String, Option<Principal>>>,
    /// The transport's sessions, to forget the owners of those it closed.
    sessions: Arc<LocalSessionManager>,
}

impl std::fmt::Debug for SessionOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOwners")
            .field("owners", &self.owners.lock().map_or(0, |o| o.len()))
            .finish_non_exhaustive()
    }
}

impl SessionOwners {
    pub(super) fn new(sessions: Arc<LocalSessionManager>) -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            sessions,
        }
    }

    /// Whether `principal` may use session `id`: only the principal that opened it. An id
    /// this table does not hold is no session a client learned here (the table holds every
    /// one before its id is answered), so it is refused, and the transport answers it as
    /// unknown either way.
    fn admits(&self, id: &str, principal: Option<&Principal>) -> bool {
        self.owners
            .lock()
            .map(|owners| {
                owners
                    .get(id)
                    .is_some_and(|owner| owner.as_ref() == principal)
            })
            .unwrap_or(false)
    }

    async fn bind(&self, id: String, principal: Option<Principal>) {
        let full = self
            .owners
            .lock()
            .map(|owners| owners.len() >= PRUNE_AT && owners.len().is_power_of_two())
            .unwrap_or(false);
        // The transport's sessions stay locked while ended ones are dropped from here: a
        // session it opens meanwhile is not dropped for missing from a stale copy.
        let live = if full {
            Some(self.sessions.sessions.read().await)
        } else {
            None
        };
        if let Ok(mut owners) = self.owners.lock() {
            // Ended sessions go (a DELETE forgets its own at once; one closed for being
            // idle is forgotten here), at sizes that double, so the cost is amortised.
            if let Some(live) = &live {
                owners.retain(|id, _| live.contains_key(id.as_str()));
            }
            owners.insert(id, principal);
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut owners) = self.owners.lock() {
            owners.remove(id);
        }
    }
}

/// Past this many owners, ended sessions are looked for.
const PRUNE_AT: usize = 64;

/// The middleware: refuses a session to any principal but its own, and records the owner
/// of each session a request opens.
pub(super) async fn check(
    State(owners): State<Arc<SessionOwners>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !is_streamable(request.uri().path()) {
        return next.run(request).await;
    }
    let principal = request.extensions().get::<Principal>().cloned();
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match session {
        Some(id) if !owners.admits(&id, principal.as_ref()) => {
            // The transport answers, for an id it never issued: word for word what it
            // says to any made-up id, whatever the method (a DELETE of one is "done").
            let never_issued = uuid::Uuid::new_v4().simple().to_string();
            if let Ok(value) = http::HeaderValue::from_str(&never_issued) {
                request.headers_mut().insert(SESSION_HEADER, value);
            }
            next.run(request).await
        }
        Some(id) => {
            let ends = request.method() == Method::DELETE;
            let response = next.run(request).await;
            if ends && response.status().is_success() {
                owners.forget(&id);
            }
            response
        }
        None => {
            let response = next.run(request).await;
            let opened = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Some(id) = opened {
                owners.bind(id, principal).await;
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_its_openers_alone() {
        let owners = SessionOwners::new(Arc::new(LocalSessionManager::default()));
        let (alice, bob) = (Principal::of_token("a"), Principal::of_token("b"));
        owners.bind("s1".into(), Some(alice.clone())).await;
        owners.bind("s2".into(), None).await;
        assert!(owners.admits("s1", Some(&alice)));
        assert!(!owners.admits("s1", Some(&bob)));
        assert!(!owners.admits("s1", None));
        assert!(owners.admits("s2", None));
        assert!(!owners.admits("s2", Some(&bob)));
        assert!(
            !owners.admits("never-issued", Some(&bob)),
            "refused, as unknown"
        );
        owners.forget("s1");
        assert!(
            !owners.admits("s1", Some(&alice)),
            "an ended session is unknown"
        );
    }

    #[tokio::test]
    async fn ended_sessions_are_forgotten_as_the_table_grows() {
        let owners = SessionOwners::new(Arc::new(LocalSessionManager::default()));
        for i in 0..=PRUNE_AT * 2 {
            owners.bind(format!("s{i}"), None).await;
        }
        let held = owners.owners.lock().unwrap().len();
        assert!(
            held <= PRUNE_AT + 1,
            "{held} owners of sessions the transport closed"
        );
    }
}
