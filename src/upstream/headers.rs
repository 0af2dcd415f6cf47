//! The `headers` of an upstream's config as HTTP headers, for both HTTP transports.

use std::collections::HashMap;

/// The config's headers, each checked as an HTTP header name and value.
pub(super) fn header_map(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HashMap<http::HeaderName, http::HeaderValue>, String> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = http::HeaderName::try_from(k.as_str())
                .map_err(|e| format!("header name \"{k}\": {e}"))?;
            let value = http::HeaderValue::try_from(v.as_str())
                .map_err(|e| format!("header \"{k}\" has an invalid value: {e}"))?;
            Ok((name, value))
        })
        .collect()
}
