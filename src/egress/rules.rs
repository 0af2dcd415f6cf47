//! The allow-list: `scheme://host[:port][/path]` patterns, matched on the parts of a
//! parsed URL rather than on its text, so `https://example.com*` cannot be tricked by
//! `https://example.com.attacker.net/`.

use globset::{GlobBuilder, GlobMatcher};
use url::Url;

/// One compiled `url` of an egress rule.
#[derive(Debug, Clone)]
pub(super) struct UrlPattern {
    scheme: String,
    /// `None`: any subdomain of `suffix`; else the exact host.
    host: HostPattern,
    port: Option<u16>,
    path: GlobMatcher,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: `a.example.com`, `a.b.example.com`, not `example.com` itself.
    Subdomains(String),
}

impl UrlPattern {
    /// Compiles a pattern, or says what is wrong with it.
    pub(super) fn parse(pattern: &str) -> Result<Self, String> {
        let (scheme, rest) = pattern.split_once("://").ok_or_else(|| {
            "must start with http:// or https://, e.g. \"https://api.github.com/**\"".to_string()
        })?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "the scheme {scheme:?} is not fetchable: use http or https"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/**"),
        };
        if authority.contains('@') {
            return Err("must not hold a user name or password: put credentials in \"headers\", which programs never see".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("the port {port} is out of range"))?;
                (host, Some(port))
            }
            _ => (authority, None),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err("has no host".into());
        }
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.contains('*') && !suffix.is_empty() => {
                HostPattern::Subdomains(suffix.to_string())
            }
            _ if host.contains('*') => {
                return Err(format!(
                    "the host {host:?} may only use a wildcard as its first label, as in \"*.example.com\""
                ));
            }
            _ => HostPattern::Exact(host.trim_start_matches('[').trim_end_matches(']').into()),
        };
        let path = GlobBuilder::new(path)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("the path {path:?} is not a glob: {}", e.kind()))?
            .compile_matcher();
        Ok(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    /// Whether `url` is one of the URLs this pattern names.
    pub(super) fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Exact(exact) => host == *exact,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
        };
        let port_ok = match self.port {
            Some(port) => url.port_or_known_default() == Some(port),
            None => url.port().is_none(),
        };
        host_ok && port_ok && self.path.is_match(url.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn host_and_path_are_matched_as_parts() {
        let p = UrlPattern::parse("https://api.github.com/repos/**").unwrap();
        assert!(p.matches(&url("https://api.github.com/repos/a/b?x=1")));
        assert!(!p.matches(&url("https://api.github.com/user")));
        assert!(!p.matches(&url("https://api.github.com.evil.net/repos/a")));
        assert!(!p.matches(&url("http://api.github.com/repos/a")));
        assert!(!p.matches(&url("https://api.github.com:444/repos/a")));
    }

    #[test]
    fn wildcard_host_is_subdomains_only() {
        let p = UrlPattern::parse("https://*.example.com").unwrap();
        assert!(p.matches(&url("https://a.example.com/x/y")));
        assert!(p.matches(&url("https://a.b.example.com/")));
        assert!(!p.matches(&url("https://example.com/")));
        assert!(!p.matches(&url("https://badexample.com/")));
    }

    #[test]
    fn ports_and_ip_literals() {
        let p = UrlPattern::parse("http://127.0.0.1:8080/api/*").unwrap();
        assert!(p.matches(&url("http://127.0.0.1:8080/api/x")));
        assert!(!p.matches(&url("http://127.0.0.1:8080/api/x/y")));
        assert!(!p.matches(&url("http://127.0.0.1/api/x")));
        let v6 = UrlPattern::parse("http://[::1]:9000").unwrap();
        assert!(v6.matches(&url("http://[::1]:9000/anything")));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, says) in [
            ("api.github.com", "http://"),
            ("ftp://x", "scheme"),
            ("https://a*b.com", "first label"),
            ("https://user:pw@x.com", "headers"),
            ("https://x.com:99999", "out of range"),
        ] {
            let err = UrlPattern::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
