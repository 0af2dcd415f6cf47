//! The stdio transport: the upstream as a child process whose stdout is read through
//! [`super::wire::admit`] before rmcp parses it (rmcp's own child-process transport reads
//! the pipe itself). Shutdown is rmcp's: close stdin, wait, `SIGTERM`, wait, kill; a
//! transport dropped without closing kills the child.

use std::{process::Stdio, time::Duration};

use rmcp::{
    RoleClient,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream},
    process::{Child, ChildStderr, ChildStdout, Command},
};

/// How long the child has to exit after stdin closes, and again after `SIGTERM`.
const EXIT_WAIT: Duration = Duration::from_secs(3);
/// Bytes of the start and of the end of an over-long message kept to find its `id` (the
/// Python SDK writes it first, the TypeScript SDK last).
const ID_WINDOW: usize = 4 << 10;

/// A running upstream process, as an rmcp transport.
pub(super) struct ChildTransport {
    inner: AsyncRwTransport<RoleClient, DuplexStream, tokio::process::ChildStdin>,
    child: Child,
}

/// Starts `command` with piped stdio; its stderr is the caller's to read. A message past
/// `max_message_bytes` is dropped as it is read, and the request it answers gets an error.
pub(super) fn spawn(
    upstream: &str,
    mut command: Command,
    max_message_bytes: usize,
) -> std::io::Result<(ChildTransport, Option<ChildStderr>)> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let missing = |pipe| std::io::Error::other(format!("the child's {pipe} is not a pipe"));
    let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
    let stderr = child.stderr.take();
    // What rmcp reads is what the relay wrote: a pipe of its own, in memory.
    let (read, write) = tokio::io::duplex(64 << 10);
    tokio::spawn(relay(
        upstream.to_string(),
        stdout,
        write,
        max_message_bytes,
    ));
    Ok((
        ChildTransport {
            inner: AsyncRwTransport::new_client(read, stdin),
            child,
        },
        stderr,
    ))
}

/// A message past the cap, being dropped: its first and last bytes, for its `id`.
struct Dropping {
    head: Vec<u8>,
    tail: Vec<u8>,
    bytes: usize,
}

impl Dropping {
    fn take(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len();
        if self.head.len() < ID_WINDOW {
            let room = ID_WINDOW - self.head.len();
            self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        self.tail
            .extend_from_slice(&chunk[chunk.len().saturating_sub(ID_WINDOW)..]);
        if self.tail.len() > ID_WINDOW {
            self.tail.drain(..self.tail.len() - ID_WINDOW);
        }
    }
}

/// Copies the child's stdout line by line, each through [`super::wire::admit`], until
/// either side closes. A line past `max_bytes` is never held whole: it is dropped as it
/// comes, and in its place goes an error answering the same request (rmcp would drop it
/// unanswered, and the call would wait for its timeout).
async fn relay(upstream: String, stdout: ChildStdout, mut out: DuplexStream, max_bytes: usize) {
    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut dropping: Option<Dropping> = None;
    loop {
        let Ok(buffer) = stdout.fill_buf().await else {
            return;
        };
        if buffer.is_empty() {
            let _ = out.write_all(&line).await;
            return;
        }
        let (chunk, ends_line) = match buffer.iter().position(|b| *b == b'\n') {
            Some(i) => (&buffer[..i], true),
            None => (buffer, false),
        };
        let taken = chunk.len() + usize::from(ends_line);
        match &mut dropping {
            Some(dropping) => dropping.take(chunk),
            None if line.len() + chunk.len() > max_bytes => {
                let mut started = Dropping {
                    head: Vec::new(),
                    tail: Vec::new(),
                    bytes: 0,
                };
                started.take(&std::mem::take(&mut line));
                started.take(chunk);
                dropping = Some(started);
            }
            None => line.extend_from_slice(chunk),
        }
        stdout.consume(taken);
        if ends_line {
            let message = match dropping.take() {
                Some(dropped) => too_large(&upstream, &dropped, max_bytes),
                None => super::wire::admit(&upstream, &line).into_owned(),
            };
            line.clear();
            if !message.is_empty()
                && (out.write_all(&message).await.is_err() || out.write_all(b"\n").await.is_err())
            {
                return;
            }
        }
    }
}

/// The error that answers the request an over-long message answered; nothing if it
/// answered none that can be found (a notification).
fn too_large(upstream: &str, dropped: &Dropping, max_bytes: usize) -> Vec<u8> {
    // A request from the server (it names a method) shares ids with nothing of ours: an
    // error in its name would answer one of our own requests.
    let is_request = dropped
        .head
        .windows(b"\"method\"".len())
        .any(|w| w == b"\"method\"");
    let id = if is_request {
        None
    } else {
        response_id(&dropped.head, &dropped.tail)
    };
    let Some(id) = id else {
        tracing::warn!(
            upstream,
            bytes = dropped.bytes,
            "an upstream message past {} KiB was dropped (it answered no request)",
            max_bytes >> 10
        );
        return Vec::new();
    };
    tracing::warn!(
        upstream,
        bytes = dropped.bytes,
        "an upstream answer past {} KiB was dropped unread",
        max_bytes >> 10
    );
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": format!(
                "upstream result exceeds {} KiB (it sent {} bytes), the most one answer may be (codemode.upstream.maxResultKiB); it was dropped unread. Ask the tool for less (a page, a filter, fewer fields)",
                max_bytes >> 10,
                dropped.bytes
            ),
        },
    });
    serde_json::to_vec(&error).unwrap_or_default()
}

