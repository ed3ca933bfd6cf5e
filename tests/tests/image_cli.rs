//! `slicectl image` as a researcher uses it, against a real service and the real Docker engine:
//! images built locally with `docker build` FROM the base image (no registry), pushed from the
//! engine or from a `docker save` archive, listed, shown, tagged and removed; a second push
//! sends only the new layer; a push killed with SIGKILL resumes from the store's offset; a
//! corrupt archive is refused before anything is committed; others' images stay theirs.

mod common;
#[path = "image_cli/show.rs"]
mod show;
#[path = "image_cli/site_quota.rs"]
mod site_quota;
#[path = "image_cli/support.rs"]
mod support;

use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_tests::{proxy::Proxy, wait_for};
use support::*;
use tonic::Code;

#[tokio::test]
async fn push_list_show_tag_rm_and_a_second_push_sends_only_the_new_layer() {
    let s = Store::start().await;
    let name = fresh("exp");
    let v1 = Built::new(
        &format!("{name}:v1"),
        BASE,
        &["echo one > /one", "echo two > /two"],
    );
    let p = s.json(&s.alice, &["image", "push", &v1.tag]);
    assert_eq!(p["name"], name.as_str());
    assert_eq!(p["tag"], "v1");
    assert_eq!(p["layers"], 3, "{p}");
    assert_eq!(
        p["layers_uploaded"].as_u64().unwrap() + p["layers_skipped"].as_u64().unwrap(),
        3,
        "{p}"
    );
    let digest = p["digest"].as_str().unwrap().to_string();
    let stored = s.get(&s.alice, &v1.tag).await.expect("the pushed image");
    assert_eq!(stored.digest, digest);
    assert_eq!(stored.owner, "alice");
    let stored_layers: Vec<String> = stored.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(
        stored_layers,
        v1.layers(),
        "the store holds the engine's layers"
    );

    // A second image on top of the first: only its own layer (and config) travel.
    let v2 = Built::new(&format!("{name}:v2"), &v1.tag, &["echo three > /three"]);
    let p2 = s.json(&s.alice, &["image", "push", &v2.tag]);
    assert_eq!(
        (p2["layers"].as_u64(), p2["layers_skipped"].as_u64()),
        (Some(4), Some(3)),
        "{p2}"
    );
    assert_eq!(p2["layers_uploaded"], 1);
    let v2_stored = s.get(&s.alice, &v2.tag).await.unwrap();
    let new_layer = v2_stored.layers.last().unwrap().size;
    let config = v2_stored.size - v2_stored.layers.iter().map(|l| l.size).sum::<u64>();
    assert!(
        p2["bytes_sent"].as_u64().unwrap() <= new_layer + config,
        "sent {} bytes, the new layer and config are {new_layer} + at most {config}",
        p2["bytes_sent"]
    );
    let text = ok(&s.run(&s.alice, &["image", "push", &v2.tag]));
    // The store's own record: each layer was stored by exactly one upload, over three pushes.
    let admin = slicebed_tests::Clients::admin(&s.svc).await;
    for layer in &v2_stored.layers {
        let stored_by = common::events(&admin, &format!("blob/{}", layer.digest))
            .await
            .into_iter()
            .filter(|e| e.action == "image.push")
            .count();
        assert_eq!(stored_by, 1, "uploads of layer {}", layer.digest);
    }
    assert!(
        text.contains("4 of 4 layers already in the store"),
        "{text}"
    );
    assert!(text.contains(&v2_stored.digest), "{text}");

    let table = ok(&s.run(&s.alice, &["image", "list"]));
    let header = table.lines().next().unwrap();
    for col in [
        "NAME",
        "TAG",
        "DIGEST",
        "SIZE",
        "OWNER",
        "VISIBILITY",
        "CREATED",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with(&name) && l.contains(" v1 "))
        .unwrap_or_else(|| panic!("no row for {name}:v1 in\n{table}"));
    assert!(
        row.contains(&digest[..19]) && row.contains("alice") && row.contains("private"),
        "{row}"
    );
    let list = s.json(&s.alice, &["image", "list", &name]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    let shown = s.json(&s.alice, &["image", "show", &v1.tag]);
    assert_eq!(shown["digest"], digest.as_str());
    assert_eq!(shown["layers"].as_array().unwrap().len(), 3);
    let by_digest = ok(&s.run(&s.alice, &["image", "show", &format!("{name}@{digest}")]));
    assert!(
        by_digest.contains("LAYER") && by_digest.contains(&stored_layers[2]),
        "{by_digest}"
    );

    ok(&s.run(
        &s.alice,
        &["image", "tag", &v1.tag, &format!("{name}:stable")],
    ));
    assert_eq!(
        s.get(&s.alice, &format!("{name}:stable"))
            .await
            .unwrap()
            .digest,
        digest
    );
    ok(&s.run(&s.alice, &["image", "rm", &format!("{name}:stable")]));
    let gone = one_line_error(&s.run(&s.alice, &["image", "show", &format!("{name}:stable")]));
    assert!(gone.contains("not found"), "{gone}");
    assert_eq!(
        s.get(&s.alice, &v1.tag).await.unwrap().digest,
        digest,
        "v1 stays"
    );

    // The project's base image is in the store from the start, for everyone.
    let base = s.json(&s.alice, &["image", "show", BASE]);
    assert_eq!(
        (base["owner"].as_str(), base["visibility"].as_str()),
        (Some("system"), Some("public")),
        "{base}"
    );

    let bad = one_line_error(&s.run(&s.alice, &["image", "push", "Exp:v1"]));
    assert!(
        bad.contains("\"Exp\"") && bad.contains("lowercase"),
        "{bad}"
    );
}

#[tokio::test]
async fn a_docker_save_archive_pushes_the_same_digest_and_a_corrupt_one_is_refused() {
    let s = Store::start().await;
    let name = fresh("arch");
    let img = Built::new(
        &format!("{name}:v1"),
        BASE,
        &["echo $((6*7))xyzzy > /a", "mkdir /d && echo x > /d/x"],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = img.save(dir.path());
    let from_file = s.json(
        &s.alice,
        &[
            "image",
            "push",
            &format!("{name}:file"),
            "--file",
            &archive.display().to_string(),
        ],
    );
    let from_engine = s.json(&s.alice, &["image", "push", &img.tag]);
    assert_eq!(
        from_file["digest"], from_engine["digest"],
        "the same image has one digest"
    );
    assert_eq!(from_engine["layers_skipped"], 3, "{from_engine}");

    // One bit flipped inside a layer's file content ("42xyzzy"; the config holds only the command).
    let mut bytes = std::fs::read(&archive).unwrap();
    let marker = bytes
        .windows(8)
        .rposition(|w| w == b"42xyzzy\n")
        .expect("the file's content");
    bytes[marker] ^= 0x20;
    let corrupt = dir.path().join("corrupt.tar");
    std::fs::write(&corrupt, bytes).unwrap();
    let reference = format!("{name}:corrupt");
    let err = one_line_error(&s.run(
        &s.alice,
        &[
            "image",
            "push",
            &reference,
            "--file",
            &corrupt.display().to_string(),
        ],
    ));
    assert!(err.contains("corrupt") && err.contains("layer"), "{err}");
    let status = s.get(&s.alice, &reference).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing was committed");
}

#[tokio::test]
async fn a_push_killed_midway_resumes_from_the_stores_offset() {
    let s = Store::start().await;
    let name = fresh("big");
    let img = Built::new(
        &format!("{name}:v1"),
        BASE,
        &["head -c 50331648 /dev/urandom > /big"],
    );
    let big = img.layers().last().unwrap().clone();
    let mut child = s
        .command(
            &s.alice,
            &[
                "-o",
                "json",
                "image",
                "push",
                &img.tag,
                "--limit-rate",
                "8M",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start slicectl");
    let held = wait_for(
        "part of the big layer in the store",
        Duration::from_secs(60),
        || async { s.partial(&s.alice, &big).await.filter(|n| *n >= 4 << 20) },
    )
    .await;
    child.kill().expect("SIGKILL slicectl");
    child.wait().unwrap();
    let after = s.partial(&s.alice, &big).await.expect("still partial");
    assert!(after >= held, "the store kept {after} bytes, had {held}");

    let p = s.json(&s.alice, &["image", "push", &img.tag]);
    let resumed = p["bytes_resumed"].as_u64().unwrap();
    let sent = p["bytes_sent"].as_u64().unwrap();
    assert!(
        resumed >= held,
        "resumed {resumed}, the store held {held}: {p}"
    );
    let stored = s.get(&s.alice, &img.tag).await.unwrap();
    assert!(stored.layers.iter().any(|l| l.digest == big), "{stored:?}");
    assert!(
        sent + held <= stored.size,
        "sent {sent} bytes although the store held {held} of {}: {p}",
        stored.size
    );
}

#[tokio::test]
async fn others_cannot_see_or_remove_a_private_image_and_cannot_remove_a_site_one() {
    let s = Store::start().await;
    let name = fresh("mine");
    let img = Built::new(&format!("{name}:v1"), BASE, &["echo secret > /s"]);
    ok(&s.run(&s.alice, &["image", "push", &img.tag]));
    for who in [&s.bob, &s.carol] {
        let e = one_line_error(&s.run(who, &["image", "show", &img.tag]));
        assert!(e.contains("not found"), "{e}");
        let e = one_line_error(&s.run(who, &["image", "rm", &img.tag]));
        assert!(e.contains("not found"), "{e}");
        let listed = s.json(who, &["image", "list"]);
        assert!(!listed.to_string().contains(&name), "{listed}");
    }
    // Shared with the site: bob (mit) sees it, may not remove it; carol (eth) still cannot see it.
    ok(&s.run(
        &s.alice,
        &["image", "push", &img.tag, "--visibility", "site"],
    ));
    assert_eq!(
        s.get(&s.bob, &img.tag).await.unwrap().visibility,
        pb::ImageVisibility::Site as i32
    );
    let e = one_line_error(&s.run(&s.bob, &["image", "rm", &img.tag]));
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(
        s.get(&s.carol, &img.tag).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(
        s.get(&s.alice, &img.tag).await.is_ok(),
        "alice's image survives"
    );
}

#[tokio::test]
async fn a_push_cut_off_by_the_network_fails_in_one_line_and_the_next_resumes() {
    let s = Store::start().await;
    let name = fresh("cut");
    let img = Built::new(
        &format!("{name}:v1"),
        BASE,
        &["head -c 33554432 /dev/urandom > /big"],
    );
    let big = img.layers().last().unwrap().clone();
    let proxy = Proxy::start(&s.svc.addr).await;
    let via = format!(
        "https://localhost:{}",
        proxy.addr.rsplit_once(':').unwrap().1
    );
    let push = ["-o", "json", "image", "push", img.tag.as_str()];
    let mut slow = push.to_vec();
    slow.extend(["--limit-rate", "8M"]);
    let child = s
        .command_via(&via, &s.alice, &slow)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start slicectl");
    let held = wait_for(
        "part of the big layer in the store",
        Duration::from_secs(60),
        || async { s.partial(&s.alice, &big).await.filter(|n| *n >= 4 << 20) },
    )
    .await;
    proxy.cut();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("cannot upload blob") && err.contains(&big),
        "{err}"
    );

    proxy.heal();
    // Off the runtime's thread: the proxy forwards on it.
    let mut again = s.command_via(&via, &s.alice, &push);
    let out = tokio::task::spawn_blocking(move || again.output())
        .await
        .unwrap()
        .unwrap();
    let p = parse(&ok(&out));
    let resumed = p["bytes_resumed"].as_u64().unwrap();
    assert!(
        resumed >= held,
        "resumed {resumed}, the store held {held}: {p}"
    );
    assert_eq!(
        s.get(&s.alice, &img.tag).await.unwrap().digest,
        p["digest"].as_str().unwrap()
    );
}
