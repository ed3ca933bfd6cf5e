//! `slicectl image show NAME[:TAG]|NAME@DIGEST`: one image with its layers and sizes.

use anyhow::Result;
use clap::Args;
use slicebed_image::Reference;
use slicebed_proto::v1::GetImageRequest;

use super::{list::view, visibility_name};
use crate::{
    commands::access::cp::human_bytes,
    ctx::Ctx,
    output::{self, Fields, Table},
    timefmt,
};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// NAME, NAME:TAG or NAME@sha256:… (the tag defaults to latest)
    #[arg(value_name = "IMAGE")]
    pub reference: String,
}

pub async fn run(args: ShowArgs, ctx: &Ctx) -> Result<()> {
    let mut r = Reference::parse(&args.reference)?;
    if r.digest.is_none() {
        r.tag.get_or_insert_with(|| "latest".into());
    }
    let mut c = ctx.connect().await?;
    let i = c
        .images
        .get_image(GetImageRequest {
            reference: r.to_string(),
        })
        .await?
        .into_inner();
    if ctx.json() {
        return output::json(&view(&i));
    }
    let mut f = Fields::new();
    f.add("Name", &i.name)
        .add("Digest", &i.digest)
        .add("Tags", i.tags.join(", "))
        .add("Owner", &i.owner)
        .add("Site", &i.site)
        .add("Visibility", visibility_name(i.visibility()))
        .add(
            "Size",
            format!("{} ({} bytes)", human_bytes(i.size), i.size),
        )
        .add("Config", &i.config_digest)
        .add(
            "Created",
            timefmt::rfc3339(i.created_at.as_ref()).unwrap_or_default(),
        )
        .add(
            "Run it",
            format!("slicectl slice create NAME --image {}@{}", i.name, i.digest),
        );
    let mut t = Table::new(["LAYER", "DIGEST", "SIZE"]);
    for (n, l) in i.layers.iter().enumerate() {
        t.row([(n + 1).to_string(), l.digest.clone(), human_bytes(l.size)]);
    }
    output::out(&format!("{f}\n{t}"))
}
