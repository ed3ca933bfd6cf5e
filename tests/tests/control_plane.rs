//! Control-plane behaviour over real gRPC against a real slice-service process and a real
//! database (SQLite, or PostgreSQL when SLICEBED_TEST_POSTGRES is set). Nodes here speak the
//! real node API but are driven by the test (no containers).

use std::time::Duration;

use slicebed_proto::v1 as pb;
use slicebed_tests::{wait_for, Clients, Service, TestNode};

mod common;
use common::*;
use tonic::Code;

#[tokio::test]
async fn fresh_testbed_explains_no_capacity() {
    let svc = Service::start().await;
    let meta = std::fs::metadata(svc.dir.join("admin.token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin.token must be private"
    );
    let log = std::fs::read_to_string(svc.log_path()).unwrap();
    assert!(
        log.contains("admin.token") && !log.contains(&svc.admin_token),
        "log names the path, never the token"
    );

    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = make_user(&a, "alice", "mit").await;
    let enroll = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enroll.token.starts_with("sbe_"));

    let alice = Clients::new(&svc, Some(&tok)).await;
    let err = alice
        .slices
        .clone()
        .create_slice(slice_req("exp1", 2, 256 * MI))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("no nodes"), "{}", err.message());
}

#[tokio::test]
async fn crud_of_every_object() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut admin = a.admin.clone();
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    assert_eq!(
        admin.create_site(site("mit")).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let sites = admin
        .list_sites(pb::ListSitesRequest {})
        .await
        .unwrap()
        .into_inner()
        .sites;
    assert_eq!(
        sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["eth", "mit"]
    );
    let got = admin
        .get_site(pb::GetSiteRequest { name: "mit".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.display_name, "Site mit");

    // Users and tokens.
    let tok = make_user(&a, "alice", "mit").await;
    let users = admin
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(users.iter().any(|u| u.name == "alice" && u.site == "mit"));
    let alice = Clients::new(&svc, Some(&tok)).await;
    let second = alice
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            user: String::new(),
            ttl: None,
            description: "laptop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let listed = alice
        .admin
        .clone()
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 2);
    let alice2 = Clients::new(&svc, Some(&second.token)).await;
    alice2
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap();
    alice
        .admin
        .clone()
        .revoke_token(pb::RevokeTokenRequest {
            id: second.info.unwrap().id,
        })
        .await
        .unwrap();
    let e = alice2
        .slices
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"));

    // Nodes.
    let node = TestNode::join(&svc, "mit", "n1", 2000, 4 * GI).await;
    wait_ready(&a, 1).await;
    let n = admin
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.site, "mit");
    assert_eq!(n.capacity.unwrap().cpu_millis, 2000);
    let drained = admin
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            deadline: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drained.state, pb::NodeState::Draining as i32);
    let e = alice
        .slices
        .clone()
        .create_slice(slice_req("s0", 1, 64 * MI))
        .await
        .unwrap_err();
    assert!(e.message().contains("draining"), "{}", e.message());
    admin
        .enable_node(pb::EnableNodeRequest { name: "n1".into() })
        .await
        .unwrap();

    // Slices.
    let mut s = alice.slices.clone();
    let created = s
        .create_slice(slice_req("s1", 2, 64 * MI))
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    assert_eq!(created.slivers.len(), 2);
    assert_eq!(created.owner, "alice");
    let got = s
        .get_slice(pb::GetSliceRequest { name: "s1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.slivers.iter().map(|v| v.state).collect::<Vec<_>>(),
        vec![pb::SliverState::Pending as i32; 2]
    );
    let listed = s
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices;
    assert_eq!(listed.len(), 1);
    let renewed = s
        .renew_slice(pb::RenewSliceRequest {
            name: "s1".into(),
            duration: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(renewed.note.is_empty());
    let e = admin
        .delete_node(pb::DeleteNodeRequest { name: "n1".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    s.delete_slice(pb::DeleteSliceRequest { name: "s1".into() })
        .await
        .unwrap();
    assert!(s
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices
        .is_empty());
    let ended = s
        .get_slice(pb::GetSliceRequest { name: "s1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.state, pb::SliceState::Deleted as i32);
    assert!(ended
        .slivers
        .iter()
        .all(|v| v.state == pb::SliverState::Stopping as i32));

    // The event log saw every step of the slice.
    let ev = s
        .list_events(pb::ListEventsRequest {
            object: "slice/s1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = ev.iter().map(|e| e.action.as_str()).collect();
    for want in ["placed", "created", "renewed", "state stopping", "deleted"] {
        assert!(actions.contains(&want), "missing {want} in {actions:?}");
    }

    // The node confirms removal; then the node and the site can go.
    for v in &ended.slivers {
        node.report(&v.id, pb::SliverState::Deleted, "").await;
    }
    wait_for("slivers deleted", Duration::from_secs(5), || {
        let mut s = s.clone();
        async move {
            let sl = s
                .get_slice(pb::GetSliceRequest { name: "s1".into() })
                .await
                .ok()?
                .into_inner();
            sl.slivers
                .iter()
                .all(|v| v.state == pb::SliverState::Deleted as i32)
                .then_some(())
        }
    })
    .await;
    admin
        .delete_node(pb::DeleteNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    let e = TestNode::connect_once(&svc, "n1", &node.credential, 2000, 2 * GI)
        .await
        .err()
        .expect("a deleted node's certificate opens nothing");
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "deleted node's certificate is dead: {e}"
    );
    admin
        .delete_site(pb::DeleteSiteRequest { name: "eth".into() })
        .await
        .unwrap();
    let e = admin
        .delete_site(pb::DeleteSiteRequest { name: "mit".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "mit still has alice");
    assert_eq!(
        admin
            .get_site(pb::GetSiteRequest { name: "eth".into() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn validation_errors_name_the_problem_and_store_nothing() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    let mut admin = a.admin.clone();
    make_site(&a, "mit").await;
    let mut bad = site("Bad_Name");
    let e = admin.create_site(bad.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("Bad_Name"));
    bad.site.as_mut().unwrap().name = "ok".into();
    bad.site.as_mut().unwrap().latitude = 123.0;
    assert!(admin
        .create_site(bad)
        .await
        .unwrap_err()
        .message()
        .contains("latitude"));
    assert_eq!(
        admin
            .list_sites(pb::ListSitesRequest {})
            .await
            .unwrap()
            .into_inner()
            .sites
            .len(),
        1
    );

    let _node = TestNode::join(&svc, "mit", "n1", 2000, 4 * GI).await;
    wait_ready(&a, 1).await;
    let mut s = a.slices.clone();
    let cases: Vec<(pb::CreateSliceRequest, &str)> = vec![
        (
            {
                let mut r = slice_req("UPPER", 1, 64 * MI);
                r.name = "UPPER".into();
                r
            },
            "slice name",
        ),
        (
            {
                let mut r = slice_req("neg", 1, 64 * MI);
                r.resources.as_mut().unwrap().cpu_millis = -5;
                r
            },
            "cpu",
        ),
        (
            {
                let mut r = slice_req("huge", 1, 64 * MI);
                r.resources.as_mut().unwrap().memory_bytes = 1 << 60;
                r
            },
            "memory",
        ),
        (
            {
                let mut r = slice_req("zero", 0, 64 * MI);
                r.placement.as_mut().unwrap().slivers = 0;
                r
            },
            "placement",
        ),
        (
            {
                let mut r = slice_req("where", 1, 64 * MI);
                r.placement.as_mut().unwrap().sites = vec!["atlantis".into()];
                r
            },
            "atlantis",
        ),
        (
            {
                let mut r = slice_req("long", 1, 64 * MI);
                r.lease = Some(prost_types::Duration {
                    seconds: 60 * 86_400,
                    nanos: 0,
                });
                r
            },
            "maximum",
        ),
        (
            {
                let mut r = slice_req("env", 1, 64 * MI);
                r.env.insert("1BAD".into(), "x".into());
                r
            },
            "env",
        ),
        (
            {
                let mut r = slice_req("img", 1, 64 * MI);
                r.image = "has space".into();
                r
            },
            "image",
        ),
    ];
    for (req, needle) in cases {
        let e = s.create_slice(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{needle}: {}", e.message());
        assert!(
            e.message().contains(needle),
            "{:?} should mention {needle}",
            e.message()
        );
    }
    assert!(s
        .list_slices(pb::ListSlicesRequest {
            include_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .slices
        .is_empty());
    let n = admin
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.slivers, 0, "nothing half-written");
}

#[tokio::test]
async fn unknown_config_keys_stop_the_service_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[lease]\ndefault_days = 3\n").unwrap();
    let out = std::process::Command::new(slicebed_tests::bin("slice-service"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("default_days"), "{err}");
}

#[tokio::test]
async fn authorization_matrix() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    make_site(&a, "eth").await;
    let alice = Clients::new(&svc, Some(&make_user(&a, "alice", "mit").await)).await;
    let bob = Clients::new(&svc, Some(&make_user(&a, "bob", "mit").await)).await;
    let pat = Clients::new(
        &svc,
        Some(&make_user_as(&a, "pat", pb::Role::Pi, "mit").await),
    )
    .await;
    let quinn = Clients::new(
        &svc,
        Some(&make_user_as(&a, "quinn", pb::Role::Pi, "eth").await),
    )
    .await;
    let node = TestNode::join(&svc, "mit", "n1", 4000, 8 * GI).await;
    let _n2 = TestNode::join(&svc, "eth", "n2", 4000, 8 * GI).await;
    wait_ready(&a, 2).await;

    alice
        .slices
        .clone()
        .create_slice(slice_req("alices", 1, 64 * MI))
        .await
        .unwrap();

    // User B cannot see, renew or delete A's slice; the answer does not reveal it exists.
    let mut b = bob.slices.clone();
    assert_eq!(
        b.get_slice(pb::GetSliceRequest {
            name: "alices".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        b.renew_slice(pb::RenewSliceRequest {
            name: "alices".into(),
            duration: None
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        b.delete_slice(pb::DeleteSliceRequest {
            name: "alices".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert!(b
        .list_slices(pb::ListSlicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .slices
        .is_empty());
    let e = b
        .list_events(pb::ListEventsRequest {
            object: "slice/alices".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A user cannot create sites, users, enrollment tokens, or manage nodes.
    let mut ba = bob.admin.clone();
    assert_eq!(
        ba.create_site(site("evil")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let e = ba
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        ba.drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            deadline: None
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let e = ba
        .create_user(pb::CreateUserRequest {
            name: "mallory".into(),
            role: pb::Role::User as i32,
            site: "mit".into(),
            token_ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // A PI manages their own site only, sees its slices, and cannot change them.
    let mut pa = pat.admin.clone();
    pa.create_user(pb::CreateUserRequest {
        name: "carol".into(),
        role: pb::Role::User as i32,
        site: "mit".into(),
        token_ttl: None,
    })
    .await
    .unwrap();
    let e = pa
        .create_user(pb::CreateUserRequest {
            name: "dave".into(),
            role: pb::Role::User as i32,
            site: "eth".into(),
            token_ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = pa
        .create_user(pb::CreateUserRequest {
            name: "erin".into(),
            role: pb::Role::Admin as i32,
            site: "mit".into(),
            token_ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    pa.create_enrollment_token(pb::CreateEnrollmentTokenRequest {
        site: "mit".into(),
        ttl: None,
    })
    .await
    .unwrap();
    assert_eq!(
        pa.create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "eth".into(),
            ttl: None
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    pa.drain_node(pb::DrainNodeRequest {
        name: "n1".into(),
        deadline: None,
    })
    .await
    .unwrap();
    pa.enable_node(pb::EnableNodeRequest { name: "n1".into() })
        .await
        .unwrap();
    assert_eq!(
        pa.drain_node(pb::DrainNodeRequest {
            name: "n2".into(),
            deadline: None
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    pat.slices
        .clone()
        .get_slice(pb::GetSliceRequest {
            name: "alices".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        pat.slices
            .clone()
            .delete_slice(pb::DeleteSliceRequest {
                name: "alices".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        quinn
            .slices
            .clone()
            .get_slice(pb::GetSliceRequest {
                name: "alices".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // A node's certificate cannot act as a user, and enrollment tokens are not user tokens.
    let as_node = Clients::with_identity(&svc, None, &node.credential)
        .await
        .unwrap();
    assert_eq!(
        as_node
            .slices
            .clone()
            .list_slices(pb::ListSlicesRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        as_node
            .admin
            .clone()
            .list_sites(pb::ListSitesRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    // No token, or a forged one: unauthenticated.
    let anon = Clients::new(&svc, None).await;
    assert_eq!(
        anon.slices
            .clone()
            .list_slices(pb::ListSlicesRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let forged = Clients::new(&svc, Some("sbu_0000")).await;
    assert_eq!(
        forged
            .slices
            .clone()
            .list_slices(pb::ListSlicesRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    // A user token cannot open a node's control channel.
    assert!(
        slicebed_tests::node::control_without_certificate(&svc, Some(&svc.admin_token))
            .await
            .is_err()
    );

    // Members may act on the slice.
    let mut req = slice_req("shared", 1, 64 * MI);
    req.members = vec!["bob".into()];
    alice.slices.clone().create_slice(req).await.unwrap();
    b.renew_slice(pb::RenewSliceRequest {
        name: "shared".into(),
        duration: None,
    })
    .await
    .unwrap();
    b.delete_slice(pb::DeleteSliceRequest {
        name: "shared".into(),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn node_credential_cannot_report_for_another_node() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let n1 = TestNode::join(&svc, "mit", "n1", 1000, GI).await;
    let n2 = TestNode::join(&svc, "mit", "n2", 1000, GI).await;
    wait_ready(&a, 2).await;
    let mut req = slice_req("s", 2, 512 * MI);
    req.placement.as_mut().unwrap().strategy = pb::PlacementStrategy::Spread as i32;
    let sl = a
        .slices
        .clone()
        .create_slice(req)
        .await
        .unwrap()
        .into_inner()
        .slice
        .unwrap();
    let on_n2 = sl
        .slivers
        .iter()
        .find(|v| v.node == "n2")
        .expect("one sliver on n2");
    let on_n1 = sl
        .slivers
        .iter()
        .find(|v| v.node == "n1")
        .expect("one sliver on n1");
    n1.report(&on_n2.id, pb::SliverState::Failed, "forged by n1")
        .await;
    n1.report(&on_n1.id, pb::SliverState::Running, "").await;
    n2.report(&on_n2.id, pb::SliverState::Creating, "").await;
    wait_for("n1's own report applied", Duration::from_secs(5), || {
        let mut s = a.slices.clone();
        let id = on_n1.id.clone();
        async move {
            let sl = s
                .get_slice(pb::GetSliceRequest { name: "s".into() })
                .await
                .ok()?
                .into_inner();
            sl.slivers
                .iter()
                .any(|v| v.id == id && v.state == pb::SliverState::Running as i32)
                .then_some(sl)
        }
    })
    .await;
    let sl = wait_for("n2's report applied", Duration::from_secs(5), || {
        let mut s = a.slices.clone();
        let id = on_n2.id.clone();
        async move {
            let sl = s
                .get_slice(pb::GetSliceRequest { name: "s".into() })
                .await
                .ok()?
                .into_inner();
            sl.slivers
                .iter()
                .any(|v| v.id == id && v.state == pb::SliverState::Creating as i32)
                .then_some(sl)
        }
    })
    .await;
    let v = sl.slivers.iter().find(|v| v.id == on_n2.id).unwrap();
    assert!(
        !v.last_error.contains("forged"),
        "n1's forged report must not land: {v:?}"
    );
}

#[tokio::test]
async fn enrollment_tokens_are_single_use_and_expire() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let tok = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let c = Clients::new(&svc, Some(&tok)).await;
    let req = slicebed_tests::node::enroll_request("n1", 1000, GI, (30000, 30010));
    c.node.clone().enroll(req.clone()).await.unwrap();
    let mut again = req.clone();
    again.name = "n2".into();
    let e = c.node.clone().enroll(again).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("already been used"), "{}", e.message());

    let short = a
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut late = req.clone();
    late.name = "n3".into();
    let e = Clients::new(&svc, Some(&short))
        .await
        .node
        .clone()
        .enroll(late)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());
    let nodes = a
        .admin
        .clone()
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
}
