//! What host and worker say to each other: length-prefixed JSON messages (a 4-byte
//! big-endian length, then that many bytes of JSON) over the worker's stdin and stdout.

use futures::StreamExt;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::lockdown::LockdownReport;
use crate::sandbox::{RunOutcome, RunRequest, ToolCall, ToolReply};

/// Largest message either side accepts: a hostile worker cannot make the host allocate
/// more. Program text, results and logs are capped far below it.
pub(super) const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Host to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToWorker {
    /// Run this program.
    Run(Box<RunRequest>),
    /// Make the next isolate ahead, for programs shaped like this one (its code unused).
    Prepare(Box<RunRequest>),
    /// The glue as the host compiled it (base64 bytecode of this same binary); the first
    /// message when the spec says one follows.
    Glue(String),
    /// The answer to the worker's call `id`.
    Reply { id: u64, reply: ToolReply },
    /// The run's clock stands still (`held`: the host waits for a person's answer to one
    /// of its calls) or runs on; the worker holds its own clock alike.
    Clock { held: bool },
}

/// Worker to host.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum FromWorker {
    /// Locked down, warmed up and waiting for a program.
    Ready(LockdownReport),
    /// The program called a tool; the host answers with [`ToWorker::Reply`].
    Call { id: u64, call: ToolCall },
    /// The program called `fetch` (the glue's request JSON); answered the same way.
    Fetch { id: u64, request: String },
    /// A call (or, with `fetch: true`, a fetch request) the program made but the worker had
    /// not sent when the program ended: recorded by the host, never performed.
    Unsent { call: ToolCall, fetch: bool },
    /// The program's outcome.
    Done(Box<RunOutcome>),
}

/// Why a message could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProtocolError {
    /// The other side closed the pipe.
    #[error("the pipe closed")]
    Closed,
    /// Reading or writing failed.
    #[error("pipe i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// A length past [`MAX_MESSAGE_BYTES`].
    #[error("a message of {0} bytes, more than the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not a message of this protocol.
    #[error("a malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

pub(super) async fn write<W, M>(writer: &mut W, message: &M) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let json = serde_json::to_vec(message)?;
    if json.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(json.len()));
    }
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// The reading side: whole frames, cancel-safe (a `select!` may drop a pending read
/// without losing bytes).
pub(super) type Frames<R> = FramedRead<R, LengthDelimitedCodec>;

pub(super) fn frames<R: AsyncRead>(reader: R) -> Frames<R> {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_MESSAGE_BYTES)
        .new_read(reader)
}

/// The next message, or `Closed` at the end of the pipe.
pub(super) async fn read<R, M>(frames: &mut Frames<R>) -> Result<M, ProtocolError>
where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    match frames.next().await {
        None => Err(ProtocolError::Closed),
        Some(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
            Err(ProtocolError::TooLarge(MAX_MESSAGE_BYTES + 1))
        }
        Some(Err(err)) => Err(err.into()),
        Some(Ok(frame)) => Ok(serde_json::from_slice(&frame)?),
    }
}
