//! Copy sessions: tar streams into (`to`) and out of (`from`) a sliver. Both stream: the
//! backend's upload is fed from a bounded channel as frames arrive, the download is relayed
//! chunk by chunk, so archives of any size pass through a fixed amount of memory. The backend
//! words its errors for researchers (and never shows host paths).

use bytes::Bytes;
use futures::StreamExt;
use slicebed_proto::v1::SessionEnd;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::stream::{failed, Gone, Inbound, Incoming, Session};
use super::target;
use crate::runtime::{Result, Runtime, RuntimeError};

/// Chunks of tar bytes buffered towards the backend (frames are at most 1 MiB).
const UPLOAD_CHUNKS: usize = 8;

/// Extracts the incoming tar stream into `dir`; ends with the bytes received.
pub async fn to(rt: &impl Runtime, sliver_id: &str, dir: &str, mut s: Session) {
    let t = match target::find(rt, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(UPLOAD_CHUNKS);
    let upload = rt.copy_in(&t.container_id, dir, ReceiverStream::new(rx).boxed());
    tokio::pin!(upload);
    let mut received = 0u64;
    // Until the end of the tar: the backend can only fail early (it refused the directory or
    // the archive).
    let fed = tokio::select! {
        r = feed(&mut s.inbound, tx, &mut received) => r,
        r = &mut upload => return s.finish(upload_end(r, received)).await,
        _ = s.idle.expired() => return s.finish(failed("idle timeout")).await,
    };
    if let Err(g) = fed {
        // Dropping the upload here aborts it mid-body.
        tracing::info!(sliver = sliver_id, dir, received, reason = %g.0, "upload cut short");
        return;
    }
    let end = tokio::select! {
        r = &mut upload => upload_end(r, received),
        _ = s.inbound.closed() => return,
        _ = s.idle.expired() => failed("idle timeout"),
    };
    s.finish(end).await;
}

fn upload_end(r: Result<(), RuntimeError>, received: u64) -> SessionEnd {
    match r {
        Ok(()) => SessionEnd {
            bytes: received,
            ..Default::default()
        },
        Err(e) => failed(e.message()),
    }
}

/// Moves tar bytes from the session to the upload until the end of stdin; dropping `tx`
/// there ends the upload's input.
async fn feed(
    inbound: &mut Inbound,
    tx: mpsc::Sender<Bytes>,
    received: &mut u64,
) -> Result<(), Gone> {
    loop {
        match inbound.next().await? {
            Incoming::Data(b) => {
                *received += b.len() as u64;
                if tx.send(b).await.is_err() {
                    // The backend stopped reading: the upload is ending with its verdict.
                    std::future::pending::<()>().await;
                }
            }
            Incoming::Eof => return Ok(()),
            Incoming::Resize(_) => {}
        }
    }
}

/// Sends `path` as a tar stream; ends with the bytes sent.
pub async fn from(rt: &impl Runtime, sliver_id: &str, path: &str, mut s: Session) {
    let t = match target::find(rt, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    let mut tar = rt.copy_out(&t.container_id, path);
    let out = &s.out;
    let relay = async {
        let mut sent = 0u64;
        while let Some(item) = tar.next().await {
            match item {
                Ok(b) => sent += out.stdout(&b).await.map_err(|_| None)?,
                Err(e) => return Err(Some(e.message())),
            }
        }
        Ok(sent)
    };
    let end = tokio::select! {
        r = relay => match r {
            Ok(sent) => SessionEnd { bytes: sent, ..Default::default() },
            Err(Some(m)) => failed(m),
            Err(None) => return,
        },
        _ = s.inbound.closed() => return,
        _ = s.idle.expired() => failed("idle timeout"),
    };
    s.finish(end).await;
}
