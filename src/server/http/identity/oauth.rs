//! OAuth 2.1 access tokens, as the MCP authorization specification has a resource server
//! check them: a JWT signed by one of the issuer's keys (its JWKS, fetched and cached,
//! fetched again when a token names a key it lacks), from that issuer (`iss`), for this
//! server (`aud` is its resource URI, RFC 8707), within its lifetime (`exp`, `nbf`, with a
//! small leeway), with the scopes the server requires. Its subject is the principal.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use serde::Deserialize;

use super::Rejection;
use crate::server::{Principal, http::HttpError};

/// How an OAuth authorization server's tokens are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOptions {
    /// The issuer (`iss`), whose metadata names its keys.
    pub issuer: String,
    /// This server's resource URI, e.g. `https://mcp.example.com/mcp`: the audience its
    /// tokens must name, and what its Protected Resource Metadata describes.
    pub resource: String,
    /// Where the issuer's keys are; `None`: read from its metadata (RFC 8414, then OpenID
    /// Connect discovery).
    pub jwks_uri: Option<String>,
    /// Audiences taken beside the resource URI (an issuer that names this server
    /// otherwise).
    pub audiences: Vec<String>,
    /// Scopes every token must carry to reach the MCP endpoints.
    pub required_scopes: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl OAuthOptions {
    /// Options for `issuer` and `resource`, with the defaults for the rest.
    pub fn new(issuer: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            resource: resource.into(),
            jwks_uri: None,
            audiences: Vec::new(),
            required_scopes: Vec::new(),
            leeway: Duration::from_secs(30),
        }
    }

    /// The options, checked: every URL is https (or http on a loopback host), and scopes
    /// are single words.
    pub(in crate::server::http) fn check(&self) -> Result<(), HttpError> {
        for (flag, url) in [
            ("--oauth-issuer", Some(&self.issuer)),
            ("--oauth-resource", Some(&self.resource)),
            ("--oauth-jwks-uri", self.jwks_uri.as_ref()),
        ] {
            if let Some(url) = url {
                check_url(url).map_err(|message| HttpError::OAuth { flag, message })?;
            }
        }
        if let Some(bad) = self
            .required_scopes
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(is_scope_byte))
        {
            return Err(HttpError::OAuth {
                flag: "--oauth-scope",
                message: format!(
                    "{bad:?} is not a scope: one word of printable ASCII, without quotes or backslashes"
                ),
            });
        }
        Ok(())
    }

    /// The resource of the legacy HTTP+SSE endpoint beside a resource ending in `/mcp`:
    /// the same URL ending in `/sse`. Its own metadata names it, so that a client connected
    /// to `/sse` finds a resource it is under (the Python SDK checks that it is), and
    /// tokens for it are taken too.
    pub(in crate::server::http) fn sse_resource(&self) -> Option<String> {
        let mut url = url::Url::parse(&self.resource).ok()?;
        let path = url.path().trim_end_matches('/');
        let base = path
            .strip_suffix(super::super::STREAMABLE_PATH)?
            .to_string();
        url.set_path(&format!("{base}{}", super::super::SSE_PATH));
        Some(url.to_string())
    }

    /// Where the Protected Resource Metadata of `resource` is (RFC 9728 section 3.1: the
    /// well-known path inserted before the resource's path).
    fn metadata_url_of(resource: &str) -> String {
        match url::Url::parse(resource) {
            Ok(url) => {
                let path = url.path().trim_end_matches('/');
                format!(
                    "{}{METADATA_PATH}{path}",
                    url.origin().ascii_serialization()
                )
            }
            Err(_) => resource.to_string(),
        }
    }

    /// Where the metadata a refusal names is: the legacy SSE endpoint's for a request to
    /// it (`legacy_sse`), else this server's resource's.
    pub(in crate::server::http) fn metadata_url(&self, legacy_sse: bool) -> String {
        match self.sse_resource().filter(|_| legacy_sse) {
            Some(sse) => Self::metadata_url_of(&sse),
            None => Self::metadata_url_of(&self.resource),
        }
    }

    /// The metadata documents this server answers, by path: the RFC 9728 one for its
    /// resource, the bare well-known path that some clients ask first, and the legacy SSE
    /// endpoint's.
    pub(in crate::server::http) fn metadata_documents(&self) -> Vec<(String, serde_json::Value)> {
        let path_of = |resource: &str| {
            url::Url::parse(resource)
                .map(|url| url.path().trim_end_matches('/').to_string())
                .unwrap_or_default()
        };
        let mut documents = vec![(METADATA_PATH.to_string(), self.metadata_of(&self.resource))];
        let path = path_of(&self.resource);
        if !path.is_empty() {
            documents.push((
                format!("{METADATA_PATH}{path}"),
                self.metadata_of(&self.resource),
            ));
        }
        if let Some(sse) = self.sse_resource() {
            documents.push((
                format!("{METADATA_PATH}{}", path_of(&sse)),
                self.metadata_of(&sse),
            ));
        }
        documents
    }

    /// The Protected Resource Metadata document (RFC 9728) of `resource`.
    fn metadata_of(&self, resource: &str) -> serde_json::Value {
        let mut document = serde_json::json!({
            "resource": resource,
            "authorization_servers": [self.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "codemode-mcp",
        });
        // Only what every client needs: a client asks for what is listed, and the
        // operator's scope is not for every client.
        if !self.required_scopes.is_empty() {
            document["scopes_supported"] = serde_json::json!(self.required_scopes);
        }
        document
    }
}

