//! Copy sessions: tar streams into (`to`) and out of (`from`) a sliver. Both stream: the upload
//! body is fed from a bounded channel as frames arrive, the download is relayed chunk by chunk,
//! so archives of any size pass through a fixed amount of memory. Extraction by the engine is
//! not atomic: an upload cut short leaves what arrived so far, as `tar x` would.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bollard::Docker;
use bytes::Bytes;
use futures::StreamExt;
use slicebed_proto::v1::SessionEnd;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::stream::{failed, Gone, Inbound, Incoming, Session};
use super::{engine_message, target};

/// Chunks of tar bytes buffered towards the engine (frames are at most 1 MiB).
const UPLOAD_CHUNKS: usize = 8;
/// The engine answers an upload only once the whole tar arrived, which takes as long as the
/// client takes; the idle timeout, not this, bounds a stalled upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which way a copy goes, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Into the sliver: the path must be a directory.
    To,
    /// Out of the sliver: any file or directory.
    From,
}

/// An engine error about `path`, in words for the researcher. The engine's own text can name
/// host paths (the container's root on the host), which are not the researcher's business.
pub fn describe(status: Option<u16>, message: &str, path: &str, way: Way) -> String {
    match (status, way) {
        (Some(404), Way::From) => format!("no such file or directory in the sliver: {path}"),
        (Some(404), Way::To) => format!("no such directory in the sliver: {path}"),
        _ if message.contains("not a directory") => {
            format!("not a directory in the sliver: {path}")
        }
        _ if message.contains("/var/lib/docker") || message.is_empty() => {
            format!("cannot copy {path} in the sliver")
        }
        _ => format!("cannot copy {path} in the sliver: {message}"),
    }
}

fn describe_err(e: &DockerError, path: &str, way: Way) -> String {
    let status = match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    };
    tracing::debug!(path, error = %e, "copy failed");
    describe(status, &engine_message(e), path, way)
}

/// Whether the first tar header describes a directory (type flag '5' at offset 156).
pub fn tar_is_dir(header: &[u8]) -> Option<bool> {
    header.get(156).map(|t| *t == b'5')
}

/// Fails unless `dir` is a directory in the container (a symlink to one counts). Reads only
/// the first tar header of the engine's archive of it, then drops the rest.
async fn check_dir(docker: &Docker, container: &str, dir: &str) -> Result<(), String> {
    // A trailing slash makes the engine follow a symlink to the directory it names.
    let probe = format!("{}/", dir.trim_end_matches('/'));
    let opts = DownloadFromContainerOptions { path: probe };
    let mut tar = docker.download_from_container(container, Some(opts));
    let mut head = Vec::with_capacity(512);
    while head.len() < 512 {
        match tar.next().await {
            Some(Ok(b)) => head.extend_from_slice(&b),
            Some(Err(e)) => return Err(describe_err(&e, dir, Way::To)),
            None => break,
        }
    }
    match tar_is_dir(&head) {
        Some(true) => Ok(()),
        _ => Err(format!("not a directory in the sliver: {dir}")),
    }
}

/// Extracts the incoming tar stream into `dir`; ends with the bytes received.
pub async fn to(docker: &Docker, node: &str, sliver_id: &str, dir: &str, mut s: Session) {
    let t = match target::find(docker, node, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    if let Err(m) = check_dir(docker, &t.id, dir).await {
        return s.finish(failed(m)).await;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(UPLOAD_CHUNKS);
    let engine = docker.clone().with_timeout(UPLOAD_TIMEOUT);
    let opts = UploadToContainerOptions {
        path: dir.to_string(),
        ..Default::default()
    };
    let upload = engine.upload_to_container(
        &t.id,
        Some(opts),
        bollard::body_stream(ReceiverStream::new(rx)),
    );
    tokio::pin!(upload);
    let mut received = 0u64;
    // Until the end of the tar: the engine can only fail early (it refused the archive).
    let fed = tokio::select! {
        r = feed(&mut s.inbound, tx, &mut received) => r,
        r = &mut upload => return s.finish(upload_end(r, received, dir)).await,
        _ = s.idle.expired() => return s.finish(failed("idle timeout")).await,
    };
    if let Err(g) = fed {
        // Dropping the upload here aborts the request mid-body.
        tracing::info!(sliver = sliver_id, dir, received, reason = %g.0, "upload cut short");
        return;
    }
    let end = tokio::select! {
        r = &mut upload => upload_end(r, received, dir),
        _ = s.inbound.closed() => return,
        _ = s.idle.expired() => failed("idle timeout"),
    };
    s.finish(end).await;
}

fn upload_end(r: Result<(), DockerError>, received: u64, dir: &str) -> SessionEnd {
    match r {
        Ok(()) => SessionEnd {
            bytes: received,
            ..Default::default()
        },
        Err(e) => failed(describe_err(&e, dir, Way::To)),
    }
}

/// Moves tar bytes from the session to the upload body until the end of stdin; dropping `tx`
/// there ends the body.
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
                    // The engine stopped reading: the upload is ending with its verdict.
                    std::future::pending::<()>().await;
                }
            }
            Incoming::Eof => return Ok(()),
            Incoming::Resize(_) => {}
        }
    }
}

/// Sends `path` as a tar stream; ends with the bytes sent.
pub async fn from(docker: &Docker, node: &str, sliver_id: &str, path: &str, mut s: Session) {
    let t = match target::find(docker, node, sliver_id).await {
        Ok(t) => t,
        Err(m) => return s.finish(failed(m)).await,
    };
    let opts = DownloadFromContainerOptions {
        path: path.to_string(),
    };
    let tar = docker.download_from_container(&t.id, Some(opts));
    let out = &s.out;
    let relay = async {
        futures::pin_mut!(tar);
        let mut sent = 0u64;
        while let Some(item) = tar.next().await {
            match item {
                Ok(b) => sent += out.stdout(&b).await.map_err(|_| None)?,
                Err(e) => return Err(Some(describe_err(&e, path, Way::From))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_become_words_without_host_paths() {
        let m = "Could not find the file /nope in container 0669";
        assert_eq!(
            describe(Some(404), m, "/nope", Way::From),
            "no such file or directory in the sliver: /nope"
        );
        assert_eq!(
            describe(Some(404), m, "/nope", Way::To),
            "no such directory in the sliver: /nope"
        );
        let host = "lstat /var/lib/docker/overlay2/5cc6/merged/etc/passwd/.: not a directory";
        assert_eq!(
            describe(Some(500), host, "/etc/passwd", Way::To),
            "not a directory in the sliver: /etc/passwd"
        );
        let other = "open /var/lib/docker/overlay2/x/merged/ro: read-only file system";
        assert_eq!(
            describe(Some(500), other, "/ro", Way::To),
            "cannot copy /ro in the sliver"
        );
        assert_eq!(
            describe(Some(500), "unexpected EOF", "/d", Way::To),
            "cannot copy /d in the sliver: unexpected EOF"
        );
    }

    #[test]
    fn reads_the_type_of_the_first_tar_entry() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        assert_eq!(tar_is_dir(h.as_bytes()), Some(true));
        h.set_entry_type(tar::EntryType::Regular);
        assert_eq!(tar_is_dir(h.as_bytes()), Some(false));
        assert_eq!(tar_is_dir(&[0; 10]), None);
    }
}
