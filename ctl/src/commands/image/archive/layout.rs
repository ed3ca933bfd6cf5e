//! Which members of an archive make up the image: `manifest.json` of `docker save` (the legacy
//! layout of engines before 25 and the OCI-based one after), or `index.json` of an OCI image
//! layout (`skopeo copy ... oci-archive:`). Pure: reads JSON members through the index, never
//! touches layer bytes and never trusts a declared digest (that is `verify`'s job).

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::index::{Index, Range};

/// One layer as the archive declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredLayer {
    /// Member holding the layer's bytes.
    pub member: String,
    pub range: Range,
    /// `sha256:…` the bytes must hash to.
    pub digest: String,
    /// OCI media type; plain tar for `docker save`'s legacy layout.
    pub media_type: String,
}

/// The image found in an archive, before verification.
#[derive(Debug, Clone)]
pub struct Declared {
    pub config_member: String,
    /// The digest the config must hash to, when the layout names one.
    pub config_digest: Option<String>,
    pub layers: Vec<DeclaredLayer>,
    /// Tags the archive records for the image (docker save).
    pub repo_tags: Vec<String>,
}

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Finds the image `wanted` (NAME:TAG) in the archive, or its only image.
pub fn resolve(idx: &Index, wanted: Option<&str>) -> Result<Declared> {
    if idx.has("manifest.json") {
        docker(idx, wanted)
    } else if idx.has("index.json") {
        oci(idx, wanted)
    } else {
        bail!(
            "{} has neither manifest.json (docker save) nor index.json (OCI layout)",
            idx.path.display()
        )
    }
}

fn json(idx: &Index, member: &str) -> Result<Value> {
    let bytes = idx.read_small(member)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{member} is not valid JSON"))
}

fn member(idx: &Index, name: &str) -> Result<Range> {
    idx.get(name)
        .with_context(|| format!("the archive names {name} but does not contain it"))
}

/// `blobs/sha256/HEX` → `sha256:HEX`.
fn blob_digest(member: &str) -> Option<String> {
    let hex = member.strip_prefix("blobs/sha256/")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

fn docker(idx: &Index, wanted: Option<&str>) -> Result<Declared> {
    let manifest = json(idx, "manifest.json")?;
    let images = manifest
        .as_array()
        .context("manifest.json is not a list of images")?;
    let tags = |m: &Value| -> Vec<String> {
        m["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let chosen = match wanted {
        Some(w) if images.len() > 1 => images.iter().find(|m| tags(m).iter().any(|t| t == w)),
        _ => images.first(),
    };
    let Some(m) = chosen else {
        let all: Vec<String> = images.iter().flat_map(tags).collect();
        bail!(
            "the archive holds {} images and none is tagged {}; it has {}",
            images.len(),
            wanted.unwrap_or("?"),
            all.join(", ")
        );
    };
    let config_member = m["Config"]
        .as_str()
        .context("manifest.json has no Config")?
        .to_string();
    member(idx, &config_member)?;
    // The legacy layout names the config after its digest, the OCI-based one by blob path.
    let config_digest = blob_digest(&config_member).or_else(|| {
        let hex = config_member.strip_suffix(".json")?;
        (hex.len() == 64).then(|| format!("sha256:{hex}"))
    });
    let config: Value = serde_json::from_slice(&idx.read_small(&config_member)?)
        .with_context(|| format!("{config_member} is not valid JSON"))?;
    let diff_ids = super::diff_ids(&config)?;
    let names = m["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?;
    if names.len() != diff_ids.len() {
        bail!(
            "manifest.json lists {} layers but the config has {} diff_ids",
            names.len(),
            diff_ids.len()
        );
    }
    let mut layers = Vec::new();
    for (name, diff_id) in names.iter().zip(&diff_ids) {
        let name = name
            .as_str()
            .context("a layer in manifest.json is not a path")?;
        layers.push(DeclaredLayer {
            member: name.to_string(),
            range: member(idx, name)?,
            digest: blob_digest(name).unwrap_or_else(|| diff_id.clone()),
            media_type: TAR.into(),
        });
    }
    Ok(Declared {
        config_member,
        config_digest,
        layers,
        repo_tags: tags(m),
    })
}

fn descriptor_member(d: &Value) -> Result<(String, String)> {
    let digest = d["digest"].as_str().context("a descriptor has no digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}: only sha256 is accepted"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("malformed digest {digest}");
    }
    Ok((digest.to_string(), format!("blobs/sha256/{hex}")))
}

fn oci(idx: &Index, wanted: Option<&str>) -> Result<Declared> {
    let index = json(idx, "index.json")?;
    let manifests = index["manifests"]
        .as_array()
        .context("index.json has no manifests")?;
    let tag = wanted.and_then(|w| w.rsplit_once(':')).map(|(_, t)| t);
    let named = |d: &&Value| {
        let r = d["annotations"]["org.opencontainers.image.ref.name"].as_str();
        r.is_some() && (r == wanted || r == tag)
    };
    let mut desc = manifests
        .iter()
        .find(named)
        .or_else(|| manifests.first())
        .context("index.json lists no image")?
        .clone();
    // A multi-platform index: take linux/amd64, else the first.
    for _ in 0..4 {
        if !INDEX_TYPES.contains(&desc["mediaType"].as_str().unwrap_or_default()) {
            break;
        }
        let (_, m) = descriptor_member(&desc)?;
        let inner = json(idx, &m)?;
        let list = inner["manifests"]
            .as_array()
            .context("an image index has no manifests")?;
        desc = list
            .iter()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == "amd64")
            .or_else(|| list.first())
            .context("an image index lists no image")?
            .clone();
    }
    let (_, manifest_member) = descriptor_member(&desc)?;
    let manifest = json(idx, &manifest_member)?;
    let (config_digest, config_member) = descriptor_member(&manifest["config"])?;
    member(idx, &config_member)?;
    let mut layers = Vec::new();
    for l in manifest["layers"]
        .as_array()
        .context("the manifest has no layers")?
    {
        let (digest, name) = descriptor_member(l)?;
        layers.push(DeclaredLayer {
            range: member(idx, &name)?,
            member: name,
            digest,
            media_type: l["mediaType"].as_str().unwrap_or(TAR).to_string(),
        });
    }
    Ok(Declared {
        config_member,
        config_digest: Some(config_digest),
        layers,
        repo_tags: Vec::new(),
    })
}
