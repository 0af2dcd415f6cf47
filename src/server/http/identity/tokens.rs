//! The tokens of `--auth-token-file` (or `CODEMODE_AUTH_TOKEN`), one per line, blank lines
//! and lines starting with `#` aside. A line is either
//!
//! - `NAME sha256:HASH [SCOPE ...]`: a named principal, of which the file keeps only the
//!   SHA-256 of the token (`codemode-mcp token NAME` makes a token and its line), or
//! - `TOKEN`: a token alone, as the file always took; its principal is named by a hash.
//!
//! The scope `codemode:operator` opens the console and `/metrics`, which show every
//! principal's executions. A file with no line granting it gives it to its first unnamed
//! token, as before names existed.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::server::{OPERATOR_SCOPE, Principal, http::HttpError, is_principal_name};

/// One token the server takes.
#[derive(Debug)]
struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// The bearer tokens a server takes. Each is a principal of its own: its clients share
/// state, tasks and approvals, and no other token's.
#[derive(Clone, Debug)]
pub(in crate::server::http) struct Tokens(Arc<Vec<Entry>>);

impl Tokens {
    /// The tokens in `text`; an error, naming the line, if one is malformed or there are
    /// none.
    pub(in crate::server::http) fn parse(text: &str) -> Result<Self, HttpError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut unnamed_first = None;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| HttpError::TokenFile {
                line: index + 1,
                message,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let entry = match words.as_slice() {
                [token] => {
                    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                    unnamed_first.get_or_insert(entries.len());
                    Entry {
                        hash,
                        principal: Principal::of_token_hash(&hash, Vec::new()),
                    }
                }
                [name, hash, scopes @ ..] if hash.starts_with("sha256:") => {
                    if !is_principal_name(name) {
                        return Err(bad(format!(
                            "{name:?} is not a principal name: use 1 to 64 letters, digits, `.`, `_`, `@` or `-`"
                        )));
                    }
                    let hash = parse_hash(&hash["sha256:".len()..]).ok_or_else(|| {
                        bad(format!(
                            "the hash of {name:?} is not 64 hex digits after `sha256:`; `codemode-mcp token {name}` prints a token and its line"
                        ))
                    })?;
                    if entries.iter().any(|e| e.principal.name() == *name) {
                        return Err(bad(format!(
                            "{name:?} is named twice; each principal has one line (give a second token a name of its own)"
                        )));
                    }
                    let scopes = scopes.iter().map(|s| s.to_string()).collect();
                    Entry {
                        hash,
                        principal: Principal::named(name, scopes),
                    }
                }
                _ => {
                    return Err(bad(
                        "expected a token alone, or `NAME sha256:HASH [SCOPE ...]`; `codemode-mcp token NAME` prints a token and its line".into(),
                    ));
                }
            };
            if entries.iter().any(|e| e.hash == entry.hash) {
                return Err(bad(
                    "this token is already on an earlier line: give each principal a token of its own".into(),
                ));
            }
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(HttpError::EmptyToken);
        }
        if !entries.iter().any(|e| e.principal.is_operator())
            && let Some(first) = unnamed_first
        {
            let hash = entries[first].hash;
            entries[first].principal = Principal::of_token_hash(&hash, vec![OPERATOR_SCOPE.into()]);
        }
        Ok(Self(Arc::new(entries)))
    }

    /// How many tokens there are.
    pub(in crate::server::http) fn len(&self) -> usize {
        self.0.len()
    }

    /// The principal holding `given`, if it is one of the tokens. Its hash is compared
    /// with every one, in constant time, so the answer's timing says nothing about which
    /// or how close.
    pub(in crate::server::http) fn principal(&self, given: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = None;
        for entry in self.0.iter() {
            if bool::from(hash.ct_eq(&entry.hash)) {
                found = Some(entry.principal.clone());
            }
        }
        found
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

/// A fresh token for `name` and the line of the token file that admits it.
pub fn new_token(name: &str, scopes: &[String]) -> Result<(String, String), String> {
    if !is_principal_name(name) {
        return Err(format!(
            "{name:?} is not a principal name: use 1 to 64 letters, digits, `.`, `_`, `@` or `-`"
        ));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(format!("scope {bad:?} is empty or holds a space"));
    }
    let token = format!(
        "cm_{}",
        crate::digest::hex(&crate::digest::random_bytes::<32>())
    );
    let mut line = format!(
        "{name} sha256:{}",
        crate::digest::sha256_hex(token.as_bytes())
    );
    for scope in scopes {
        line.push(' ');
        line.push_str(scope);
    }
    Ok((token, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, token: &str, scopes: &str) -> String {
        format!(
            "{name} sha256:{} {scopes}\n",
            crate::digest::sha256_hex(token.as_bytes())
        )
    }

    #[test]
    fn unnamed_tokens_one_per_line_the_first_the_operators() {
        let tokens = Tokens::parse("# operator\n  alpha  \n\nbeta\n").unwrap();
        assert_eq!(tokens.len(), 2);
        let (alpha, beta) = (
            tokens.principal("alpha").unwrap(),
            tokens.principal("beta").unwrap(),
        );
        assert!(alpha.is_operator() && !beta.is_operator());
        assert_eq!(alpha, Principal::of_token("alpha"));
        for wrong in ["gamma", "alph", ""] {
            assert!(tokens.principal(wrong).is_none());
        }
        assert!(matches!(
            Tokens::parse("\n# only a comment\n  \n"),
            Err(HttpError::EmptyToken)
        ));
    }

    #[test]
    fn named_tokens_are_kept_as_hashes_with_their_scopes() {
        let text = format!(
            "{}{}legacy\n",
            line("ops", "t-ops", "codemode:operator"),
            line("ci", "t-ci", "")
        );
        let tokens = Tokens::parse(&text).unwrap();
        let ops = tokens.principal("t-ops").unwrap();
        assert_eq!((ops.name(), ops.is_operator()), ("ops", true));
        let ci = tokens.principal("t-ci").unwrap();
        assert_eq!((ci.name(), ci.is_operator()), ("ci", false));
        // A named operator exists, so the unnamed token is not one.
        assert!(!tokens.principal("legacy").unwrap().is_operator());
        // The hash is not the token.
        assert!(
            tokens
                .principal(&crate::digest::sha256_hex(b"t-ci"))
                .is_none()
        );
    }

    #[test]
    fn a_bad_line_is_named_with_what_to_write() {
        let cases = [
            ("a b c\n", 1, "expected a token alone"),
            ("# x\nci sha256:abc\n", 2, "not 64 hex digits"),
            ("bad/name sha256:00\n", 1, "not a principal name"),
            (
                &*format!("{}{}", line("ci", "x", ""), line("ci", "y", "")),
                2,
                "named twice",
            ),
            (
                &*format!("{}{}", line("a", "same", ""), line("b", "same", "")),
                2,
                "already on an earlier line",
            ),
        ];
        for (text, at, says) in cases {
            match Tokens::parse(text) {
                Err(HttpError::TokenFile { line, message }) => {
                    assert_eq!(line, at, "{text}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_new_token_is_admitted_by_its_line() {
        let (token, line) = new_token("agent-7", &["codemode:operator".into()]).unwrap();
        let tokens = Tokens::parse(&line).unwrap();
        let principal = tokens.principal(&token).unwrap();
        assert_eq!(principal.name(), "agent-7");
        assert!(principal.is_operator());
        assert!(!line.contains(&token));
        assert!(new_token("no spaces", &[]).is_err());
    }
}