/// The well-known path of Protected Resource Metadata.
pub(in crate::server::http) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

fn is_scope_byte(b: u8) -> bool {
    // RFC 6749's scope-token, less what a header's quoted string would need escaped.
    (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'
}

fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "{text:?} must be an https URL (http only on a loopback host): tokens and keys must not cross a network in the clear"
            ));
        }
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(format!(
            "{text:?} has a query or a fragment; give the URL without them"
        ));
    }
    Ok(())
}

/// How long keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// Tokens naming a key the set lacks fetch the set again at most [`REFETCHES`] times in
/// this window, so that tokens with made-up key ids cannot make the server hammer the
/// issuer, while a rotation (a new key, and a stray token beside it) is still seen at once.
const REFETCH_WINDOW: Duration = Duration::from_secs(10);
const REFETCHES: usize = 3;
/// How long a fetch of metadata or keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest metadata document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Tokens checked once are taken again without their signature checked, until they expire,
/// this many at most (the cache is emptied when full).
const MAX_REMEMBERED: usize = 4096;

/// One key of the issuer's set, with the algorithms it verifies.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Key>,
    /// Keys without a `kid`, tried for tokens without one.
    unnamed: Vec<Key>,
    jwks_uri: Option<String>,
    fetched: Option<Instant>,
    /// When tokens naming unknown keys last fetched the set, the last [`REFETCHES`].
    refetched: std::collections::VecDeque<Instant>,
    /// Why the last fetch failed.
    failure: Option<String>,
}

/// A token checked before, by the SHA-256 of the token.
struct Remembered {
    principal: Principal,
    expires: u64,
}

/// Checks access tokens of one issuer.
pub(in crate::server::http) struct Verifier {
    options: OAuthOptions,
    audiences: Vec<String>,
    client: reqwest::Client,
    keys: tokio::sync::RwLock<Keys>,
    /// One fetch at a time: the others wait for it and use what it got.
    fetching: tokio::sync::Mutex<()>,
    remembered: std::sync::Mutex<HashMap<[u8; 32], Remembered>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.options.issuer)
            .field("resource", &self.options.resource)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    /// Required by the validation; optional here so that a token without it is refused
    /// as such, not as malformed.
    exp: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    /// Some issuers list scopes as `scp`, an array (or a string).
    #[serde(default)]
    scp: Option<serde_json::Value>,
}

