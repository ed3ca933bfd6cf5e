//! `node-manager image ...`.

use node_manager::image::{self, Outcome, DEFAULT_TAG};
use node_manager::runtime::docker::DockerRuntime;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build the base image from a static busybox and import it (no registry needed).
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Image tag to create.
    #[arg(long, default_value = DEFAULT_TAG)]
    tag: String,
    /// Docker engine (unix:///var/run/docker.sock, tcp://HOST:PORT); default DOCKER_HOST or the local socket.
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// Rebuild even if the tag exists.
    #[arg(long)]
    force: bool,
}

pub async fn run(c: Command) -> anyhow::Result<()> {
    let Command::Import(a) = c;
    // Images are the engine's, not a node's: no node name is needed to import one.
    let rt = DockerRuntime::connect(a.docker_host.as_deref(), "").await?;
    match image::ensure(&rt, &a.tag, a.force).await? {
        Outcome::AlreadyPresent => println!("{} already present (use --force to rebuild)", a.tag),
        Outcome::Imported => println!("imported {}", a.tag),
    }
    Ok(())
}
