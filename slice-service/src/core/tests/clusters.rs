//! Cluster agents in the core: one cluster certificate speaks for the members it names, each
//! created on its first Hello in the cluster's site; never for a plain node, another cluster's
//! member, or anything once the cluster is revoked; and a node certificate never speaks for a
//! member. Cordons in the cluster and drains in Slicebed meet in the member's admin state.

use super::*;
use crate::error::Error;
use crate::model::AdminState;
use crate::pki::{IssuedCert, PeerCert};

fn cert(serial: &str) -> IssuedCert {
    IssuedCert {
        pem: String::new(),
        serial: serial.into(),
        issued_at: 0,
        expires_at: i64::MAX,
    }
}

fn cluster_peer(cluster: &str, serial: &str) -> PeerCert {
    PeerCert {
        node: cluster.into(),
        cluster: true,
        serial: serial.into(),
        expires_at: i64::MAX,
    }
}

fn node_peer(node: &str, serial: &str) -> PeerCert {
    PeerCert {
        cluster: false,
        ..cluster_peer(node, serial)
    }
}

/// Enrolls cluster `name` into `site` with certificate serial `serial`.
async fn enroll(bed: &TestBed, name: &str, site: &str, serial: &str) -> Result<(), Error> {
    let (_, token) = bed
        .core
        .create_enrollment_token(&bed.admin, site, None)
        .await
        .unwrap();
    let p = Principal::Enroll {
        token_id: token.id,
        site: site.into(),
    };
    bed.core
        .enroll_cluster(&p, name, (30_000, 30_099), |_| Ok(cert(serial)))
        .await
        .map(|_| ())
}

/// Member `member` of cluster `cluster` says Hello (as the control handler does).
async fn join(bed: &mut TestBed, cluster: &str, serial: &str, member: &str) -> String {
    let who = bed
        .core
        .speaker(&cluster_peer(cluster, serial), Some(member))
        .await
        .unwrap();
    assert_eq!(who.cluster.as_deref(), Some(cluster));
    let mut h = hello(&who.node, 4000, 8 << 30);
    (h.port_first, h.port_last) = (30_000, 30_099);
    h.labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    if who.existing.is_none() {
        bed.core
            .member_joined(cluster, &who.node, h.clone())
            .await
            .unwrap();
    }
    bed.listen(&who.node);
    bed.core
        .node_connected(&who.node, h, Vec::new(), None)
        .await
        .unwrap();
    who.node
}

#[tokio::test]
async fn a_member_is_created_on_its_first_hello_in_the_clusters_site() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    let name = join(&mut bed, "lab", "c1", "worker-1.internal").await;
    assert_eq!(name, "lab-worker-1-internal");
    let v = bed.core.get_node(&bed.admin, &name).await.unwrap();
    assert_eq!(v.node.site, "mit");
    assert_eq!(v.node.cluster.as_deref(), Some("lab"));
    assert_eq!((v.node.port_first, v.node.port_last), (30_000, 30_099));
    assert_eq!(v.node.labels.get("zone").map(String::as_str), Some("a"));
    assert!(!v.cluster_revoked);
    // Known from now on: a second Hello finds it.
    let again = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some("worker-1.internal"))
        .await
        .unwrap();
    assert!(again.existing.is_some());
    let evs = bed.object_events(&format!("node/{name}")).await;
    assert!(evs
        .iter()
        .any(|e| e.action == "joined" && e.actor == "cluster/lab"));
    // Slivers are placed on it like on any node.
    let alice = bed.user("alice", "mit").await;
    bed.core.create_slice(&alice, spec("s1", 1)).await.unwrap();
    assert_eq!(bed.slivers("s1").await[0].node, name);
}