impl Verifier {
    pub(in crate::server::http) fn new(options: OAuthOptions) -> Result<Self, HttpError> {
        options.check()?;
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| HttpError::OAuth {
                flag: "--oauth-issuer",
                message: format!("cannot make an HTTP client for the issuer: {e}"),
            })?;
        let mut audiences = vec![options.resource.clone()];
        audiences.extend(options.sse_resource());
        audiences.extend(options.audiences.iter().cloned());
        Ok(Self {
            options,
            audiences,
            client,
            keys: Default::default(),
            fetching: Default::default(),
            remembered: Default::default(),
        })
    }

    pub(in crate::server::http) fn options(&self) -> &OAuthOptions {
        &self.options
    }

    /// Fetches the keys ahead of the first token, so that a wrong issuer shows in the log
    /// at start.
    pub(in crate::server::http) async fn prefetch(&self) {
        match self.refresh(false).await {
            Ok(()) => tracing::info!(
                issuer = self.options.issuer,
                "OAuth: the issuer's keys are fetched"
            ),
            Err(message) => {
                tracing::warn!(
                    issuer = self.options.issuer,
                    "OAuth: {message}; access tokens are refused until its keys can be fetched"
                );
                self.keys.write().await.failure = Some(message);
            }
        }
    }

    /// The principal of `token`, or why it is not taken.
    pub(in crate::server::http) async fn verify(
        &self,
        token: &str,
    ) -> Result<Principal, Rejection> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(principal) = self.recall(&digest, now) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Rejection::Invalid(
                "the bearer token is neither a token of this server nor a JWT access token".into(),
            )
        })?;
        if !is_asymmetric(header.alg) {
            return Err(Rejection::Invalid(format!(
                "the token is signed with {:?}; only the issuer's public-key algorithms (RS256, PS256, ES256, EdDSA, ...) are taken",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.options.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.options.leeway.as_secs();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| Rejection::Invalid(self.describe(e.kind())))?
            .claims;
        let subject = claims
            .sub
            .as_deref()
            .or(claims.client_id.as_deref())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Rejection::Invalid("the token names no subject (`sub`)".into()))?;
        let principal = Principal::of_subject(subject, scopes(&claims));
        self.remember(
            digest,
            &principal,
            claims.exp.unwrap_or(0).saturating_add(validation.leeway),
        );
        Ok(principal)
    }

    fn recall(&self, digest: &[u8; 32], now: u64) -> Option<Principal> {
        let remembered = self.remembered.lock().ok()?;
        remembered
            .get(digest)
            .filter(|r| now < r.expires)
            .map(|r| r.principal.clone())
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal, expires: u64) {
        if let Ok(mut remembered) = self.remembered.lock() {
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
            remembered.insert(
                digest,
                Remembered {
                    principal: principal.clone(),
                    expires,
                },
            );
        }
    }

    fn describe(&self, kind: &ErrorKind) -> String {
        match kind {
            ErrorKind::ExpiredSignature => {
                "the token has expired; get a new one from the issuer".into()
            }
            ErrorKind::ImmatureSignature => {
                "the token is not valid yet (`nbf` is in the future)".into()
            }
            ErrorKind::InvalidAudience => format!(
                "the token is not for this server: its audience (`aud`) is not {}; ask the issuer for a token with resource={}",
                self.options.resource, self.options.resource
            ),
            ErrorKind::InvalidIssuer => format!(
                "the token is from another issuer (`iss`) than {}",
                self.options.issuer
            ),
            ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
            ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's".into(),
            _ => "the token is not a valid JWT access token".into(),
        }
    }

    /// The key that should have signed a token naming `kid` with `alg`: from the set as
    /// cached, else from a fresh copy of it (within the refetch budget).
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Rejection> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched.is_some_and(|at| at.elapsed() < KEYS_TTL);
            if fresh && let Some(found) = pick(&keys, kid, alg) {
                return Ok(found);
            }
        }
        if let Err(message) = self.refresh(true).await {
            self.keys.write().await.failure = Some(message.clone());
            tracing::warn!(issuer = self.options.issuer, "OAuth: {message}");
        }
        let keys = self.keys.read().await;
        if keys.fetched.is_none() {
            // Never fetched: no token can be told good or bad.
            let why = keys
                .failure
                .clone()
                .unwrap_or_else(|| "its keys are being fetched".into());
            return Err(Rejection::Unavailable(format!(
                "cannot check access tokens now: the issuer's keys could not be had ({why}); try again shortly"
            )));
        }
        // Keys fetched before are used while the issuer does not answer.
        pick(&keys, kid, alg).ok_or_else(|| {
            Rejection::Invalid(match kid {
                Some(kid) => format!(
                    "the token's key (kid {}) is not among the issuer's keys",
                    printable(kid)
                ),
                None => "no key of the issuer verifies the token's algorithm".into(),
            })
        })
    }

    /// Fetches the key set again; for a token naming an unknown key (`limited`), only
    /// within the refetch budget.
    async fn refresh(&self, limited: bool) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        let jwks_uri = {
            let mut keys = self.keys.write().await;
            if limited {
                let recent = |at: &Instant| at.elapsed() < REFETCH_WINDOW;
                if keys.refetched.iter().filter(|at| recent(at)).count() >= REFETCHES {
                    return Ok(());
                }
                if keys.refetched.len() >= REFETCHES {
                    keys.refetched.pop_front();
                }
                keys.refetched.push_back(Instant::now());
            }
            keys.jwks_uri
                .clone()
                .or_else(|| self.options.jwks_uri.clone())
        };
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => self.discover().await?,
        };
        let set = self.fetch_json(&jwks_uri).await?;
        let (by_id, unnamed) = usable_keys(&set);
        if by_id.is_empty() && unnamed.is_empty() {
            return Err(format!(
                "the issuer's key set at {jwks_uri} has no signing key this server can use"
            ));
        }
        let mut keys = self.keys.write().await;
        keys.by_id = by_id;
        keys.unnamed = unnamed;
        keys.jwks_uri = Some(jwks_uri);
        keys.fetched = Some(Instant::now());
        keys.failure = None;
        Ok(())
    }

    /// The issuer's `jwks_uri`, from its metadata: RFC 8414's location first, then
    /// OpenID Connect's. A document naming another issuer is refused (mix-up).
    async fn discover(&self) -> Result<String, String> {
        let issuer = &self.options.issuer;
        let url = url::Url::parse(issuer).map_err(|e| format!("the issuer {issuer:?}: {e}"))?;
        let origin = url.origin().ascii_serialization();
        let path = url.path().trim_end_matches('/');
        let mut candidates = vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
        ];
        if !path.is_empty() {
            candidates.push(format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ));
        }
        let mut failures = Vec::new();
        for candidate in candidates {
            match self.fetch_json(&candidate).await {
                Ok(document) => {
                    let named = document.get("issuer").and_then(|v| v.as_str());
                    if named != Some(issuer.as_str()) {
                        return Err(format!(
                            "the metadata at {candidate} names the issuer {named:?}, not {issuer:?}; give --oauth-issuer exactly as the issuer writes it"
                        ));
                    }
                    return document
                        .get("jwks_uri")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| format!("the metadata at {candidate} has no jwks_uri; give it with --oauth-jwks-uri"));
                }
                Err(message) => failures.push(message),
            }
        }
        Err(format!(
            "could not read the issuer's metadata: {}",
            failures.join("; ")
        ))
    }

    async fn fetch_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut response = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", fetch_error(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{url}: {}", fetch_error(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not send JSON: {e}"))
    }
}

