//! The config file with named contexts, kubectl-style, and how flags, environment and the file
//! combine into the settings of one run (flag > environment > current context).
//!
//! The file holds bearer tokens, so it is always written with mode 0600 (via a temporary file and a
//! rename, so a crash never leaves half a config). Unknown keys are an error, not a silent default.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One named connection: where the service is and who we are there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// URL of slice-service, e.g. `http://127.0.0.1:50051`.
    pub server: String,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the service's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// What the command line and the environment said (clap already applied flag > environment).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub server: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub context: Option<String>,
}

/// The effective connection settings of this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// The context the missing pieces came from, if any.
    pub context: Option<String>,
}

/// The token as given: `-` means "read it from the first line of standard input", so that a
/// secret never has to appear on a command line (where `ps` and shell history show it).
pub fn token_from(given: Option<String>, stdin: impl std::io::BufRead) -> Result<Option<String>> {
    use std::io::BufRead as _;
    match given.as_deref() {
        Some("-") => {
            let mut line = String::new();
            stdin
                .take(64 * 1024)
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            let token = line.trim();
            if token.is_empty() {
                bail!("--token - reads the token from standard input, which was empty");
            }
            Ok(Some(token.to_string()))
        }
        _ => Ok(given),
    }
}

/// Where the config file lives: `$SLICECTL_CONFIG`, else `$XDG_CONFIG_HOME/slicebed/config.toml`,
/// else `~/.config/slicebed/config.toml`.
pub fn default_path() -> Result<PathBuf> {
    path_from(|k| std::env::var_os(k).map(PathBuf::from))
}

fn path_from(env: impl Fn(&str) -> Option<PathBuf>) -> Result<PathBuf> {
    let set = |k: &str| env(k).filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = set("SLICECTL_CONFIG") {
        return Ok(p);
    }
    // The XDG spec says relative values are to be ignored.
    if let Some(p) = set("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Ok(p.join("slicebed/config.toml"));
    }
    match set("HOME") {
        Some(home) => Ok(home.join(".config/slicebed/config.toml")),
        None => bail!("cannot find the config file: neither XDG_CONFIG_HOME nor HOME is set"),
    }
}

impl Config {
    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {}", path.display(), e.message()))
    }

    /// Writes the file with mode 0600, creating its directory (0700) if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let text = toml::to_string_pretty(self).context("cannot encode the config")?;
        let tmp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        })
    }

    /// Combines overrides with the chosen context: flag/env first, then the context.
    pub fn resolve(&self, o: &Overrides) -> Result<Settings> {
        let name = o.context.clone().or_else(|| self.current.clone());
        let ctx = match &name {
            Some(n) => Some(self.contexts.get(n).with_context(|| {
                format!("no context named {n:?} in the config file (see slicectl context list)")
            })?),
            None => None,
        };
        let server = o
            .server
            .clone()
            .or_else(|| ctx.map(|c| c.server.clone()))
            .context(
                "no server given: pass --server URL, set SLICECTL_SERVER, or run slicectl login",
            )?;
        Ok(Settings {
            server,
            token: o
                .token
                .clone()
                .or_else(|| ctx.and_then(|c| c.token.clone())),
            ca_cert: o
                .ca_cert
                .clone()
                .or_else(|| ctx.and_then(|c| c.ca_cert.clone())),
            context: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_reads_the_token_from_stdin() {
        let t = token_from(Some("-".into()), &b"sbu_secret\nrest"[..]).unwrap();
        assert_eq!(t.as_deref(), Some("sbu_secret"));
        let t = token_from(Some("sbu_flag".into()), &b"ignored"[..]).unwrap();
        assert_eq!(t.as_deref(), Some("sbu_flag"));
        assert_eq!(token_from(None, &b""[..]).unwrap(), None);
        let e = token_from(Some("-".into()), &b"\n"[..]).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Config {
        let mut c = Config {
            current: Some("prod".into()),
            ..Default::default()
        };
        c.contexts.insert(
            "prod".into(),
            Context {
                server: "https://prod:443".into(),
                token: Some("ptok".into()),
                ca_cert: Some("/ca.pem".into()),
            },
        );
        c.contexts.insert(
            "dev".into(),
            Context {
                server: "http://dev:1".into(),
                token: Some("dtok".into()),
                ca_cert: None,
            },
        );
        c
    }

    #[test]
    fn current_context_fills_the_gaps() {
        let s = sample().resolve(&Overrides::default()).unwrap();
        assert_eq!(s.server, "https://prod:443");
        assert_eq!(s.token.as_deref(), Some("ptok"));
        assert_eq!(s.ca_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.context.as_deref(), Some("prod"));
    }

    #[test]
    fn flags_and_env_win_over_the_context() {
        let o = Overrides {
            token: Some("flag".into()),
            context: Some("dev".into()),
            ..Default::default()
        };
        let s = sample().resolve(&o).unwrap();
        assert_eq!(
            (s.server.as_str(), s.token.as_deref(), s.ca_cert),
            ("http://dev:1", Some("flag"), None)
        );
        let o = Overrides {
            server: Some("http://x:2".into()),
            ..Default::default()
        };
        assert_eq!(sample().resolve(&o).unwrap().server, "http://x:2");
    }

    #[test]
    fn missing_pieces_are_clear_errors() {
        let o = Overrides {
            context: Some("nope".into()),
            ..Default::default()
        };
        assert!(sample()
            .resolve(&o)
            .unwrap_err()
            .to_string()
            .contains("no context named \"nope\""));
        let err = Config::default()
            .resolve(&Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--server"), "{err}");
    }

    #[test]
    fn saves_with_mode_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/slicebed/config.toml");
        sample().save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Config::load(&path).unwrap(), sample());
        // Rewriting an existing, looser file tightens it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        sample().save(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn missing_file_is_empty_and_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
        let path = dir.path().join("c.toml");
        fs::write(
            &path,
            "current = \"a\"\n[contexts.a]\nserver = \"http://a\"\ntokn = \"x\"\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn path_follows_xdg() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        assert_eq!(
            path_from(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.config/slicebed/config.toml")
        );
        assert_eq!(
            path_from(env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")])).unwrap(),
            PathBuf::from("/x/slicebed/config.toml")
        );
        assert_eq!(
            path_from(env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "rel")])).unwrap(),
            PathBuf::from("/h/.config/slicebed/config.toml")
        );
        assert_eq!(
            path_from(env(&[("SLICECTL_CONFIG", "/c.toml")])).unwrap(),
            PathBuf::from("/c.toml")
        );
        assert!(path_from(env(&[])).is_err());
    }
}
