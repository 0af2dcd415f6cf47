//! A small web server for the `fetch` tests, on 127.0.0.1: JSON, an echo of the request,
//! redirects, a large body, a slow answer, binary bytes. It keeps the `Authorization`
//! headers it received, so a test can see what the host sent that the program never saw.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::json;

#[derive(Clone, Default)]
pub struct Seen {
    pub authorizations: Arc<Mutex<Vec<String>>>,
    /// Requests `/echo` answered.
    pub echoes: Arc<AtomicUsize>,
}

pub struct Web {
    pub addr: SocketAddr,
    pub seen: Seen,
}

impl Web {
    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://localhost:PORT/path`: the same server through a name that resolves to
    /// loopback.
    pub fn named(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }
}

pub async fn start() -> Web {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/json",
            get(|| async { axum::Json(json!({ "items": [1, 2, 3] })) }),
        )
        .route("/echo", any(echo))
        .route("/echo-encoded", get(echo_encoded))
        .route("/redirect", get(redirect))
        .route("/big", get(|| async { "x".repeat(2 << 20) }))
        // Slower than any egress timeout a test sets, by far: a fetch of it can only end
        // by that timeout, however loaded the machine.
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        )
        .route(
            "/bytes",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    vec![0u8, 255, 1, 2],
                )
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Web { addr, seen }
}

async fn echo(
    State(seen): State<Seen>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.echoes.fetch_add(1, Ordering::SeqCst);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        seen.authorizations
            .lock()
            .unwrap()
            .push(auth.to_str().unwrap_or("").to_string());
    }
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    axum::Json(json!({
        "method": method.as_str(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
struct Encoding {
    #[serde(rename = "as")]
    encoding: String,
}

/// The request's `Authorization` header sent back encoded (`as`: `gzip`, `base64`, `hex`),
/// as an endpoint that echoes requests in its own way would.
async fn echo_encoded(Query(to): Query<Encoding>, headers: HeaderMap) -> Response {
    use base64::Engine as _;
    use std::io::Write as _;
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let body = match to.encoding.as_str() {
        "gzip" => {
            let mut gzip =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gzip.write_all(&auth).unwrap();
            gzip.finish().unwrap()
        }
        "base64" => base64::engine::general_purpose::STANDARD
            .encode(&auth)
            .into_bytes(),
        _ => auth
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    };
    body.into_response()
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

async fn redirect(Query(to): Query<To>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to)]).into_response()
}