/// The HTTP server's check of OAuth access tokens, on its own: for a front door of one's
/// own, and for the benchmark of what the check costs per request.
#[derive(Debug)]
pub struct AccessTokenVerifier(Verifier);

impl AccessTokenVerifier {
    /// A verifier of the tokens `options` describe; its keys are fetched at the first
    /// token (or by [`Self::prefetch`]).
    pub fn new(options: OAuthOptions) -> Result<Self, HttpError> {
        Verifier::new(options).map(Self)
    }

    /// Fetches the issuer's keys now.
    pub async fn prefetch(&self) {
        self.0.prefetch().await;
    }

    /// The principal `token` names, or why it is refused, as the server's `401`, `403` or
    /// `503` would say it.
    pub async fn principal(&self, token: &str) -> Result<Principal, String> {
        self.0
            .verify(token)
            .await
            .map_err(|rejection| match rejection {
                Rejection::Missing => "no token".to_string(),
                Rejection::Invalid(why) | Rejection::Unavailable(why) => why,
                Rejection::InsufficientScope => "the token lacks a required scope".to_string(),
            })
    }
}

fn fetch_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("timed out after {} ms", FETCH_TIMEOUT.as_millis())
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        error.to_string()
    }
}

fn pick(keys: &Keys, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let fits = |key: &&Key| key.algorithms.contains(&alg);
    match kid {
        Some(kid) => keys.by_id.get(kid).filter(fits).map(|k| k.key.clone()),
        None => keys.unnamed.iter().find(fits).map(|k| k.key.clone()),
    }
}

