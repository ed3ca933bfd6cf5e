//! What a container of an image runs, read from its OCI config blob for `image show`: the
//! entrypoint, command, environment, working directory, exposed ports and user.
//!
//! The config is the pusher's text. It is read bounded (the store keeps configs of at most
//! `MAX_MANIFEST_BYTES`), every string is made printable (`untrusted::bounded`: no terminal
//! escape reaches whoever runs `image show`) and lists are cut to [`MAX_ENTRIES`]; anything
//! left off is flagged, never silently dropped. Pure: no I/O here.

use serde_json::Value;
use slicebed_image::ImageConfig;

use crate::error::{Error, Result};
use crate::untrusted;

/// Most entries kept per list (env, cmd, ports).
pub const MAX_ENTRIES: usize = 256;
/// Longest entry kept, in bytes (before the truncation mark).
pub const MAX_ENTRY_BYTES: usize = 4096;

/// The run configuration of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `80/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    pub user: String,
    pub os: String,
    pub architecture: String,
    /// Something was cut by the bounds.
    pub truncated: bool,
}

/// One string made printable and bounded; whether it was cut.
fn text(s: &str, cut: &mut bool) -> String {
    *cut |= s.len() > MAX_ENTRY_BYTES;
    untrusted::bounded(s, MAX_ENTRY_BYTES)
}

/// A list of strings (or one bare string, which Docker accepts for Cmd and Entrypoint),
/// at most [`MAX_ENTRIES`] of them.
fn list(v: Option<&Value>, cut: &mut bool) -> Vec<String> {
    let items: Vec<&str> = match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    };
    *cut |= items.len() > MAX_ENTRIES;
    items
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|s| text(s, cut))
        .collect()
}

/// Reads the run configuration from config blob bytes (verified against their digest when
/// the image was committed).
pub fn run_config(bytes: &[u8]) -> Result<RunConfig> {
    let c: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| Error::Internal(format!("a stored image config does not parse: {e}")))?;
    let run = &c.config;
    let mut cut = false;
    let mut ports: Vec<&String> = match run.get("ExposedPorts") {
        Some(Value::Object(m)) => m.keys().collect(),
        _ => Vec::new(),
    };
    ports.sort();
    cut |= ports.len() > MAX_ENTRIES;
    let exposed_ports = ports
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|p| text(p, &mut cut))
        .collect();
    let field = |k: &str| run.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = RunConfig {
        entrypoint: list(run.get("Entrypoint"), &mut cut),
        cmd: list(run.get("Cmd"), &mut cut),
        env: list(run.get("Env"), &mut cut),
        working_dir: text(field("WorkingDir"), &mut cut),
        exposed_ports,
        user: text(field("User"), &mut cut),
        os: text(&c.os, &mut cut),
        architecture: text(&c.architecture, &mut cut),
        truncated: false,
    };
    out.truncated = cut;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(run: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap()
    }

    #[test]
    fn reads_what_docker_writes() {
        let c = run_config(&config(serde_json::json!({
            "Cmd": ["/bin/sh", "-c", "iperf3 -s"],
            "Entrypoint": null,
            "Env": ["PATH=/bin", "MODE=server"],
            "WorkingDir": "/srv",
            "ExposedPorts": {"5201/tcp": {}, "53/udp": {}},
            "User": "nobody",
        })))
        .unwrap();
        assert_eq!(c.cmd, ["/bin/sh", "-c", "iperf3 -s"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.env, ["PATH=/bin", "MODE=server"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.exposed_ports, ["5201/tcp", "53/udp"]);
        assert_eq!((c.user.as_str(), c.os.as_str()), ("nobody", "linux"));
        assert!(!c.truncated);
    }

    #[test]
    fn an_empty_config_is_empty_and_hostile_text_is_escaped_and_bounded() {
        let c = run_config(&config(serde_json::Value::Null)).unwrap();
        assert_eq!(c.cmd, Vec::<String>::new());
        assert_eq!(c.working_dir, "");
        let env: Vec<String> = (0..300).map(|i| format!("K{i}=v")).collect();
        let c = run_config(&config(serde_json::json!({
            "Cmd": ["echo \u{1b}]0;pwned\u{7}", "x".repeat(10_000)],
            "Env": env,
        })))
        .unwrap();
        assert_eq!(c.cmd[0], "echo \\x1b]0;pwned\\x07");
        assert!(c.cmd[1].len() < 4200 && c.cmd[1].contains("truncated"));
        assert_eq!(c.env.len(), MAX_ENTRIES);
        assert!(c.truncated);
    }
}
