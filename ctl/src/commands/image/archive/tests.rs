//! Archives built here in both layouts, as docker save and skopeo write them.

use super::*;
use serde_json::json;

fn tar_of(members: &[(String, Vec<u8>)]) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.finish().unwrap();
    f
}

fn hex_of(bytes: &[u8]) -> String {
    sha256(bytes).trim_start_matches("sha256:").to_string()
}

fn config(layers: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(
        &json!({"config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": ids}}),
    )
    .unwrap()
}

/// `docker save` of an engine before 25: `<id>/layer.tar`, `<config-hex>.json`, manifest.json.
fn legacy(layers: &[&[u8]], corrupt: Option<usize>) -> tempfile::NamedTempFile {
    let cfg = config(layers);
    let cfg_name = format!("{}.json", hex_of(&cfg));
    let mut members = vec![(cfg_name.clone(), cfg)];
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{:064x}/layer.tar", i + 1);
        let mut data = l.to_vec();
        if corrupt == Some(i) {
            data[0] ^= 1;
        }
        members.push((name.clone(), data));
        names.push(name);
    }
    let manifest = json!([{"Config": cfg_name, "RepoTags": ["exp:v1"], "Layers": names}]);
    members.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    tar_of(&members)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, bytes).unwrap();
    e.finish().unwrap()
}

/// An OCI image layout (skopeo copy oci-archive:).
fn oci(layers: &[&[u8]]) -> tempfile::NamedTempFile {
    oci_as(layers, false)
}

/// An OCI image layout whose layers are gzip blobs when `gz`.
fn oci_as(layers: &[&[u8]], gz: bool) -> tempfile::NamedTempFile {
    let cfg = config(layers);
    let blob = |b: &[u8]| (format!("blobs/sha256/{}", hex_of(b)), b.to_vec());
    let mut members = vec![blob(&cfg)];
    let mut descs = Vec::new();
    for l in layers {
        let (bytes, media) = if gz {
            (gzip(l), format!("{}+gzip", layout::TAR))
        } else {
            (l.to_vec(), layout::TAR.to_string())
        };
        descs.push(json!({"mediaType": media, "digest": sha256(&bytes), "size": bytes.len()}));
        members.push(blob(&bytes));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    members.push(blob(&manifest));
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    members.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    members.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    tar_of(&members)
}

const L1: &[u8] = b"first layer bytes";
const L2: &[u8] = b"second layer, a little longer";

#[test]
fn reads_and_verifies_docker_save_archives() {
    let f = legacy(&[L1, L2], None);
    let img = ImageArchive::open(f.path(), Some("exp:v1")).unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[1].digest, sha256(L2));
    assert_eq!(img.layers_size(), (L1.len() + L2.len()) as u64);
    assert_eq!(img.repo_tags, ["exp:v1"]);
    let mut seen = 0;
    img.verify(&mut |n| seen = n).unwrap();
    assert_eq!(seen, img.layers_size());
}

#[test]
fn reads_oci_layouts() {
    let f = oci(&[L1, L2]);
    let img = ImageArchive::open(f.path(), None).unwrap();
    assert_eq!(img.layers[0].digest, sha256(L1));
    assert_eq!(img.config_digest, sha256(&config(&[L1, L2])));
    img.verify(&mut |_| {}).unwrap();
}

#[test]
fn a_corrupt_layer_is_refused_naming_it() {
    let f = legacy(&[L1, L2], Some(1));
    let img = ImageArchive::open(f.path(), None).unwrap();
    let e = img.verify(&mut |_| {}).unwrap_err().to_string();
    assert!(e.starts_with("layer 2 of 2 ("), "{e}");
    assert!(e.contains(&sha256(L2)) && e.contains("corrupt"), "{e}");
}

#[test]
fn a_config_not_matching_its_name_is_refused() {
    let cfg = config(&[L1]);
    let wrong = format!("{:064x}.json", 7);
    let manifest = json!([{"Config": wrong, "Layers": ["l/layer.tar"]}]);
    let f = tar_of(&[
        (wrong.clone(), cfg),
        ("l/layer.tar".into(), L1.to_vec()),
        (
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    ]);
    let e = ImageArchive::open(f.path(), None).unwrap_err().to_string();
    assert!(e.contains("the archive is corrupt"), "{e}");
}

#[test]
fn archives_without_a_layout_or_the_wanted_image_say_so() {
    let f = tar_of(&[("hello.txt".into(), b"hi".to_vec())]);
    let e = ImageArchive::open(f.path(), None).unwrap_err().to_string();
    assert!(e.contains("neither manifest.json"), "{e}");
    let cfg = config(&[L1]);
    let m = json!([
        {"Config": "c.json", "RepoTags": ["a:1"], "Layers": ["l"]},
        {"Config": "c.json", "RepoTags": ["b:1"], "Layers": ["l"]}
    ]);
    let f = tar_of(&[
        ("c.json".into(), cfg),
        ("l".into(), L1.to_vec()),
        ("manifest.json".into(), serde_json::to_vec(&m).unwrap()),
    ]);
    let e = ImageArchive::open(f.path(), Some("c:1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("none is tagged c:1") && e.contains("a:1, b:1"),
        "{e}"
    );
    assert_eq!(
        ImageArchive::open(f.path(), Some("b:1"))
            .unwrap()
            .layers
            .len(),
        1
    );
}

#[test]
fn gzip_layers_become_the_tars_their_diff_ids_name() {
    let f = oci_as(&[L1, L2], true);
    let mut img = ImageArchive::open(f.path(), None).unwrap();
    assert_ne!(
        img.layers[0].digest,
        sha256(L1),
        "declared as the gzip blob"
    );
    let dir = tempfile::tempdir().unwrap();
    let kept = img.decompress(dir.path(), &mut |_| {}).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(img.layers[1].digest, sha256(L2));
    assert_eq!(img.layers[1].size, L2.len() as u64);
    assert_eq!(img.layers[1].media_type, layout::TAR);
    img.verify(&mut |_| {}).unwrap();
}

#[test]
fn a_gzip_layer_whose_tar_is_not_its_diff_id_is_refused() {
    // The config names L1's diff_id, the blob holds something else compressed.
    let cfg = config(&[L1]);
    let other = gzip(b"not the first layer");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": format!("{}+gzip", layout::TAR), "digest": sha256(&other), "size": other.len()}],
    }))
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&manifest), "size": manifest.len()}]});
    let f = tar_of(&[
        (format!("blobs/sha256/{}", hex_of(&cfg)), cfg.clone()),
        (format!("blobs/sha256/{}", hex_of(&other)), other.clone()),
        (
            format!("blobs/sha256/{}", hex_of(&manifest)),
            manifest.clone(),
        ),
        ("index.json".into(), serde_json::to_vec(&index).unwrap()),
    ]);
    let mut img = ImageArchive::open(f.path(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = img
        .decompress(dir.path(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("decompresses to") && e.contains(&sha256(L1)),
        "{e}"
    );
}
