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

/// Copies the child's stdout line by line, each through [`super::wire::admit`], until
/// either side closes. A line past `max_bytes` is never held whole: it is dropped as it
/// comes, and in its place goes an error answering the same request (rmcp would drop it
/// unanswered, and the call would wait for its timeout).
async fn relay(upstream: String, stdout: ChildStdout, mut out: DuplexStream, max_bytes: usize) {
    let mut stdout = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut dropping: Option<super::wire::Dropping> = None;
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
                let mut started = super::wire::Dropping::default();
                started.take(&std::mem::take(&mut line));
                started.take(chunk);
                dropping = Some(started);
            }
            None => line.extend_from_slice(chunk),
        }
        stdout.consume(taken);
        if ends_line {
            let message = match dropping.take() {
                Some(dropped) => super::wire::too_large(&upstream, &dropped, max_bytes),
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