/// The `id` of a JSON-RPC response, from its first bytes (where it comes before the result)
/// or its last (where it follows it).
fn response_id(head: &[u8], tail: &[u8]) -> Option<serde_json::Value> {
    let find = |text: &[u8], from_end: bool| -> Option<usize> {
        let key = b"\"id\"";
        let mut found = text
            .windows(key.len())
            .enumerate()
            .filter(|(_, w)| *w == key);
        if from_end {
            found.next_back().map(|(i, _)| i + key.len())
        } else {
            found.next().map(|(i, _)| i + key.len())
        }
    };
    let value_after = |text: &[u8], at: usize| -> Option<serde_json::Value> {
        let rest = text.get(at..)?;
        let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let rest = rest[colon..].strip_prefix(b":")?;
        let value = serde_json::Deserializer::from_slice(rest)
            .into_iter::<serde_json::Value>()
            .next()?
            .ok()?;
        (value.is_number() || value.is_string()).then_some(value)
    };
    let before_payload = |text: &[u8], at: usize| {
        let payload = [&b"\"result\""[..], &b"\"error\""[..]]
            .iter()
            .filter_map(|key| text.windows(key.len()).position(|w| w == *key))
            .min();
        payload.is_none_or(|p| at < p)
    };
    if let Some(at) = find(head, false)
        && before_payload(head, at)
        && let Some(id) = value_after(head, at)
    {
        return Some(id);
    }
    find(tail, true).and_then(|at| value_after(tail, at))
}

impl Transport<RoleClient> for ChildTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.inner.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await?;
        if tokio::time::timeout(EXIT_WAIT, self.child.wait())
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: signals the child this transport started and has not yet reaped, so
            // the pid is still its own.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            if tokio::time::timeout(EXIT_WAIT, self.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        self.child.kill().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_found_before_or_after_the_payload() {
        assert_eq!(
            response_id(
                br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"text":"xx"#,
                b"xx\"}]}}"
            ),
            Some(serde_json::json!(7))
        );
        assert_eq!(
            response_id(
                br#"{"result":{"content":[{"text":"{\"id\":1"#,
                br#"xxx"}]},"jsonrpc":"2.0","id":"a-9"}"#
            ),
            Some(serde_json::json!("a-9"))
        );
        assert_eq!(
            response_id(b"{\"method\":\"x\",\"params\":{\"v\":\"", b"\"}}"),
            None
        );
    }
}
