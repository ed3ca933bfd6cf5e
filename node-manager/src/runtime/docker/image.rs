//! Images on the engine: presence, import of a root file system, load of an archive the
//! node fetched and verified itself (never a pull: no registry is reachable from a testbed
//! node), and removal of a replaced or evicted image.

use bollard::query_parameters::{CreateImageOptions, ImportImageOptions, RemoveImageOptions};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::TryStreamExt;

use super::connect::{engine, is_not_found};
use super::DockerRuntime;
use crate::runtime::{ImageImport, Result};

/// Splits `repo:tag` (a registry port is not a tag: `host:5000/x` has no tag).
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// The image's default command and environment as the engine's import "changes".
fn changes(image: &ImageImport) -> Vec<String> {
    let mut out = Vec::new();
    if !image.command.is_empty() {
        let cmd = serde_json::to_string(&image.command).unwrap_or_default();
        out.push(format!("CMD {cmd}"));
    }
    out.extend(image.env.iter().map(|(k, v)| format!("ENV {k}={v}")));
    out
}

impl DockerRuntime {
    pub(super) async fn image_id_of(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(i.id.unwrap_or_else(|| reference.to_string()))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(format!("inspect image {reference}"), e)),
        }
    }

    pub(super) async fn import(&self, image: ImageImport) -> Result<()> {
        let (repo, tag) = split_tag(&image.reference);
        let opts = CreateImageOptions {
            from_src: Some("-".to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            changes: changes(&image),
            ..Default::default()
        };
        self.docker
            .create_image(
                Some(opts),
                Some(bollard::body_full(image.rootfs.clone())),
                None,
            )
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| engine(format!("import {}", image.reference), e))
    }

    pub(super) async fn load(
        &self,
        reference: &str,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<()> {
        let op = || format!("load image {reference}");
        let opts = ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        self.docker
            .import_image_stream(opts, archive, None)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|e| engine(op(), e))?;
        // The archive's manifest names the tag; an engine that loaded something else failed.
        match self.image_id_of(reference).await? {
            Some(_) => Ok(()),
            None => Err(crate::runtime::RuntimeError::Engine {
                op: op(),
                message: "the engine loaded the archive but does not show its tag".into(),
            }),
        }
    }

    pub(super) async fn remove_image_id(&self, id: &str) -> Result<()> {
        self.docker
            .remove_image(id, None::<RemoveImageOptions>, None)
            .await
            .map(|_| ())
            .map_err(|e| engine(format!("remove image {id}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(
            split_tag("slicebed/base:latest"),
            ("slicebed/base", "latest")
        );
        assert_eq!(split_tag("foo"), ("foo", "latest"));
        assert_eq!(split_tag("host:5000/foo"), ("host:5000/foo", "latest"));
        assert_eq!(split_tag("host:5000/foo:1"), ("host:5000/foo", "1"));
    }

    #[test]
    fn command_and_environment_become_import_changes() {
        let i = ImageImport {
            reference: "x:1".into(),
            rootfs: Default::default(),
            command: vec!["/bin/sh".into()],
            env: vec![("PATH".into(), "/bin".into())],
        };
        assert_eq!(changes(&i), [r#"CMD ["/bin/sh"]"#, "ENV PATH=/bin"]);
    }
}
