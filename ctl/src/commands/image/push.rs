//! `slicectl image push NAME:TAG`: reads the image from the local Docker engine (or `--file`),
//! refuses locally a layer that does not match its digest, uploads only the blobs the store
//! lacks — each from the offset the store already holds — and commits the manifest and tag.
//! Nothing is committed unless every blob is in the store; the store checks every digest again.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use serde::Serialize;
use slicebed_image::{Digest, Manifest, Reference};
use slicebed_proto::v1::{CommitImageRequest, ImageVisibility, SetImageVisibilityRequest};

use super::{
    archive::ImageArchive,
    local,
    progress::Progress,
    upload::{self, Blob, Pace, Source},
    Visibility,
};
use crate::{commands::access::cp::human_bytes, ctx::Ctx, output};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    slicectl image push myexp:v1                     # from the local Docker engine\n  \
    slicectl image push myexp:v1 --file myexp.tar    # docker save -o myexp.tar myexp:v1\n  \
    slicectl image push myexp:v1 --visibility site   # readable by everyone at your site")]
pub struct PushArgs {
    /// Name and tag in the store (the local image of that name, unless --file is given)
    #[arg(value_name = "NAME:TAG")]
    pub reference: String,
    /// Push this archive (`docker save` output or an OCI layout tar) instead of asking Docker
    #[arg(long, value_name = "ARCHIVE")]
    pub file: Option<PathBuf>,
    /// Who may use the image: you and your slices' members, or everyone at your site
    #[arg(long, value_enum)]
    pub visibility: Option<Visibility>,
    /// Upload at most this many bytes per second (e.g. 10M), to spare a slow link
    #[arg(long, value_name = "RATE", value_parser = super::parse_rate)]
    pub limit_rate: Option<u64>,
    /// Where `docker save` output is written before the upload [default: the temp directory]
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
}

/// What a push did (`-o json`).
#[derive(Debug, Serialize)]
pub struct Pushed {
    pub name: String,
    pub tag: String,
    pub digest: String,
    /// Manifest, config and layers, in bytes.
    pub size: u64,
    pub layers: usize,
    pub layers_uploaded: usize,
    pub layers_skipped: usize,
    /// Bytes sent in this run (config and layers).
    pub bytes_sent: u64,
    /// Bytes of partial uploads the store already held and this run did not resend.
    pub bytes_resumed: u64,
    pub visibility: String,
}

pub async fn run(args: PushArgs, ctx: &Ctx) -> Result<()> {
    let reference = Reference::parse_tagged(&args.reference)?;
    let tag = reference.tag_or_latest().to_string();
    let wanted = format!("{}:{tag}", reference.name);
    let progress = Progress::on_stderr();
    // Connect first: a wrong server or token is reported before a long export.
    let clients = ctx.connect().await?;
    let tmp_dir = args.tmp_dir.unwrap_or_else(std::env::temp_dir);
    let local = local::read(&wanted, args.file, tmp_dir, &progress).await?;
    let image = &local.image;
    let blobs = blobs_of(image);
    let manifest = Manifest::new(
        (
            Digest::parse(&image.config_digest)?,
            image.config.len() as u64,
        ),
        &blobs[1..]
            .iter()
            .map(|b| Ok((Digest::parse(&b.digest)?, b.size)))
            .collect::<Result<Vec<_>>>()?,
    )
    .to_bytes();

    let mut client = clients.images.clone();
    let states = upload::status(&mut client, &blobs).await?;
    let mut seen = std::collections::HashSet::new();
    // An image may hold the same layer twice; it is sent once.
    let missing: Vec<(&Blob, u64)> = blobs
        .iter()
        .zip(&states)
        .filter(|(b, s)| !s.present && seen.insert(b.digest.clone()))
        .map(|(b, s)| (b, s.received.min(b.size)))
        .collect();
    let to_send: u64 = missing.iter().map(|(b, r)| b.size - r).sum();
    let layers_skipped = states[1..].iter().filter(|s| s.present).count();
    progress.step("uploading", Some(to_send));
    let pace = Pace {
        limit: args.limit_rate,
    };
    let (mut bytes_sent, mut bytes_resumed) = (0, 0);
    for (n, (blob, received)) in missing.iter().enumerate() {
        progress.note(format!("blob {}/{}", n + 1, missing.len()));
        bytes_resumed += received;
        bytes_sent += upload::push(&mut client, blob, *received, pace, &progress).await?;
    }
    progress.step("committing", None);
    let committed = client
        .commit_image(CommitImageRequest {
            reference: wanted.clone(),
            manifest,
        })
        .await
        .with_context(|| format!("cannot commit {wanted}"))?
        .into_inner();
    let committed = match args.visibility {
        Some(v) => client
            .set_image_visibility(SetImageVisibilityRequest {
                name: reference.name.clone(),
                visibility: ImageVisibility::from(v) as i32,
            })
            .await
            .with_context(|| format!("{wanted} was pushed, but its visibility was not set"))?
            .into_inner(),
        None => committed,
    };
    progress.finish();
    let result = Pushed {
        name: committed.name.clone(),
        tag,
        digest: committed.digest.clone(),
        size: committed.size,
        layers: image.layers.len(),
        layers_uploaded: image.layers.len() - layers_skipped,
        layers_skipped,
        bytes_sent,
        bytes_resumed,
        visibility: super::visibility_name(committed.visibility()),
    };
    if ctx.json() {
        return output::json(&result);
    }
    output::out(&summary(&result))
}

/// Config first, then the layers in order (the manifest's order).
fn blobs_of(image: &ImageArchive) -> Vec<Blob> {
    let mut blobs = vec![Blob {
        digest: image.config_digest.clone(),
        size: image.config.len() as u64,
        source: Source::Memory(image.config.clone()),
    }];
    for l in &image.layers {
        blobs.push(Blob {
            digest: l.digest.clone(),
            size: l.size,
            source: Source::File(l.path.clone(), l.range),
        });
    }
    blobs
}

/// `pushed myexp:v1 sha256:… (12.0 MiB, 3 layers; 2 of 3 layers already in the store)`.
pub fn summary(p: &Pushed) -> String {
    let mut notes = vec![format!("{} layers", p.layers)];
    if p.layers_skipped > 0 {
        notes.push(format!(
            "{} of {} layers already in the store",
            p.layers_skipped, p.layers
        ));
    }
    if p.bytes_resumed > 0 {
        notes.push(format!(
            "resumed, {} were already uploaded",
            human_bytes(p.bytes_resumed)
        ));
    }
    format!(
        "pushed {}:{} {} ({}, {}; sent {})\n",
        p.name,
        p.tag,
        p.digest,
        human_bytes(p.size),
        notes.join("; "),
        human_bytes(p.bytes_sent)
    )
}
