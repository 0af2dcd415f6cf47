//! The HTTP front door against hostile clients, through the real binary: origins and hosts
//! that only look like loopback, clients that trickle their headers (slowloris), and more
//! connections than the server allows. Nothing here races a clock against work: a slow
//! client is one that never finishes, so only the header timeout can end it.

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::http::{HttpServer, initialize_body, post_mcp};

/// The status a POST of `initialize` gets with `header: value`.
async fn status_with(server: &HttpServer, header: &str, value: &str) -> u16 {
    post_mcp(server, initialize_body().to_string())
        .header(header, value)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn look_alike_origins_and_hosts_are_refused() {
    let server = HttpServer::start(&[]);
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        status_with(&server, "Origin", &format!("http://127.0.0.1:{port}")).await,
        200
    );
    for origin in [
        format!("http://127.0.0.1:{port}.evil.example"),
        format!("http://localhost:{port}.evil.example"),
        format!("http://user@127.0.0.1:{port}"),
        "http://127.0.0.1.evil.example".to_string(),
    ] {
        assert_eq!(
            status_with(&server, "Origin", &origin).await,
            403,
            "{origin}"
        );
    }
    for host in [
        format!("user@127.0.0.1:{port}"),
        format!("127.0.0.1:{port}.evil.example"),
        "user:secret@localhost".to_string(),
    ] {
        assert_eq!(status_with(&server, "Host", &host).await, 403, "{host}");
    }
    // The health probe too: it needs no token, but answers only to the names every
    // endpoint answers to.
    let health = |host: &str| {
        reqwest::Client::new()
            .get(server.url("/healthz"))
            .header("Host", host)
            .send()
    };
    assert_eq!(
        health(&format!("127.0.0.1:{port}")).await.unwrap().status(),
        200
    );
    assert_eq!(health("rebound.evil.example").await.unwrap().status(), 403);
}

/// Reads until the server closes the connection (or `limit` passes): whether it closed.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 512];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // A 408 or similar before the close is fine too; the close is what counts.
            Ok(_) => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Keep trickling: a byte now and then, as a slowloris client does.
                if stream.write_all(b"X").is_err() {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected() {
    let server = HttpServer::start(&["--header-timeout-secs", "1"]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    // It never ends its headers: only the header timeout can close it. The bound is
    // generous; a server without the timeout keeps the connection for ever.
    assert!(
        closed_within(&mut stream, Duration::from_secs(30)),
        "a client sending a header byte at a time kept its connection"
    );
    // A client that opens a connection and sends nothing is closed too.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(30)));
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_free_one() {
    let server = HttpServer::start(&["--max-connections", "2", "--header-timeout-secs", "600"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // Both connections are the server's to hold: a third request is not served while
    // they stay open (waiting longer only makes this surer).
    let url = server.url("/healthz");
    let third = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a connection past the cap was served");
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
