//! `slicectl image push|list|show|tag|rm`: researchers' own images in the service's image
//! store. Push reads the image from the local Docker engine or an archive on disk and uploads
//! only what the store lacks; the rest are thin calls to `ImageService`. Names are validated
//! here with the rules the service applies (`slicebed-image`), so a typo fails before any
//! upload. This module only dispatches and holds what the subcommands share.

pub mod archive;
pub mod edit;
pub mod engine;
pub mod list;
pub mod local;
pub mod progress;
pub mod push;
pub mod show;
pub mod upload;

use anyhow::Result;
use clap::Subcommand;
use slicebed_proto::v1::{image_service_client::ImageServiceClient, ImageVisibility};

use crate::{client::Authed, ctx::Ctx, output};

/// The image store's client, on the untimed connection (an upload lasts as long as it lasts).
pub type ImageClient = ImageServiceClient<Authed>;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Push an image from the local Docker engine (or an archive) to the store
    Push(push::PushArgs),
    /// List the images you can use
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Show an image: digest, layers, config, tags
    Show(show::ShowArgs),
    /// Give an image another NAME:TAG
    Tag(edit::TagArgs),
    /// Remove a tag (NAME:TAG) or an image with all its tags (NAME@DIGEST)
    #[command(visible_alias = "remove")]
    Rm(edit::RmArgs),
}

pub async fn run(cmd: ImageCmd, ctx: &Ctx) -> Result<()> {
    match cmd {
        ImageCmd::Push(a) => push::run(a, ctx).await,
        ImageCmd::List(a) => list::run(a, ctx).await,
        ImageCmd::Show(a) => show::run(a, ctx).await,
        ImageCmd::Tag(a) => edit::tag(a, ctx).await,
        ImageCmd::Rm(a) => edit::rm(a, ctx).await,
    }
}

/// Who may use an image, as `push --visibility` takes it (public is for admins, through the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Visibility {
    Private,
    Site,
}

impl From<Visibility> for ImageVisibility {
    fn from(v: Visibility) -> Self {
        match v {
            Visibility::Private => ImageVisibility::Private,
            Visibility::Site => ImageVisibility::Site,
        }
    }
}

/// `private`, `site`, `public`.
pub fn visibility_name(v: ImageVisibility) -> String {
    output::enum_name(v.as_str_name(), "IMAGE_VISIBILITY_")
}

/// `10M`, `512Ki`, `1048576` bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s");
    crate::quantity::parse_size(t)
        .map(|b| b as u64)
        .map_err(|e| e.to_string())
}

/// `sha256:0123456789ab` — the first 12 hex digits, as docker shows image ids.
pub fn short_digest(d: &str) -> String {
    match d.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_digests_read_well() {
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert_eq!(parse_rate("1Mi/s"), Ok(1 << 20));
        assert!(parse_rate("fast").is_err());
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
        assert_eq!(visibility_name(ImageVisibility::Site), "site");
    }
}
