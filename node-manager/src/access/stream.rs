//! The node's end of one `NodeService/Session` stream: opening it, sending output in bounded
//! chunks, reading what the service sends, and ending it with `SessionEnd`.
//!
//! Memory stays bounded: outgoing frames go through a small channel whose sender waits while
//! gRPC flow control holds the stream, so a slow client slows the source (exec output, the log,
//! the tar) instead of filling this process.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use slicebed_proto::v1::session_frame::Frame;
use slicebed_proto::v1::{SessionEnd, SessionFrame, TerminalSize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::idle::Idle;
use crate::connect::NodeClient;
use crate::error::{Error, Result};

/// Largest data frame the node sends.
pub const MAX_CHUNK: usize = 256 * 1024;
/// Frames buffered towards the service per session (at most 16 × 64 KiB).
const OUT_FRAMES: usize = 16;
/// How long the node waits for the service to close its side after `SessionEnd`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Splits `data` into pieces of at most [`MAX_CHUNK`] bytes (none for empty data).
pub fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.chunks(MAX_CHUNK)
}

/// The service closed or broke the stream: the client is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone(pub String);

/// Sends frames to the service.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<SessionFrame>,
    idle: Arc<Idle>,
}

impl Outbound {
    async fn frame(&self, frame: Frame) -> Result<(), Gone> {
        self.tx
            .send(SessionFrame { frame: Some(frame) })
            .await
            .map_err(|_| Gone("session stream closed".into()))
    }

    /// Sends stdout bytes (exec, logs, tar) in chunks; returns how many were sent.
    pub async fn stdout(&self, data: &[u8]) -> Result<u64, Gone> {
        self.data(data, false).await
    }

    /// Sends stderr bytes in chunks.
    pub async fn stderr(&self, data: &[u8]) -> Result<u64, Gone> {
        self.data(data, true).await
    }

    async fn data(&self, data: &[u8], stderr: bool) -> Result<u64, Gone> {
        for c in chunks(data) {
            let f = if stderr {
                Frame::Stderr(c.to_vec())
            } else {
                Frame::Stdout(c.to_vec())
            };
            self.frame(f).await?;
            self.idle.touch();
        }
        Ok(data.len() as u64)
    }
}

/// What the service sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Stdin or tar bytes.
    Data(Bytes),
    /// No more stdin or tar bytes.
    Eof,
    /// The client's terminal changed size.
    Resize(TerminalSize),
}

/// Receives frames from the service.
pub struct Inbound {
    rx: BoxStream<'static, Result<SessionFrame, tonic::Status>>,
    idle: Arc<Idle>,
}

impl Inbound {
    /// The next frame that means something to a node; `Err` once the stream ended or broke.
    pub async fn next(&mut self) -> Result<Incoming, Gone> {
        loop {
            let frame = match self.rx.next().await {
                Some(Ok(f)) => f.frame,
                None => return Err(Gone("the service closed the session".into())),
                Some(Err(s)) => return Err(Gone(format!("session stream broke: {}", s.message()))),
            };
            match frame {
                Some(Frame::Stdin(b)) => {
                    self.idle.touch();
                    return Ok(Incoming::Data(Bytes::from(b)));
                }
                Some(Frame::StdinEof(_)) => return Ok(Incoming::Eof),
                Some(Frame::Resize(s)) => return Ok(Incoming::Resize(s)),
                other => tracing::debug!(frame = ?other, "ignoring a frame not meant for a node"),
            }
        }
    }

    /// Waits until the stream ends, ignoring frames: the client went away.
    pub async fn closed(&mut self) -> Gone {
        loop {
            if let Err(g) = self.next().await {
                return g;
            }
        }
    }
}

/// One open session stream.
pub struct Session {
    /// Towards the service.
    pub out: Outbound,
    /// From the service.
    pub inbound: Inbound,
    /// The idle clock both directions touch.
    pub idle: Arc<Idle>,
}

/// Opens `NodeService/Session` (the client carries the node credential); the first frame names
/// the session.
pub async fn open(mut client: NodeClient, session_id: &str, idle: Idle) -> Result<Session> {
    let (tx, rx) = mpsc::channel(OUT_FRAMES);
    let first = SessionFrame {
        frame: Some(Frame::SessionId(session_id.to_string())),
    };
    tx.send(first).await.map_err(|_| closed())?;
    let req = tonic::Request::new(ReceiverStream::new(rx));
    let inbound = client
        .session(req)
        .await
        .map_err(|s| Error::from_status("session", s))?
        .into_inner();
    Ok(Session::new(tx, inbound.boxed(), idle))
}

/// The service's end of an in-process session (see [`Session::local`]).
pub struct Peer {
    /// Frames to the node.
    pub to_node: mpsc::Sender<Result<SessionFrame, tonic::Status>>,
    /// Frames from the node.
    pub from_node: mpsc::Receiver<SessionFrame>,
}

fn closed() -> Error {
    Error::Protocol("session stream closed before it opened".into())
}

impl Session {
    fn new(
        tx: mpsc::Sender<SessionFrame>,
        rx: BoxStream<'static, Result<SessionFrame, tonic::Status>>,
        idle: Idle,
    ) -> Self {
        let idle = Arc::new(idle);
        Session {
            out: Outbound {
                tx,
                idle: idle.clone(),
            },
            inbound: Inbound {
                rx,
                idle: idle.clone(),
            },
            idle,
        }
    }

    /// A session over in-process channels instead of gRPC, for tests and tools; the first
    /// frame (the session id) is not sent.
    pub fn local(idle: Idle) -> (Session, Peer) {
        let (tx, from_node) = mpsc::channel(OUT_FRAMES);
        let (to_node, rx) = mpsc::channel(OUT_FRAMES);
        let s = Session::new(tx, ReceiverStream::new(rx).boxed(), idle);
        (s, Peer { to_node, from_node })
    }

    /// Sends the last frame, half-closes, and lets the service close its side, so the end frame
    /// is delivered rather than cut off by a reset.
    pub async fn finish(self, end: SessionEnd) {
        let Session {
            out, mut inbound, ..
        } = self;
        if out.frame(Frame::End(end)).await.is_err() {
            return;
        }
        drop(out);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, inbound.closed()).await;
    }
}

/// A `SessionEnd` carrying an error for the researcher.
pub fn failed(error: impl Into<String>) -> SessionEnd {
    SessionEnd {
        error: error.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_at_most_64_kib_and_keep_every_byte() {
        let data: Vec<u8> = (0..(3 * MAX_CHUNK + 5)).map(|i| i as u8).collect();
        let parts: Vec<&[u8]> = chunks(&data).collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [MAX_CHUNK, MAX_CHUNK, MAX_CHUNK, 5]
        );
        assert_eq!(parts.concat(), data);
        assert_eq!(chunks(&[]).count(), 0);
        assert_eq!(chunks(&[1; MAX_CHUNK]).count(), 1);
    }
}
