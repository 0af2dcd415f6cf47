//! Who is asking, from a request's bearer token: a token of the token file ([`tokens`]),
//! or an access token of the OAuth authorization server the server trusts ([`oauth`]).
//! Either gives the request its [`Principal`]; what the principal may reach is the
//! guard's to decide.

mod oauth;
mod tokens;

pub use oauth::{AccessTokenVerifier, OAuthOptions};
pub use tokens::new_token;

pub(super) use oauth::METADATA_PATH;

use std::sync::Arc;

use crate::server::{Principal, principal::Voucher};

use super::HttpError;

/// The ways in: the token file, an OAuth issuer, or both.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    tokens: Option<tokens::Tokens>,
    oauth: Option<Arc<oauth::Verifier>>,
}

/// Why a request's credentials get it nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rejection {
    /// No bearer token.
    Missing,
    /// A token that is not good, and why (said to the client: it needs another token).
    Invalid(String),
    /// A good token without the scopes the server requires.
    InsufficientScope,
    /// No token can be checked now (the issuer's keys cannot be had).
    Unavailable(String),
}

impl Identity {
    /// The ways in that `tokens` (the token file's text) and `oauth` give; `None` when
    /// neither does, and every request passes, anonymous.
    pub(super) fn new(
        tokens: Option<&str>,
        oauth: Option<&OAuthOptions>,
    ) -> Result<Option<Self>, HttpError> {
        let tokens = tokens.map(tokens::Tokens::parse).transpose()?;
        let oauth = oauth
            .cloned()
            .map(oauth::Verifier::new)
            .transpose()?
            .map(Arc::new);
        Ok((tokens.is_some() || oauth.is_some()).then_some(Self { tokens, oauth }))
    }

    /// Fetches the issuer's keys in the background, so that a wrong issuer is in the log
    /// at start and the first request does not wait for them.
    pub(super) fn prefetch(&self) {
        if let Some(oauth) = self.oauth.clone() {
            tokio::spawn(async move { oauth.prefetch().await });
        }
    }

    /// How many tokens the token file holds.
    pub(super) fn token_count(&self) -> usize {
        self.tokens.as_ref().map_or(0, tokens::Tokens::len)
    }

    /// The OAuth issuer's options, when tokens of one are taken.
    pub(super) fn oauth(&self) -> Option<&OAuthOptions> {
        self.oauth.as_deref().map(oauth::Verifier::options)
    }

    /// The principal of `bearer`: a token of the file, else an access token of the issuer.
    pub(super) async fn principal(&self, bearer: &str) -> Result<Principal, Rejection> {
        if let Some(principal) = self.tokens.as_ref().and_then(|t| t.principal(bearer)) {
            return Ok(principal);
        }
        match &self.oauth {
            Some(oauth) => oauth.verify(bearer).await,
            None => Err(Rejection::Invalid(
                "the bearer token is not one of this server's".into(),
            )),
        }
    }

    /// Whether `principal` carries what the MCP endpoints require: the issuer's tokens
    /// need the required scopes; the token file's are admitted as the file says.
    pub(super) fn admits_to_mcp(&self, principal: &Principal) -> bool {
        match self.oauth() {
            Some(options) if principal.vouched_by() == Voucher::Issuer => options
                .required_scopes
                .iter()
                .all(|scope| principal.has_scope(scope)),
            _ => true,
        }
    }

    /// The `WWW-Authenticate` value of a refusal (RFC 6750 section 3, with RFC 9728's
    /// `resource_metadata` when an issuer's tokens are taken): what a client needs to get
    /// a token, and why the one it sent was refused.
    /// A refusal of a request to the legacy SSE endpoints (`legacy_sse`) names their own
    /// metadata.
    pub(super) fn challenge(&self, rejection: &Rejection, legacy_sse: bool) -> String {
        let mut parts = vec!["Bearer realm=\"codemode-mcp\"".to_string()];
        if let Some(options) = self.oauth() {
            parts.push(format!(
                "resource_metadata=\"{}\"",
                options.metadata_url(legacy_sse)
            ));
            if !options.required_scopes.is_empty() {
                parts.push(format!("scope=\"{}\"", options.required_scopes.join(" ")));
            }
        }
        match rejection {
            // RFC 6750: no error attribute when credentials are missing.
            Rejection::Missing | Rejection::Unavailable(_) => {}
            Rejection::Invalid(why) => {
                parts.push("error=\"invalid_token\"".into());
                parts.push(format!("error_description=\"{}\"", header_safe(why)));
            }
            Rejection::InsufficientScope => {
                parts.push("error=\"insufficient_scope\"".into());
            }
        }
        parts.join(", ")
    }
}

/// `text` as a quoted header value may hold it.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_say_where_to_get_a_token_and_why_this_one_failed() {
        let mut options =
            OAuthOptions::new("https://auth.example.com", "https://mcp.example.com/mcp");
        options.required_scopes = vec!["mcp:execute".into()];
        let identity = Identity::new(None, Some(&options)).unwrap().unwrap();
        assert_eq!(
            identity.challenge(&Rejection::Missing, false),
            "Bearer realm=\"codemode-mcp\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:execute\""
        );
        assert!(
            identity
                .challenge(&Rejection::Missing, true)
                .contains("/.well-known/oauth-protected-resource/sse\""),
            "the legacy SSE endpoints name their own metadata"
        );
        let invalid = identity.challenge(&Rejection::Invalid("bad \"kid\"\n".into()), false);
        assert!(
            invalid.ends_with("error=\"invalid_token\", error_description=\"bad 'kid'?\""),
            "{invalid}"
        );
        assert!(
            identity
                .challenge(&Rejection::InsufficientScope, false)
                .ends_with("error=\"insufficient_scope\"")
        );
        // The token file alone: no metadata to point at.
        let file = Identity::new(Some("secret"), None).unwrap().unwrap();
        assert_eq!(
            file.challenge(&Rejection::Missing, false),
            "Bearer realm=\"codemode-mcp\""
        );
        assert!(Identity::new(None, None).unwrap().is_none());
    }

    #[tokio::test]
    async fn scopes_are_required_of_the_issuers_tokens_only() {
        let mut options = OAuthOptions::new("http://127.0.0.1:9", "http://127.0.0.1:1/mcp");
        options.required_scopes = vec!["mcp:execute".into()];
        let identity = Identity::new(Some("file-token"), Some(&options))
            .unwrap()
            .unwrap();
        let from_file = identity.principal("file-token").await.unwrap();
        assert!(identity.admits_to_mcp(&from_file));
        assert!(!identity.admits_to_mcp(&Principal::of_subject("agent", vec![])));
        assert!(
            identity.admits_to_mcp(&Principal::of_subject("agent", vec!["mcp:execute".into()]))
        );
        // Not a JWT: refused without asking the issuer.
        assert!(matches!(
            identity.principal("nope").await,
            Err(Rejection::Invalid(_))
        ));
    }
}
