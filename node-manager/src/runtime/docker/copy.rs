//! Tar streams into and out of a container through the engine's archive API. Both stream, so
//! archives of any size pass through a fixed amount of memory. Extraction by the engine is not
//! atomic: an upload cut short leaves what arrived so far, as `tar x` would. Errors are worded
//! for researchers here, because only here are the engine's status codes known; the engine's
//! own text can name host paths (the container's root on the host), which never leave.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::connect::{engine_message, status};
use super::DockerRuntime;
use crate::runtime::{Result, RuntimeError};

/// The engine answers an upload only once the whole tar arrived, which takes as long as the
/// client takes; the session's idle timeout, not this, bounds a stalled upload.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which way a copy goes, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Into the sliver: the path must be a directory.
    To,
    /// Out of the sliver: any file or directory.
    From,
}

/// An engine error about `path`, in words for the researcher.
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

fn copy_error(e: &DockerError, path: &str, way: Way) -> RuntimeError {
    tracing::debug!(path, error = %e, "copy failed");
    RuntimeError::Engine {
        op: format!("copy {path}"),
        message: describe(status(e), &engine_message(e), path, way),
    }
}

/// Whether the first tar header describes a directory (type flag '5' at offset 156).
pub fn tar_is_dir(header: &[u8]) -> Option<bool> {
    header.get(156).map(|t| *t == b'5')
}

impl DockerRuntime {
    /// Fails unless `dir` is a directory in the container (a symlink to one counts). Reads
    /// only the first tar header of the engine's archive of it, then drops the rest.
    async fn check_dir(&self, container: &str, dir: &str) -> Result<()> {
        // A trailing slash makes the engine follow a symlink to the directory it names.
        let probe = format!("{}/", dir.trim_end_matches('/'));
        let opts = DownloadFromContainerOptions { path: probe };
        let mut tar = self.docker.download_from_container(container, Some(opts));
        let mut head = Vec::with_capacity(512);
        while head.len() < 512 {
            match tar.next().await {
                Some(Ok(b)) => head.extend_from_slice(&b),
                Some(Err(e)) => return Err(copy_error(&e, dir, Way::To)),
                None => break,
            }
        }
        match tar_is_dir(&head) {
            Some(true) => Ok(()),
            _ => Err(RuntimeError::Engine {
                op: format!("copy {dir}"),
                message: format!("not a directory in the sliver: {dir}"),
            }),
        }
    }

    pub(super) async fn upload(
        &self,
        container_id: &str,
        dir: &str,
        tar: BoxStream<'static, Bytes>,
    ) -> Result<()> {
        self.check_dir(container_id, dir).await?;
        let opts = UploadToContainerOptions {
            path: dir.to_string(),
            ..Default::default()
        };
        self.docker
            .clone()
            .with_timeout(UPLOAD_TIMEOUT)
            .upload_to_container(container_id, Some(opts), bollard::body_stream(tar))
            .await
            .map_err(|e| copy_error(&e, dir, Way::To))
    }

    pub(super) fn download(
        &self,
        container_id: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes>> {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let path = path.to_string();
        self.docker
            .download_from_container(container_id, Some(opts))
            .map(move |r| r.map_err(|e| copy_error(&e, &path, Way::From)))
            .boxed()
    }
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

/// Arbitrary bytes as the first tar header of a copy's target: `tar_is_dir` never panics,
/// reads the type flag only where there is one, and agrees with the tar crate on real headers.
#[cfg(test)]
mod prop_tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn arbitrary_bytes_never_panic(head in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let got = tar_is_dir(&head);
            prop_assert_eq!(got.is_some(), head.len() > 156);
            if head.len() >= 512 {
                let h = tar::Header::from_byte_slice(&head[..512]);
                prop_assert_eq!(got, Some(h.entry_type() == tar::EntryType::Directory));
            }
        }

        #[test]
        fn real_headers_of_every_kind(flag in any::<u8>(), name in "[a-z./]{1,40}", size in 0u64..1 << 40) {
            let mut h = tar::Header::new_gnu();
            let _ = h.set_path(&name);
            h.set_size(size);
            h.set_entry_type(tar::EntryType::new(flag));
            h.set_cksum();
            prop_assert_eq!(tar_is_dir(h.as_bytes()), Some(flag == b'5'));
        }
    }
}
