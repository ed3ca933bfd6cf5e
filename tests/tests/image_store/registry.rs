//! The read-only OCI Distribution API (`--registry-listen`) with the real Docker engine as the
//! client (Docker lets 127.0.0.0/8 registries speak plain HTTP), and over raw HTTP for the
//! refusals: anonymous callers get public images only, other users get 404 for a private one.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use slicebed_image::Digest;
use slicebed_tests::Service;

use super::push::*;

/// One HTTP/1.1 request; (status, lower-cased headers, body).
pub(super) fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the registry");
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(super) fn docker(
    config: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String) {
    let mut c = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run docker");
    if let Some(text) = stdin {
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A layer holding one file.
pub(super) fn layer_with(path: &str, text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, path, text.as_bytes()).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pulls_and_runs_images_from_the_registry_api() {
    let svc = Service::start_with("[registry]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = std::fs::read_to_string(svc.dir.join("registry.addr")).expect("registry.addr");
    let admin = slicebed_tests::Clients::admin(&svc).await;
    super::make_site(&admin, "mit").await;
    let alice_tok = super::make_user(&admin, "alice", "mit").await;
    let bob_tok = super::make_user(&admin, "bob", "mit").await;
    let mut alice = images(&svc, &alice_tok).await;
    let base = alice
        .get_image(slicebed_proto::v1::GetImageRequest {
            reference: "slicebed/base:latest".into(),
        })
        .await
        .expect("the base image is in the store")
        .into_inner();

    // The base image's layer, anonymously (public), verified against its digest.
    let layer = &base.layers[0].digest;
    let (st, h, base_layer) = http(
        &addr,
        "GET",
        &format!("/v2/slicebed/base/blobs/{layer}"),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(header(&h, "docker-content-digest"), Some(layer.as_str()));
    assert_eq!(&Digest::of(&base_layer).to_string(), layer);

    // alice's private image: the base layer plus one of her own.
    let hello = layer_with("hello.txt", "hi from the slicebed store\n");
    let pushed = push_image(
        &mut alice,
        "alice/hello:v1",
        &[&base_layer, &hello],
        "hello",
    )
    .await
    .expect("push");
    assert_eq!(
        pushed.sent.len(),
        2,
        "only her layer and config travel: {:?}",
        pushed.sent
    );
    let path = "/v2/alice/hello/manifests/v1";
    let (st, h, _) = http(&addr, "GET", path, None);
    assert_eq!(st, 401, "anonymous");
    assert!(
        header(&h, "www-authenticate").is_some_and(|v| v.starts_with("Bearer realm=")),
        "{h:?}"
    );
    // The token endpoint: a bad credential is refused, none gets the anonymous token.
    assert_eq!(http(&addr, "GET", "/token", Some("sbu_nonsense")).0, 401);
    let (st, _, body) = http(&addr, "GET", "/token", None);
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("anonymous"));
    assert_eq!(
        http(&addr, "GET", path, Some(&bob_tok)).0,
        404,
        "another user"
    );
    let (st, h, body) = http(&addr, "GET", path, Some(&alice_tok));
    assert_eq!(st, 200);
    assert_eq!(
        header(&h, "content-type"),
        Some(slicebed_image::MANIFEST_MEDIA_TYPE)
    );
    assert_eq!(
        header(&h, "docker-content-digest"),
        Some(pushed.digest.as_str())
    );
    assert_eq!(Digest::of(&body).to_string(), pushed.digest);
    let (st, h, body) = http(
        &addr,
        "HEAD",
        &format!("/v2/alice/hello/manifests/{}", pushed.digest),
        Some(&alice_tok),
    );
    assert_eq!((st, body.len()), (200, 0));
    assert_eq!(
        header(&h, "content-length"),
        Some(pushed.manifest_len.to_string().as_str())
    );
    let hello_d = Digest::of(&hello).to_string();
    assert_eq!(
        http(
            &addr,
            "GET",
            &format!("/v2/alice/hello/blobs/{hello_d}"),
            Some(&alice_tok)
        )
        .2,
        hello
    );
    // A blob is read through an image that holds it, never through another repository.
    assert_eq!(
        http(
            &addr,
            "GET",
            &format!("/v2/slicebed/base/blobs/{hello_d}"),
            Some(&alice_tok)
        )
        .0,
        404
    );
    assert_eq!(
        http(
            &addr,
            "PUT",
            "/v2/alice/hello/manifests/v2",
            Some(&alice_tok)
        )
        .0,
        405,
        "read-only"
    );

    // The real engine: the public base image anonymously, by digest, then run.
    let cfg = tempfile::tempdir().unwrap();
    let base_ref = format!("{addr}/slicebed/base@{}", base.digest);
    let (ok, out) = docker(cfg.path(), &["pull", &base_ref], None);
    assert!(ok, "docker pull {base_ref}: {out}");
    let (ok, out) = docker(
        cfg.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &base_ref,
            "/bin/sh",
            "-c",
            "echo pulled-by-digest",
        ],
        None,
    );
    assert!(ok && out.contains("pulled-by-digest"), "docker run: {out}");
    // alice's private image with her token (docker login stores it in a private config dir).
    let (ok, out) = docker(
        cfg.path(),
        &["pull", &format!("{addr}/alice/hello:v1")],
        None,
    );
    assert!(!ok, "a private image without credentials: {out}");
    let (ok, out) = docker(
        cfg.path(),
        &["login", &addr, "-u", "alice", "--password-stdin"],
        Some(&alice_tok),
    );
    assert!(ok, "docker login: {out}");
    let hello_ref = format!("{addr}/alice/hello@{}", pushed.digest);
    let (ok, out) = docker(cfg.path(), &["pull", &hello_ref], None);
    assert!(ok, "docker pull {hello_ref}: {out}");
    let (ok, out) = docker(
        cfg.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &hello_ref,
            "/bin/cat",
            "/hello.txt",
        ],
        None,
    );
    assert!(
        ok && out.contains("hi from the slicebed store"),
        "docker run: {out}"
    );
    for r in [&base_ref, &hello_ref] {
        let _ = docker(cfg.path(), &["rmi", "-f", r], None);
    }
}
