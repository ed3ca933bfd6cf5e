//! What every command gets: the output format, the config file's location and the connection
//! overrides from flags and environment. Connecting is lazy so that `context list` or
//! `completions` work without a server.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    client::{self, Clients},
    config::{Config, Overrides, Settings},
    output::Format,
};

/// Per-run context handed to each command's `run`.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Table or JSON.
    pub format: Format,
    /// Path of the config file.
    pub config_path: PathBuf,
    /// Server, token, CA and context from flags and environment.
    pub overrides: Overrides,
}

impl Ctx {
    /// Whether the caller asked for JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// The config file's contents (empty if it does not exist).
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.config_path)
    }

    /// Effective connection settings: flag > environment > context.
    pub fn settings(&self) -> Result<Settings> {
        self.config()?.resolve(&self.overrides)
    }

    /// Connects to slice-service with the effective settings.
    pub async fn connect(&self) -> Result<Clients> {
        client::connect(&self.settings()?).await
    }
}
