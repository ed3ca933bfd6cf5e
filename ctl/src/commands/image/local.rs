//! The image a push will send, read and checked on this machine before anything goes over the
//! network: exported from the local Docker engine (or taken from `--file`), its layout read,
//! gzip layers decompressed, every layer hashed against its declared digest. The temporary
//! files it makes live as long as the returned [`Local`].

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::{
    archive::{uncompressed, ImageArchive},
    engine,
    progress::Progress,
};

/// A checked image and the temporary files its layers are read from.
pub struct Local {
    pub image: ImageArchive,
    _exported: Option<tempfile::NamedTempFile>,
    _decompressed: Vec<tempfile::NamedTempFile>,
}

/// Reads `wanted` (NAME:TAG) from `file`, or from the local engine into `tmp_dir`.
pub async fn read(
    wanted: &str,
    file: Option<PathBuf>,
    tmp_dir: PathBuf,
    progress: &Progress,
) -> Result<Local> {
    let mut exported = None;
    let path = match file {
        Some(p) => p,
        None => {
            let docker = engine::connect().await?;
            progress.step("exporting", None);
            let tmp = engine::export(&docker, wanted, &tmp_dir, &mut |n| progress.at(n)).await?;
            let p = tmp.path().to_path_buf();
            exported = Some(tmp);
            p
        }
    };
    let shown = path.display().to_string();
    let bar = progress.clone_handle();
    let wanted = wanted.to_string();
    let checked = tokio::task::spawn_blocking(move || {
        let mut image = ImageArchive::open(&path, Some(&wanted))?;
        let mut decompressed = Vec::new();
        if !image.layers.iter().all(|l| uncompressed(&l.media_type)) {
            bar.step("decompressing", Some(image.layers_size()));
            decompressed = image.decompress(&tmp_dir, &mut |n| bar.at(n))?;
        }
        bar.step("verifying", Some(image.layers_size()));
        image.verify(&mut |n| bar.at(n))?;
        anyhow::Ok((image, decompressed))
    })
    .await
    .context("the archive reader stopped")?;
    let (image, decompressed) = checked.with_context(|| format!("{shown} was refused"))?;
    Ok(Local {
        image,
        _exported: exported,
        _decompressed: decompressed,
    })
}