#[tokio::test]
async fn a_cluster_never_speaks_for_a_plain_node_or_another_clusters_member() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    enroll(&bed, "lab-b", "mit", "c2").await.unwrap();
    // lab-b's member "x" is node lab-b-x, which cluster lab would reach as member "b-x".
    join(&mut bed, "lab-b", "c2", "x").await;
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some("b-x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Denied(m) if m.contains("belongs to cluster lab-b")),
        "{e}"
    );
    // A plain node of the same name form is no member either.
    bed.node("lab-w9", "mit", 1000, 1 << 30).await;
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some("w9"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Denied(m) if m.contains("belongs to no cluster")),
        "{e}"
    );
    // A cluster certificate names a member or nothing; a bad name is refused, naming it.
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(m) if m.contains("x-slicebed-member")),
        "{e}"
    );
    let long = "w".repeat(60);
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some(&long))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(m) if m.contains("DNS label")),
        "{e}"
    );
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some("Worker_1"))
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Invalid(_)), "{e}");
}

#[tokio::test]
async fn node_and_cluster_certificates_are_never_taken_for_each_other() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    let member = join(&mut bed, "lab", "c1", "w1").await;
    bed.node("n1", "mit", 1000, 1 << 30).await;
    // A node's certificate naming a member is refused.
    let any_node_serial = "ffff";
    let e = bed
        .core
        .speaker(&node_peer("n1", any_node_serial), Some("w1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Denied(m) if m.contains("cluster certificate")),
        "{e}"
    );
    // The cluster's serial read as a node certificate (of the member, or of the cluster's
    // name) is not a node's.
    for name in [member.as_str(), "lab"] {
        let e = bed
            .core
            .speaker(&node_peer(name, "c1"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
    }
    // A serial the service never issued to the cluster is refused.
    let e = bed
        .core
        .speaker(&cluster_peer("lab", "c9"), Some("w1"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
    // A node cannot enroll under a member's name (it would take the member over).
    let (_, token) = bed
        .core
        .create_enrollment_token(&bed.admin, "mit", None)
        .await
        .unwrap();
    let p = Principal::Enroll {
        token_id: token.id,
        site: "mit".into(),
    };
    let e = bed
        .core
        .enroll(&p, hello(&member, 1000, 1 << 30), |_| Ok(cert("n9")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    // Nor may a cluster enroll twice, or with a name too long for its members.
    assert!(matches!(
        enroll(&bed, "lab", "mit", "c3").await.unwrap_err(),
        Error::AlreadyExists { .. }
    ));
    let e = enroll(&bed, &"k".repeat(31), "mit", "c4")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(m) if m.contains("at most 30")),
        "{e}"
    );
}

#[tokio::test]
async fn a_revoked_cluster_cuts_off_every_member_and_shows_in_the_node_list() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await.site("eth").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    let w1 = join(&mut bed, "lab", "c1", "w1").await;
    let w2 = join(&mut bed, "lab", "c1", "w2").await;
    let renewed = bed
        .core
        .renew_cluster_cert("lab", |_| Ok(cert("c2")))
        .await
        .unwrap();
    assert!(bed
        .core
        .speaker(&cluster_peer("lab", &renewed.serial), Some("w1"))
        .await
        .is_ok());
    // A PI of another site may not revoke it.
    let (pi, _, _) = bed
        .core
        .create_user(
            &bed.admin,
            "pi",
            crate::model::Role::Pi,
            Some("eth".into()),
            None,
        )
        .await
        .unwrap();
    let e = bed
        .core
        .revoke_cluster(&Principal::User(pi), "lab")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied(_)), "{e}");

    let members = bed.core.revoke_cluster(&bed.admin, "lab").await.unwrap();
    let names: Vec<&str> = members.iter().map(|v| v.node.name.as_str()).collect();
    assert_eq!(names, [w1.as_str(), w2.as_str()]);
    for serial in ["c1", "c2"] {
        for m in ["w1", "w2", "w3"] {
            let e = bed
                .core
                .speaker(&cluster_peer("lab", serial), Some(m))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, Error::Unauthenticated(m) if m.contains("revoked")),
                "{e}"
            );
        }
    }
    let e = bed
        .core
        .renew_cluster_cert("lab", |_| Ok(cert("c3")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
    let list = bed.core.list_nodes(&bed.admin, None).await.unwrap();
    for v in list.iter().filter(|v| v.node.cluster.is_some()) {
        assert!(
            v.cluster_revoked,
            "{} shows its cluster revoked",
            v.node.name
        );
        assert!(
            !bed.core.hub.is_connected(&v.node.name),
            "{} cut off",
            v.node.name
        );
    }
    // It may enroll again with a new token, and its members come back as they were.
    enroll(&bed, "lab", "mit", "c4").await.unwrap();
    let who = bed
        .core
        .speaker(&cluster_peer("lab", "c4"), Some("w1"))
        .await
        .unwrap();
    assert_eq!(who.existing.map(|n| n.name), Some(w1));
}

#[tokio::test]
async fn a_cordon_in_the_cluster_and_a_drain_in_slicebed_meet_in_the_admin_state() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    let w1 = join(&mut bed, "lab", "c1", "w1").await;
    let alice = bed.user("alice", "mit").await;

    // Cordoned in Kubernetes: disabled here, and no new slivers go there.
    let s = bed.core.member_cordoned("lab", &w1, true).await.unwrap();
    assert_eq!(s, AdminState::Disabled);
    let e = bed
        .core
        .create_slice(&alice, spec("s1", 1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exhausted(_)), "{e}");
    let evs = bed.object_events(&format!("node/{w1}")).await;
    assert!(evs.iter().any(|e| e.action == "cordoned in the cluster"));
    // Uncordoned: active again.
    let s = bed.core.member_cordoned("lab", &w1, false).await.unwrap();
    assert_eq!(s, AdminState::Active);
    bed.core.create_slice(&alice, spec("s1", 1)).await.unwrap();

    // A drain here asks the agent to cordon; the cordon it then reports changes nothing.
    bed.sent(&w1);
    bed.core
        .set_node_admin(&bed.admin, &w1, AdminState::Draining, None)
        .await
        .unwrap();
    assert_eq!(bed.sent(&w1), vec![Sent::Cordon(true)]);
    let s = bed.core.member_cordoned("lab", &w1, true).await.unwrap();
    assert_eq!(s, AdminState::Draining);
    bed.core
        .set_node_admin(&bed.admin, &w1, AdminState::Active, None)
        .await
        .unwrap();
    assert!(bed.sent(&w1).contains(&Sent::Cordon(false)));
}

