//! `slicectl image show`: what a container of the image runs (read from the config the engine
//! wrote), and the live slices pinned to it — by name only to those who may see the slice, and
//! counted but not named only for the image's owner.

use slicebed_proto::v1 as pb;
use slicebed_tests::{Clients, TestNode};
use tonic::Code;

use crate::common::slice_req;
use crate::support::*;

/// A slice of `image` on the mit node, created by `who` with `members`.
async fn slice_of(who: &Clients, name: &str, image: &str, members: &[&str]) {
    let mut req = slice_req(name, 1, 16 << 20);
    req.image = image.into();
    req.members = members.iter().map(|m| m.to_string()).collect();
    who.slices
        .clone()
        .create_slice(req)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["slices"]
        .as_array()
        .unwrap_or_else(|| panic!("no slices in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn show_prints_the_run_config_and_the_slices_each_caller_may_see() {
    let s = Store::start().await;
    let name = fresh("runcfg");
    let tag = format!("{name}:v1");
    let _built = Built::dockerfile(
        &tag,
        &format!(
            "FROM {BASE}\nENV MODE=server GREETING=\"hello world\"\nWORKDIR /srv\n\
             EXPOSE 5201/tcp 53/udp\nRUN echo one > /one\n\
             CMD [\"/bin/sh\", \"-c\", \"echo $GREETING; sleep 3600\"]\n"
        ),
    );
    ok(&s.run(&s.alice, &["image", "push", &tag]));

    let shown = s.json(&s.alice, &["image", "show", &tag]);
    let rc = &shown["run_config"];
    assert_eq!(
        rc["cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo $GREETING; sleep 3600"]),
        "{shown}"
    );
    let env: Vec<&str> = rc["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"MODE=server") && env.contains(&"GREETING=hello world"),
        "{env:?}"
    );
    assert_eq!(rc["working_dir"], "/srv");
    assert_eq!(
        rc["exposed_ports"],
        serde_json::json!(["5201/tcp", "53/udp"])
    );
    assert_eq!(rc["os"], "linux");
    assert_eq!(names(&shown), Vec::<String>::new(), "no slice runs it yet");
    let text = ok(&s.run(&s.alice, &["image", "show", &tag]));
    for want in [
        "Command:",
        "/bin/sh -c 'echo $GREETING; sleep 3600'",
        "MODE=server",
        "Working dir:",
        "5201/tcp, 53/udp",
        "Used by:",
        "no live slice",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }

    // Slices pinned to it: alice's with bob as member, alice's alone, and (once the image is
    // site-visible) bob's own.
    let _node = TestNode::join(&s.svc, "mit", "show-n1", 4000, 4 << 30).await;
    let alice = Clients::new(&s.svc, Some(&s.alice)).await;
    let bob = Clients::new(&s.svc, Some(&s.bob)).await;
    slice_of(&alice, "shared", &tag, &["bob"]).await;
    slice_of(&alice, "solo", &tag, &[]).await;

    let by_alice = s.json(&s.alice, &["image", "show", &tag]);
    assert_eq!(names(&by_alice), ["shared", "solo"], "{by_alice}");
    assert_eq!(by_alice["hidden_slices"], 0);
    // bob reads the private image as a member of `shared`, and sees only that slice; he is
    // not told how many others run it.
    let by_bob = s.json(&s.bob, &["image", "show", &tag]);
    assert_eq!(names(&by_bob), ["shared"], "{by_bob}");
    assert_eq!(by_bob["hidden_slices"], 0, "{by_bob}");
    // carol (another site) cannot read it at all: not found, nothing about its slices.
    let e = s.get(&s.carol, &tag).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    ok(&s.run(&s.alice, &["image", "push", &tag, "--visibility", "site"]));
    slice_of(&bob, "bobs", &tag, &[]).await;
    // The owner sees her two by name and learns that one more she cannot see runs it.
    let by_alice = s.json(&s.alice, &["image", "show", &tag]);
    assert_eq!(names(&by_alice), ["shared", "solo"], "{by_alice}");
    assert_eq!(by_alice["hidden_slices"], 1, "{by_alice}");
    let text = ok(&s.run(&s.alice, &["image", "show", &tag]));
    assert!(
        text.contains("shared, solo, 1 slice you cannot see"),
        "{text}"
    );
    let by_bob = s.json(&s.bob, &["image", "show", &tag]);
    assert_eq!(names(&by_bob), ["bobs", "shared"], "{by_bob}");
    assert_eq!(by_bob["hidden_slices"], 0, "{by_bob}");
    // An admin sees all three.
    let by_admin = s.json(&s.svc.admin_token, &["image", "show", &tag]);
    assert_eq!(names(&by_admin), ["bobs", "shared", "solo"], "{by_admin}");

    // An ended slice no longer counts.
    alice
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest {
            name: "solo".into(),
        })
        .await
        .unwrap();
    let by_alice = s.json(&s.alice, &["image", "show", &tag]);
    assert_eq!(names(&by_alice), ["shared"], "{by_alice}");
}
