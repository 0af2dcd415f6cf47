//! `fetch` for programs, answered in the host: the allow-list (`codemode.egress.rules`),
//! the SSRF guard (checked on the resolved addresses, and again on every redirect), size
//! and time caps, and the secret headers a rule adds, which programs never see: they are
//! added here, after the program's request left the isolate, and withheld from whatever
//! comes back.

mod address;
mod echo;
mod rules;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use reqwest::{
    Method, StatusCode,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::{Host, Url};

use crate::config::{EgressSettings, expand_vars};

use address::{PinnedResolver, forbidden};
use rules::UrlPattern;

/// A bad `codemode.egress` section.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// A rule that cannot be used, with the key that is wrong.
    #[error("codemode.egress.rules[{index}].{key}: {message}")]
    Rule {
        /// The rule's position.
        index: usize,
        /// `url` or `headers.<name>`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A cap out of range.
    #[error("codemode.egress.{key}: {message}")]
    Cap {
        /// The cap's key.
        key: &'static str,
        /// What is allowed.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("the HTTP client for fetch could not start: {0}")]
    Client(String),
}

/// The URLs one tenant overlay lets its principals fetch (`codemode.tenants[i].egress`):
/// checked beside the server's rules, at every hop, so it can only narrow them.
#[derive(Debug)]
pub struct EgressNarrowing {
    /// The overlay, as messages name it.
    label: String,
    patterns: Vec<(String, UrlPattern)>,
}

impl EgressNarrowing {
    /// Compiles `patterns` (each as a rule's `url`); the error is the index of the bad one
    /// and what is wrong with it.
    pub fn new(label: String, patterns: &[String]) -> Result<Self, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(index, written)| {
                UrlPattern::parse(written)
                    .map(|pattern| (written.clone(), pattern))
                    .map_err(|message| (index, format!("{written:?} {message}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { label, patterns })
    }

    /// The patterns, as written.
    pub fn patterns(&self) -> Vec<&str> {
        self.patterns.iter().map(|(w, _)| w.as_str()).collect()
    }

    /// Whether it lets anything through at all.
    pub fn allows_any(&self) -> bool {
        !self.patterns.is_empty()
    }

    fn check(&self, url: &Url) -> Result<(), String> {
        if self.patterns.iter().any(|(_, p)| p.matches(url)) {
            return Ok(());
        }
        Err(if self.patterns.is_empty() {
            format!(
                "this principal may fetch nothing ({}.egress is [])",
                self.label
            )
        } else {
            format!(
                "{} is not among the URLs this principal may fetch ({}.egress allows: {})",
                shown(url),
                self.label,
                self.patterns().join(", ")
            )
        })
    }
}

/// A program's request, as the `fetch` glue sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchRequest {
    /// The absolute URL.
    pub url: String,
    /// `GET`, `POST`, ...
    #[serde(default = "FetchRequest::default_method")]
    pub method: String,
    /// Header pairs in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body: text, or base64 when `body_base64`.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64.
    #[serde(default)]
    pub body_base64: bool,
    /// The program's line that called `fetch`, when the glue could tell.
    #[serde(default)]
    pub site: Option<crate::transpile::Position>,
}

impl FetchRequest {
    fn default_method() -> String {
        "GET".into()
    }

    /// `METHOD scheme://host/path` without the query (which may carry tokens), for the
    /// audit log and the call list.
    pub fn target(&self) -> String {
        let shown = match Url::parse(&self.url) {
            Ok(mut url) => {
                url.set_query(None);
                url.set_fragment(None);
                let _ = url.set_password(None);
                let _ = url.set_username("");
                url.to_string()
            }
            Err(_) => self.url.chars().take(200).collect(),
        };
        format!("{} {shown}", self.method.to_ascii_uppercase())
    }
}

/// What the program's `Response` is built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchResponse {
    /// The final URL, after redirects.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub status_text: String,
    /// Response headers, secrets withheld.
    pub headers: Vec<(String, String)>,
    /// The body: text, or base64 when `body_base64` (not UTF-8).
    pub body: String,
    /// Whether `body` is base64.
    pub body_base64: bool,
    /// Whether a redirect was followed.
    pub redirected: bool,
}

/// Why a fetch produced no response; the program gets a `TypeError` with this message.
#[derive(Debug, Clone)]
pub struct FetchFailure {
    /// Written for the model.
    pub message: String,
    /// The egress policy refused it (rather than the network failing).
    pub refused: bool,
}

impl FetchFailure {
    fn refused(message: String) -> Self {
        Self {
            message,
            refused: true,
        }
    }

    fn failed(message: String) -> Self {
        Self {
            message,
            refused: false,
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
struct Rule {
    written: String,
    pattern: UrlPattern,
    headers: Vec<(HeaderName, HeaderValue)>,
    allow_private: bool,
}

/// The host side of `fetch`.
#[derive(Debug)]
pub struct Egress {
    rules: Vec<Rule>,
    client: reqwest::Client,
    resolver: Arc<PinnedResolver>,
    /// Values of the rules' headers (and their tokens), in every form [`echo`] looks
    /// for, withheld from responses.
    secrets: Vec<Vec<u8>>,
    max_response_bytes: usize,
    timeout: Duration,
    max_redirects: u32,
}

/// Request headers a program may not set: the host decides them.
const HOST_HEADERS: &[HeaderName] = &[
    header::HOST,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

impl Egress {
    /// Compiles `settings`; `None` when no rule allows anything (programs get no `fetch`).
    /// Header values are expanded with `env` (`${VAR}`).
    pub fn new(
        settings: &EgressSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, EgressError> {
        if settings.rules.is_empty() {
            return Ok(None);
        }
        if !(1..=1_048_576).contains(&settings.max_response_kib) {
            return Err(EgressError::Cap {
                key: "maxResponseKiB",
                message: format!(
                    "{} is out of range: allowed 1 to 1048576",
                    settings.max_response_kib
                ),
            });
        }
        if !(100..=600_000).contains(&settings.timeout_ms) {
            return Err(EgressError::Cap {
                key: "timeoutMs",
                message: format!(
                    "{} is out of range: allowed 100 to 600000",
                    settings.timeout_ms
                ),
            });
        }
        if settings.max_redirects > 20 {
            return Err(EgressError::Cap {
                key: "maxRedirects",
                message: format!(
                    "{} is out of range: allowed 0 to 20",
                    settings.max_redirects
                ),
            });
        }
        let mut rules = Vec::new();
        let mut secrets = Vec::new();
        for (index, rule) in settings.rules.iter().enumerate() {
            let pattern = UrlPattern::parse(&rule.url).map_err(|message| EgressError::Rule {
                index,
                key: "url".into(),
                message: format!("{:?} {message}", rule.url),
            })?;
            let mut headers = Vec::new();
            for (name, value) in &rule.headers {
                let bad = |message: String| EgressError::Rule {
                    index,
                    key: format!("headers.{name}"),
                    message,
                };
                let header_name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| bad("is not a valid header name".into()))?;
                let expanded = expand_vars(value, env).map_err(bad)?;
                let mut header_value = HeaderValue::from_str(&expanded)
                    .map_err(|_| bad("is not a valid header value once expanded".into()))?;
                header_value.set_sensitive(true);
                secrets.push(expanded.as_bytes().to_vec());
                if let Some((_, token)) = expanded.rsplit_once(char::is_whitespace)
                    && token.len() >= 8
                {
                    secrets.push(token.as_bytes().to_vec());
                }
                headers.push((header_name, header_value));
            }
            rules.push(Rule {
                written: rule.url.clone(),
                pattern,
                headers,
                allow_private: rule.allow_private,
            });
        }
        secrets.retain(|s| s.len() >= 4);
        let mut secrets: Vec<Vec<u8>> = secrets.iter().flat_map(|s| echo::forms(s)).collect();
        // Longest first, so a token inside a longer value is not cut out of it first.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let resolver = Arc::new(PinnedResolver::default());
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver.clone())
            .connect_timeout(timeout)
            .user_agent(concat!("codemode-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        Ok(Some(Self {
            rules,
            client,
            resolver,
            secrets,
            max_response_bytes: usize::try_from(settings.max_response_kib << 10)
                .unwrap_or(usize::MAX),
            timeout,
            max_redirects: settings.max_redirects,
        }))
    }

    /// The rule patterns, as written.
    pub fn allowed(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.written.as_str()).collect()
    }

    /// Whether the allow-list lets programs fetch `url` (addresses are checked only when
    /// the request is made); the message says why not.
    pub fn check(&self, url: &str) -> Result<(), String> {
        self.check_within(url, &[])
    }

    /// [`Self::check`] for a principal whose overlays narrow the rules by `within`.
    pub fn check_within(&self, url: &str, within: &[Arc<EgressNarrowing>]) -> Result<(), String> {
        let parsed = parse_url(url)?;
        self.rule_for(&parsed, within).map(|_| ())
    }

    fn rule_for(&self, url: &Url, within: &[Arc<EgressNarrowing>]) -> Result<&Rule, String> {
        for narrowing in within {
            narrowing.check(url)?;
        }
        self.rules
            .iter()
            .find(|rule| rule.pattern.matches(url))
            .ok_or_else(|| {
                // A principal an overlay narrows is shown its own list, not the server's.
                if within.is_empty() {
                    format!(
                        "{} is not in the egress allow-list (codemode.egress.rules), which allows: {}",
                        shown(url),
                        self.allowed().join(", ")
                    )
                } else {
                    format!(
                        "{} is not in the server's egress allow-list (codemode.egress.rules), which every fetch must match besides this principal's own",
                        shown(url)
                    )
                }
            })
    }

    /// Makes the request: each hop checked against the rules and the address guard,
    /// the rule's headers added, the response capped and its secrets withheld.
    /// `within`: the overlays of the principal whose program asks, checked at every hop.
    pub async fn fetch(
        &self,
        request: FetchRequest,
        within: &[Arc<EgressNarrowing>],
    ) -> Result<FetchResponse, FetchFailure> {
        let deadline = Instant::now() + self.timeout;
        let mut method = Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                FetchFailure::refused(format!("fetch: {:?} is not an HTTP method", request.method))
            })?;
        if method == Method::CONNECT || method == Method::TRACE {
            return Err(FetchFailure::refused(format!(
                "fetch: the method {method} is not allowed"
            )));
        }
        let mut url = parse_url(&request.url).map_err(FetchFailure::refused)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                FetchFailure::refused(format!("fetch: {name:?} is not a valid header name"))
            })?;
            if HOST_HEADERS.contains(&name) {
                continue;
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                FetchFailure::refused(format!(
                    "fetch: the value of the header {name} is not valid"
                ))
            })?;
            headers.append(name, value);
        }
        let mut body = match (&request.body, request.body_base64) {
            (None, _) => None,
            (Some(text), false) => Some(text.clone().into_bytes()),
            (Some(text), true) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| FetchFailure::refused("fetch: the body is not valid".into()))?,
            ),
        };
        let mut redirected = false;
        for hop in 0..=self.max_redirects {
            let rule = self.rule_for(&url, within).map_err(|why| {
                FetchFailure::refused(if redirected {
                    format!("fetch was redirected to a URL it may not reach: {why}")
                } else {
                    format!("fetch refused: {why}")
                })
            })?;
            self.guard(&url, rule, deadline).await?;
            let mut outgoing = headers.clone();
            for (name, value) in &rule.headers {
                outgoing.insert(name.clone(), value.clone());
            }
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(outgoing);
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = tokio::time::timeout_at(deadline, builder.send())
                .await
                .map_err(|_| self.too_slow(&url))?
                .map_err(|e| {
                    FetchFailure::failed(format!("fetch {} failed: {}", shown(&url), cause(&e)))
                })?;
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if hop == self.max_redirects {
                    return Err(FetchFailure::failed(format!(
                        "fetch {} was redirected more than {} times (codemode.egress.maxRedirects)",
                        shown(&url),
                        self.max_redirects
                    )));
                }
                let next = url.join(&location).map_err(|_| {
                    FetchFailure::failed(format!(
                        "fetch {} was redirected to {location:?}, which is not a URL",
                        shown(&url)
                    ))
                })?;
                if status == StatusCode::SEE_OTHER
                    || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                        && method == Method::POST)
                {
                    if method != Method::HEAD {
                        method = Method::GET;
                    }
                    body = None;
                    headers.remove(header::CONTENT_TYPE);
                }
                if next.origin() != url.origin() {
                    // As browsers do: the program's credentials stay with their origin.
                    headers.remove(header::AUTHORIZATION);
                    headers.remove(header::COOKIE);
                }
                url = next;
                redirected = true;
                continue;
            }
            return self.read(response, &url, redirected, deadline).await;
        }
        Err(FetchFailure::failed("fetch: too many redirects".into()))
    }

    /// Resolves the host, refuses forbidden addresses unless the rule names them, and pins
    /// the checked addresses for the connection.
    async fn guard(&self, url: &Url, rule: &Rule, deadline: Instant) -> Result<(), FetchFailure> {
        let port = url.port_or_known_default().unwrap_or(80);
        let refuse = |host: &str, ip: IpAddr, kind: &str| {
            FetchFailure::refused(format!(
                "fetch refused: {} reaches {host}{}, {kind}; programs may not reach such addresses unless the egress rule that allows the URL has \"allowPrivate\": true",
                shown(url),
                if host == ip.to_string() {
                    String::new()
                } else {
                    format!(" (resolves to {ip})")
                },
            ))
        };
        match url.host() {
            Some(Host::Ipv4(ip)) => match forbidden(IpAddr::V4(ip)) {
                Some(kind) if !rule.allow_private => {
                    Err(refuse(&ip.to_string(), IpAddr::V4(ip), kind))
                }
                _ => Ok(()),
            },
            Some(Host::Ipv6(ip)) => match forbidden(IpAddr::V6(ip)) {
                Some(kind) if !rule.allow_private => {
                    Err(refuse(&ip.to_string(), IpAddr::V6(ip), kind))
                }
                _ => Ok(()),
            },
            Some(Host::Domain(name)) => {
                let looked_up =
                    tokio::time::timeout_at(deadline, tokio::net::lookup_host((name, port)))
                        .await
                        .map_err(|_| self.too_slow(url))?
                        .map_err(|e| {
                            FetchFailure::failed(format!(
                                "fetch {}: {name} could not be resolved ({e})",
                                shown(url)
                            ))
                        })?;
                let addresses: Vec<SocketAddr> = looked_up.collect();
                if addresses.is_empty() {
                    return Err(FetchFailure::failed(format!(
                        "fetch {}: {name} has no addresses",
                        shown(url)
                    )));
                }
                if !rule.allow_private {
                    for address in &addresses {
                        if let Some(kind) = forbidden(address.ip()) {
                            return Err(refuse(name, address.ip(), kind));
                        }
                    }
                }
                self.resolver.pin(name, addresses);
                Ok(())
            }
            None => Err(FetchFailure::refused(format!(
                "fetch: {} has no host",
                shown(url)
            ))),
        }
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
        url: &Url,
        redirected: bool,
        deadline: Instant,
    ) -> Result<FetchResponse, FetchFailure> {
        let status = response.status();
        if let Some(length) = response.content_length()
            && length > self.max_response_bytes as u64
        {
            return Err(self.too_large(url));
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| self.too_slow(url))?
                .map_err(|e| {
                    FetchFailure::failed(format!(
                        "fetch {}: reading the body failed: {}",
                        shown(url),
                        cause(&e)
                    ))
                })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(self.too_large(url));
            }
            body.extend_from_slice(&chunk);
        }
        let body = self.withhold(body);
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = self.withhold(value.as_bytes().to_vec());
                (
                    name.to_string(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();
        let (body, body_base64) = match String::from_utf8(body) {
            Ok(text) => (text, false),
            Err(bytes) => (
                base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes()),
                true,
            ),
        };
        Ok(FetchResponse {
            url: url.to_string(),
            status: status.as_u16(),
            status_text: status.canonical_reason().unwrap_or("").to_string(),
            headers,
            body,
            body_base64,
            redirected,
        })
    }

    /// Replaces every secret a rule adds, as sent or encoded, with a notice: an endpoint
    /// that echoes the request must not hand the program the credentials (see [`echo`]
    /// for what is and is not caught).
    fn withhold(&self, bytes: Vec<u8>) -> Vec<u8> {
        echo::withhold(&self.secrets, bytes, self.max_response_bytes)
    }

    fn too_large(&self, url: &Url) -> FetchFailure {
        FetchFailure::failed(format!(
            "fetch {}: the response is larger than {} KiB, the most one fetch may return (codemode.egress.maxResponseKiB); ask for less (a page, a range, fewer fields)",
            shown(url),
            self.max_response_bytes >> 10
        ))
    }

    fn too_slow(&self, url: &Url) -> FetchFailure {
        FetchFailure::failed(format!(
            "fetch {} took longer than {} ms, the most one fetch may take (codemode.egress.timeoutMs)",
            shown(url),
            self.timeout.as_millis()
        ))
    }
}

