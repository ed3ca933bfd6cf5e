//! `slicectl image show NAME[:TAG]|NAME@DIGEST`: one image with its layers and sizes, what a
//! container of it runs (command, entrypoint, environment, working directory, ports) and the
//! live slices pinned to it that the caller may see.

use anyhow::Result;
use clap::Args;
use slicebed_image::Reference;
use slicebed_proto::v1::{GetImageRequest, Image};

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
    let mut t = Table::new(["LAYER", "DIGEST", "SIZE"]);
    for (n, l) in i.layers.iter().enumerate() {
        t.row([(n + 1).to_string(), l.digest.clone(), human_bytes(l.size)]);
    }
    output::out(&format!("{}\n{t}", fields(&i)))
}

/// `["/bin/sh", "-c", "x y"]` as a shell would need it typed: words quoted only when needed.
fn argv(words: &[String]) -> String {
    if words.is_empty() {
        return "-".into();
    }
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who runs it: the visible slices by name, and how many others the caller may not see.
fn used_by(i: &Image) -> String {
    let mut parts: Vec<String> = i.slices.clone();
    if i.hidden_slices > 0 {
        let s = if i.hidden_slices == 1 { "" } else { "s" };
        parts.push(format!("{} slice{s} you cannot see", i.hidden_slices));
    }
    if parts.is_empty() {
        "no live slice".into()
    } else {
        parts.join(", ")
    }
}

fn fields(i: &Image) -> Fields {
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
        );
    if let Some(rc) = &i.run_config {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        f.add(
            "Platform",
            format!("{}/{}", dash(&rc.os), dash(&rc.architecture)),
        )
        .add("Entrypoint", argv(&rc.entrypoint))
        .add("Command", argv(&rc.cmd))
        .add("Working dir", dash(&rc.working_dir))
        .add("User", dash(&rc.user))
        .add("Ports", dash(&rc.exposed_ports.join(", ")));
        if rc.env.is_empty() {
            f.add("Env", "-");
        }
        for e in &rc.env {
            f.add("Env", e);
        }
        if rc.truncated {
            f.add(
                "Note",
                "the config is longer than shown (lists and entries are bounded)",
            );
        }
        f.add("Used by", used_by(i));
    }
    f.add(
        "Run it",
        format!("slicectl slice create NAME --image {}@{}", i.name, i.digest),
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::v1::ImageRunConfig;

    #[test]
    fn show_prints_the_command_env_and_who_runs_it() {
        let i = Image {
            name: "alice/tool".into(),
            run_config: Some(ImageRunConfig {
                cmd: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
                env: vec!["PATH=/bin".into(), "MODE=x".into()],
                exposed_ports: vec!["80/tcp".into()],
                ..Default::default()
            }),
            slices: vec!["exp1".into()],
            hidden_slices: 2,
            ..Default::default()
        };
        let text = fields(&i).to_string();
        assert!(text.contains("/bin/sh -c 'echo hi'"), "{text}");
        assert!(
            text.contains("PATH=/bin") && text.contains("MODE=x"),
            "{text}"
        );
        assert!(text.contains("exp1, 2 slices you cannot see"), "{text}");
        assert!(text.contains("80/tcp"), "{text}");
    }
}
