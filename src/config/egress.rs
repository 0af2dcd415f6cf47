//! What `fetch` may reach (`codemode.egress`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `codemode.egress` section: `fetch` for programs, off unless a rule allows a URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressSettings {
    /// URLs programs may fetch, each with the headers the host adds to its requests.
    #[serde(default)]
    pub rules: Vec<EgressRule>,
    /// Largest response body one fetch may return, in KiB (default 1024).
    #[serde(
        rename = "maxResponseKiB",
        default = "EgressSettings::default_max_response_kib"
    )]
    pub max_response_kib: u64,
    /// Time one fetch may take, redirects included, in milliseconds (default 10,000).
    #[serde(default = "EgressSettings::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Redirects one fetch follows, each checked against the rules (default 5).
    #[serde(default = "EgressSettings::default_max_redirects")]
    pub max_redirects: u32,
}

impl EgressSettings {
    fn default_max_response_kib() -> u64 {
        1024
    }
    fn default_timeout_ms() -> u64 {
        10_000
    }
    fn default_max_redirects() -> u32 {
        5
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            max_response_kib: Self::default_max_response_kib(),
            timeout_ms: Self::default_timeout_ms(),
            max_redirects: Self::default_max_redirects(),
        }
    }
}

/// URLs `fetch` may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressRule {
    /// `scheme://host[:port][/path]`, where the host may start with `*.` and the path is
    /// a glob (`**` crosses `/`), e.g. `https://api.github.com/repos/**`.
    pub url: String,
    /// Headers the host adds to requests to these URLs, `${VAR}` expanded from the
    /// server's environment; programs never see their values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Lets these URLs reach loopback, private, link-local and metadata addresses, which
    /// are refused otherwise.
    #[serde(default)]
    pub allow_private: bool,
}