fn parse_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| {
        format!(
            "fetch: {:?} is not an absolute URL ({e}); write the whole URL, e.g. \"https://api.example.com/items\"",
            url.chars().take(200).collect::<String>()
        )
    })?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!(
            "fetch: the scheme {:?} is not fetchable: only http and https are",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("fetch: URLs with a user name or password are not allowed".into());
    }
    Ok(parsed)
}

/// The URL without its query, for messages.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// The innermost cause of a reqwest error, which names what actually failed.
fn cause(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    if error.is_connect() {
        format!("could not connect ({source})")
    } else {
        source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EgressRule;

    fn egress(rules: &[(&str, &[(&str, &str)])]) -> Egress {
        let settings = EgressSettings {
            rules: rules
                .iter()
                .map(|(url, headers)| EgressRule {
                    url: url.to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    allow_private: false,
                })
                .collect(),
            ..EgressSettings::default()
        };
        let env = |name: &str| (name == "TOKEN").then(|| "s3cr3t-token-value".to_string());
        Egress::new(&settings, &env).unwrap().unwrap()
    }

    #[test]
    fn no_rules_means_no_fetch() {
        assert!(
            Egress::new(&EgressSettings::default(), &|_| None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn check_names_the_allow_list() {
        let e = egress(&[("https://api.github.com/**", &[])]);
        assert!(e.check("https://api.github.com/repos/x").is_ok());
        let err = e.check("https://evil.net/x?token=1").unwrap_err();
        assert!(err.contains("https://evil.net/x is not in"), "{err}");
        assert!(err.contains("https://api.github.com/**"), "{err}");
        assert!(
            e.check("file:///etc/passwd")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(e.check("/relative").unwrap_err().contains("absolute"));
    }

    #[test]
    fn secrets_are_withheld_from_echoes() {
        let e = egress(&[("https://x.com", &[("Authorization", "Bearer ${TOKEN}")])]);
        let echoed = br#"{"headers":{"authorization":"Bearer s3cr3t-token-value"},"t":"s3cr3t-token-value"}"#;
        let out = String::from_utf8(e.withhold(echoed.to_vec())).unwrap();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("[withheld]"), "{out}");
    }

    #[test]
    fn bad_rules_name_their_key() {
        let settings = EgressSettings {
            rules: vec![EgressRule {
                url: "https://x.com".into(),
                headers: [("Authorization".to_string(), "${NOPE}".to_string())].into(),
                allow_private: false,
            }],
            ..EgressSettings::default()
        };
        let err = Egress::new(&settings, &|_| None).unwrap_err().to_string();
        assert!(
            err.starts_with("codemode.egress.rules[0].headers.Authorization"),
            "{err}"
        );
    }

    #[test]
    fn target_hides_the_query() {
        let request = FetchRequest {
            url: "https://x.com/a?key=secret".into(),
            method: "post".into(),
            headers: vec![],
            body: None,
            body_base64: false,
            site: None,
        };
        assert_eq!(request.target(), "POST https://x.com/a");
    }
}
