//! What host and worker say to each other: length-prefixed JSON messages (a 4-byte
//! big-endian length, then that many bytes of JSON) over the worker's stdin and stdout.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    /// The answer to the worker's call `id`.
    Reply { id: u64, reply: ToolReply },
}

/// Worker to host.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum FromWorker {
    /// Locked down, warmed up and waiting for a program.
    Ready(LockdownReport),
    /// The program called a tool; the host answers with [`ToWorker::Reply`].
    Call { id: u64, call: ToolCall },
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

pub(super) async fn read<R, M>(reader: &mut R) -> Result<M, ProtocolError>
where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProtocolError::Closed);
        }
        Err(err) => return Err(err.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(length));
    }
    let mut json = vec![0u8; length];
    reader.read_exact(&mut json).await?;
    Ok(serde_json::from_slice(&json)?)
}
