//! The legacy HTTP+SSE client transport (protocol 2024-11-05), which rmcp no longer ships:
//! `GET` the SSE endpoint, whose first `endpoint` event names where to `POST` messages;
//! the server's messages arrive as `message` events on the same stream.

use std::{collections::BTreeMap, pin::Pin};

use futures::{Sink, Stream, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use sse_stream::SseStream;

/// Messages to the server.
pub(super) type Outgoing = Pin<Box<dyn Sink<ClientJsonRpcMessage, Error = reqwest::Error> + Send>>;
/// Messages from the server.
pub(super) type Incoming = Pin<Box<dyn Stream<Item = ServerJsonRpcMessage> + Send>>;

/// Opens the event stream and waits for the `endpoint` event.
pub(super) async fn connect(
    upstream: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<(Outgoing, Incoming), String> {
    let headers = super::headers::header_map(headers)?;
    let headers: reqwest::header::HeaderMap = headers.into_iter().collect();
    let client = reqwest::Client::new();
    let response = client
        .get(url)
        .headers(headers.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut events = SseStream::from_bytes_stream(super::wire::capped(
        upstream,
        response.bytes_stream(),
        max_bytes,
    ));
    let endpoint = loop {
        match events.next().await {
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                let path = event.data.unwrap_or_default();
                let base = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
                break base
                    .join(path.trim())
                    .map_err(|e| format!("endpoint event \"{path}\": {e}"))?;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("reading the event stream of {url}: {e}")),
            None => {
                return Err(format!(
                    "{url} closed its event stream before naming an endpoint"
                ));
            }
        }
    };
    let upstream = upstream.to_string();
    let incoming = events.filter_map(move |event| {
        let message = match event {
            Ok(event) if matches!(event.event.as_deref(), None | Some("message")) => {
                event.data.and_then(|data| {
                    let data = super::wire::admit_whole(&upstream, data.as_bytes(), max_bytes);
                    serde_json::from_slice::<ServerJsonRpcMessage>(&data).ok()
                })
            }
            _ => None,
        };
        std::future::ready(message)
    });
    let outgoing = futures::sink::unfold(
        (client, endpoint, headers),
        |(client, endpoint, headers), message: ClientJsonRpcMessage| async move {
            client
                .post(endpoint.clone())
                .headers(headers.clone())
                .json(&message)
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, reqwest::Error>((client, endpoint, headers))
        },
    );
    Ok((Box::pin(outgoing), Box::pin(incoming)))
}