#[tokio::test]
async fn a_member_that_leaves_is_removed_when_empty_and_kept_with_its_slivers() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    enroll(&bed, "lab", "mit", "c1").await.unwrap();
    let w1 = join(&mut bed, "lab", "c1", "w1").await;
    let w2 = join(&mut bed, "lab", "c1", "w2").await;
    let alice = bed.user("alice", "mit").await;
    let one = spec("s1", 1);
    bed.core
        .set_node_admin(&bed.admin, &w2, AdminState::Disabled, None)
        .await
        .unwrap();
    // w2 disabled: the sliver goes to w1.
    bed.core.create_slice(&alice, one).await.unwrap();
    assert_eq!(bed.slivers("s1").await[0].node, w1);

    // w1 holds a live sliver: it stays, and says why.
    assert!(!bed.core.member_left("lab", &w1).await.unwrap());
    assert!(bed.core.get_node(&bed.admin, &w1).await.is_ok());
    let evs = bed.object_events(&format!("node/{w1}")).await;
    assert!(evs
        .iter()
        .any(|e| e.action == "left the cluster" && e.detail.contains("1 live sliver")));
    // w2 holds none: it is removed, and a later Hello makes it anew.
    assert!(bed.core.member_left("lab", &w2).await.unwrap());
    let e = bed.core.get_node(&bed.admin, &w2).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let who = bed
        .core
        .speaker(&cluster_peer("lab", "c1"), Some("w2"))
        .await
        .unwrap();
    assert!(who.existing.is_none());
}
