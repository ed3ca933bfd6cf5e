//! `slicectl image tag SRC DST` and `slicectl image rm NAME:TAG|NAME@DIGEST`. The service
//! decides who may (owner or admin) and whether a running slice still needs the image; its
//! refusals are shown as they come, one line each.

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::json;
use slicebed_image::Reference;
use slicebed_proto::v1::{DeleteImageRequest, TagImageRequest};

use super::short_digest;
use crate::{commands::access::cp::human_bytes, ctx::Ctx, output};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  slicectl image tag myexp:v1 myexp:stable")]
pub struct TagArgs {
    /// The image: NAME:TAG or NAME@sha256:…
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new NAME:TAG
    #[arg(value_name = "TARGET")]
    pub target: String,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    slicectl image rm myexp:v1             # removes the tag; the image stays if tagged otherwise\n  \
    slicectl image rm myexp@sha256:...     # removes the image and all its tags")]
pub struct RmArgs {
    /// NAME:TAG (the tag) or NAME@sha256:… (the image)
    #[arg(value_name = "IMAGE")]
    pub reference: String,
}

pub async fn tag(args: TagArgs, ctx: &Ctx) -> Result<()> {
    let source = Reference::parse(&args.source)?;
    let target = Reference::parse_tagged(&args.target)?;
    let mut c = ctx.connect().await?;
    let i = c
        .images
        .tag_image(TagImageRequest {
            source: source.to_string(),
            target: target.to_string(),
        })
        .await
        .with_context(|| format!("cannot tag {source} as {target}"))?
        .into_inner();
    if ctx.json() {
        return output::json(&super::list::view(&i));
    }
    output::out(&format!("tagged {} as {target}\n", short_digest(&i.digest)))
}

pub async fn rm(args: RmArgs, ctx: &Ctx) -> Result<()> {
    let mut r = Reference::parse(&args.reference)?;
    if r.digest.is_none() {
        r.tag.get_or_insert_with(|| "latest".into());
    }
    let mut c = ctx.connect().await?;
    let done = c
        .images
        .delete_image(DeleteImageRequest {
            reference: r.to_string(),
        })
        .await
        .with_context(|| format!("cannot remove {r}"))?
        .into_inner();
    if ctx.json() {
        return output::json(&json!({
            "reference": r.to_string(),
            "blobs_removed": done.blobs_removed,
            "bytes_freed": done.bytes_freed,
        }));
    }
    let freed = match done.blobs_removed {
        0 => String::new(),
        n => format!(
            " ({n} unused blobs removed, {} freed)",
            human_bytes(done.bytes_freed)
        ),
    };
    output::out(&format!("removed {r}{freed}\n"))
}
