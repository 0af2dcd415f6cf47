//! Who may call: the bearer tokens of `--auth-token-file`.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::HttpError;

/// The bearer tokens a server takes, one per line of the token file (blank lines and lines
/// starting with `#` aside). Each token is a principal of its own: its clients share state,
/// tasks and approvals, and no other token's. The first is the operator's, the only one
/// that opens the console and `/metrics`, which show every principal's executions.
#[derive(Clone)]
pub(super) struct Tokens(Arc<Vec<String>>);

impl Tokens {
    /// The tokens in `text`; an error if it holds none.
    pub(super) fn parse(text: &str) -> Result<Self, HttpError> {
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        if tokens.is_empty() {
            return Err(HttpError::EmptyToken);
        }
        Ok(Self(Arc::new(tokens)))
    }

    /// How many tokens there are.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The operator's token.
    pub(super) fn operator(&self) -> &str {
        &self.0[0]
    }

    /// Whether `given` is one of the tokens; every one is compared, in constant time, so
    /// the answer's timing says nothing about which or how close.
    pub(super) fn admits(&self, given: &str) -> bool {
        self.0.iter().fold(false, |found, token| {
            found | bool::from(given.as_bytes().ct_eq(token.as_bytes()))
        })
    }

    /// Whether `given` is the operator's token.
    pub(super) fn is_operator(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.operator().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_line_the_first_the_operators() {
        let tokens = Tokens::parse("# operator\n  alpha  \n\nbeta\n").unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.admits("alpha") && tokens.admits("beta"));
        assert!(!tokens.admits("gamma") && !tokens.admits("alph") && !tokens.admits(""));
        assert!(tokens.is_operator("alpha") && !tokens.is_operator("beta"));
        assert!(matches!(
            Tokens::parse("\n# only a comment\n  \n"),
            Err(HttpError::EmptyToken)
        ));
    }
}