/// The signing keys of a JWKS document, by `kid`, and those without one. Keys this server
/// cannot use (encryption keys, symmetric ones, unknown types) are left out, one by one.
fn usable_keys(set: &serde_json::Value) -> (HashMap<String, Key>, Vec<Key>) {
    let mut by_id = HashMap::new();
    let mut unnamed = Vec::new();
    let listed = set.get("keys").and_then(|k| k.as_array());
    for value in listed.into_iter().flatten() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let mut algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            // A symmetric key has no place in a public set, and verifying with one would
            // let anyone holding the set sign.
            _ => continue,
        };
        // A key that names its algorithm verifies that one only.
        if let Some(named) = jwk.common.key_algorithm {
            match Algorithm::try_from(named) {
                Ok(alg) if algorithms.contains(&alg) => algorithms = vec![alg],
                _ => continue,
            }
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let key = Key { key, algorithms };
        match jwk.common.key_id {
            Some(kid) => {
                by_id.insert(kid, key);
            }
            None => unnamed.push(key),
        }
    }
    (by_id, unnamed)
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn scopes(claims: &Claims) -> Vec<String> {
    let mut scopes: Vec<String> = claims
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    match &claims.scp {
        Some(serde_json::Value::String(text)) => {
            scopes.extend(text.split_whitespace().map(str::to_string));
        }
        Some(serde_json::Value::Array(items)) => {
            scopes.extend(items.iter().filter_map(|s| s.as_str()).map(str::to_string));
        }
        _ => {}
    }
    scopes
}

/// `text` as a header or a log may show it: printable ASCII without quotes, 64 at most.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_loopback() {
        for good in [
            "https://auth.example.com",
            "http://127.0.0.1:9000",
            "http://localhost/x",
            "http://[::1]:1",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://auth.example.com",
            "ftp://x",
            "not a url",
            "https://a.example/?x=1",
            "https://a.example/#f",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let mut options =
            OAuthOptions::new("https://auth.example.com", "https://mcp.example.com/mcp");
        assert!(options.check().is_ok());
        options.required_scopes = vec!["a\"b".into()];
        assert!(matches!(
            options.check(),
            Err(HttpError::OAuth {
                flag: "--oauth-scope",
                ..
            })
        ));
    }

    #[test]
    fn the_metadata_is_found_where_rfc_9728_puts_it() {
        let options = OAuthOptions::new("https://auth.example.com", "https://mcp.example.com/mcp");
        assert_eq!(
            options.metadata_url(false),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            options.metadata_url(true),
            "https://mcp.example.com/.well-known/oauth-protected-resource/sse"
        );
        let documents = options.metadata_documents();
        let paths: Vec<&str> = documents.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp",
                "/.well-known/oauth-protected-resource/sse"
            ]
        );
        assert_eq!(documents[2].1["resource"], "https://mcp.example.com/sse");
        let document = &documents[1].1;
        assert_eq!(document["resource"], "https://mcp.example.com/mcp");
        assert_eq!(
            document["authorization_servers"][0],
            "https://auth.example.com"
        );
        assert!(document.get("scopes_supported").is_none());
    }

    #[test]
    fn only_signing_keys_of_known_types_are_kept() {
        let set = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "unknown", "kid": "u"},
            "not even an object"
        ]});
        let (by_id, unnamed) = usable_keys(&set);
        assert_eq!(by_id.keys().collect::<Vec<_>>(), ["r1"]);
        assert!(unnamed.is_empty());
        assert!(by_id["r1"].algorithms.contains(&Algorithm::RS256));
    }

    #[test]
    fn scopes_are_read_from_scope_and_scp() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "exp": 1, "scope": "a b", "scp": ["c"]
        }))
        .unwrap();
        assert_eq!(scopes(&claims), ["a", "b", "c"]);
        assert_eq!(printable("k\"i\\d\n1"), "kid1");
    }
}
