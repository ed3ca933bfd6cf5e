//! `slicectl image list`: the images the caller can use, one row per tag (untagged manifests
//! once, with `<none>`), newest first as the service orders them.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use slicebed_proto::v1::{Image, ListImagesRequest};

use super::{short_digest, visibility_name};
use crate::{
    commands::access::cp::human_bytes,
    ctx::Ctx,
    output::{self, Table},
    timefmt,
};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this repository
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Only images you own
    #[arg(long)]
    pub mine: bool,
}

pub async fn run(args: ListArgs, ctx: &Ctx) -> Result<()> {
    if let Some(n) = &args.name {
        slicebed_image::Reference::parse(n)?;
    }
    let mut c = ctx.connect().await?;
    let images = c
        .images
        .list_images(ListImagesRequest {
            name: args.name.unwrap_or_default(),
            mine: args.mine,
        })
        .await?
        .into_inner()
        .images;
    if ctx.json() {
        return output::json(&images.iter().map(view).collect::<Vec<_>>());
    }
    let now = timefmt::now_secs();
    let mut t = Table::new([
        "NAME",
        "TAG",
        "DIGEST",
        "SIZE",
        "OWNER",
        "VISIBILITY",
        "CREATED",
    ]);
    for i in &images {
        let tags: Vec<&str> = if i.tags.is_empty() {
            vec!["<none>"]
        } else {
            i.tags.iter().map(String::as_str).collect()
        };
        for tag in tags {
            t.row([
                i.name.clone(),
                tag.to_string(),
                short_digest(&i.digest),
                human_bytes(i.size),
                i.owner.clone(),
                visibility_name(i.visibility()),
                timefmt::ago(i.created_at.as_ref(), now),
            ]);
        }
    }
    if t.is_empty() {
        eprintln!("no images (push one with: slicectl image push NAME:TAG)");
        return Ok(());
    }
    output::out(&t.to_string())
}

/// The JSON view of an image, shared with `show` (which adds the run configuration and the
/// slices using it when the service sent them).
pub fn view(i: &Image) -> serde_json::Value {
    let mut v = base_view(i);
    if let Some(rc) = &i.run_config {
        v["run_config"] = json!({
            "entrypoint": rc.entrypoint,
            "cmd": rc.cmd,
            "env": rc.env,
            "working_dir": rc.working_dir,
            "exposed_ports": rc.exposed_ports,
            "user": rc.user,
            "os": rc.os,
            "architecture": rc.architecture,
            "truncated": rc.truncated,
        });
        v["slices"] = json!(i.slices);
        v["hidden_slices"] = json!(i.hidden_slices);
    }
    v
}

fn base_view(i: &Image) -> serde_json::Value {
    json!({
        "name": i.name,
        "digest": i.digest,
        "tags": i.tags,
        "owner": i.owner,
        "site": i.site,
        "visibility": visibility_name(i.visibility()),
        "size": i.size,
        "config_digest": i.config_digest,
        "layers": i.layers.iter().map(|l| json!({"digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        "created_at": timefmt::rfc3339(i.created_at.as_ref()),
    })
}
