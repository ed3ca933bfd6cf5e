//! Reading an image out of the researcher's local Docker engine: `docker save` through the
//! engine API, streamed chunk by chunk into a temporary file (never whole in memory), at the
//! API version the engine speaks. The file is then read like any `--file` archive. This module
//! never writes to the engine.

use std::path::Path;

use anyhow::{Context as _, Result};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// The local engine (`DOCKER_HOST` or the default socket), at the engine's API version.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .context("cannot reach the local Docker engine (is it running? DOCKER_HOST?)")?;
    // bollard speaks a newer API than many engines accept; lower it to the engine's.
    docker
        .negotiate_version()
        .await
        .context("cannot reach the local Docker engine (is it running? DOCKER_HOST?)")
}

/// Exports `reference` (NAME:TAG) into a new temporary file in `dir`; `progress` gets the bytes
/// written so far. The file is removed when the handle is dropped.
pub async fn export(
    docker: &Docker,
    reference: &str,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<tempfile::NamedTempFile> {
    let image = docker.inspect_image(reference).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => anyhow::anyhow!(
            "the local Docker engine has no image {reference}: build it first, or push an \
             archive with --file"
        ),
        e => anyhow::Error::new(e).context(format!("cannot inspect {reference}")),
    })?;
    let tmp = tempfile::Builder::new()
        .prefix("slicectl-push-")
        .suffix(".tar")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    // By id: a tag moved by a concurrent build must not change what is exported.
    let id = image.id.unwrap_or_else(|| reference.to_string());
    let mut stream = docker.export_image(&id);
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("docker save {reference} failed"))?;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        written += chunk.len() as u64;
        progress(written);
    }
    file.flush().await?;
    Ok(tmp)
}
