//! Cluster identity over real gRPC and mutual TLS: a cluster enrolls once and its certificate
//! speaks, per call, for the member named in `x-slicebed-member`, never for a plain node or
//! another cluster's member; a node certificate never names a member; a member runs one
//! control channel at a time; revoking the cluster cuts off its open channels and every new
//! one. (The core's in-process tests cover the same rules without the network:
//! slice-service/src/core/tests/clusters.rs.)

mod common;

use std::time::Duration;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::node_message::Msg;
use slicebed_tests::node::{enroll, enroll_request, hello, NodeCredential};
use slicebed_tests::{Clients, Service, TestNode};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

async fn token(a: &Clients, site: &str) -> String {
    a.admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: site.into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn enroll_cluster(svc: &Service, a: &Clients, site: &str, name: &str) -> NodeCredential {
    let req = pb::EnrollRequest {
        cluster: true,
        ..enroll_request(name, 0, 0, (30000, 30099))
    };
    enroll(svc, &token(a, site).await, req)
        .await
        .expect("enroll a cluster")
}

/// A control channel presenting `cred`, naming `member` if given: the first answer, and the
/// stream's sender and receiver kept open while the caller holds them.
struct Channel {
    first: pb::ServiceMessage,
    _tx: mpsc::Sender<pb::NodeMessage>,
    inbound: tonic::Streaming<pb::ServiceMessage>,
}

async fn control(
    svc: &Service,
    cred: &NodeCredential,
    member: Option<&str>,
) -> Result<Channel, tonic::Status> {
    let c = Clients::with_identity(svc, None, cred)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, out) = mpsc::channel(8);
    tx.send(pb::NodeMessage {
        msg: Some(Msg::Hello(hello(2000, 2 * GI))),
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(out));
    if let Some(m) = member {
        req.metadata_mut()
            .insert("x-slicebed-member", m.parse().unwrap());
    }
    let mut inbound = c.node.clone().control(req).await?.into_inner();
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended"))?;
    Ok(Channel {
        first,
        _tx: tx,
        inbound,
    })
}

fn welcome(ch: &Channel) -> &pb::Welcome {
    match &ch.first.msg {
        Some(pb::service_message::Msg::Welcome(w)) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cluster_certificate_speaks_only_for_its_own_members() {
    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    make_site(&a, "mit").await;
    let lab = enroll_cluster(&svc, &a, "mit", "lab").await;
    let lab_b = enroll_cluster(&svc, &a, "mit", "lab-b").await;

    // A member's first Hello makes it a node of the cluster's site.
    let w1 = control(&svc, &lab, Some("w1")).await.expect("member w1");
    assert_eq!(welcome(&w1).node, "lab-w1");
    assert_eq!(welcome(&w1).site, "mit");
    let n = node(&a, "lab-w1").await;
    assert_eq!(n.cluster, "lab");

    // One control channel per member: a second agent naming w1 is refused.
    let e = control(&svc, &lab, Some("w1")).await.err().expect("second");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    // Without a member, a cluster certificate speaks for nothing.
    let e = control(&svc, &lab, None).await.err().expect("no member");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("x-slicebed-member"), "{e}");
    let e = control(&svc, &lab, Some("Not_A.Label"))
        .await
        .err()
        .expect("bad name");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // lab-b's member x is node lab-b-x: lab naming "b-x" reaches the same name and is refused.
    let _x = control(&svc, &lab_b, Some("x")).await.expect("member x");
    let e = control(&svc, &lab, Some("b-x")).await.err().expect("theft");
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("cluster lab-b"), "{e}");

    // A plain node is no member, and a node certificate names no member.
    let plain = TestNode::join(&svc, "mit", "lab-w9", 1000, GI).await;
    let e = control(&svc, &lab, Some("w9")).await.err().expect("plain");
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = control(&svc, &plain.credential, Some("w1"))
        .await
        .err()
        .expect("node cert naming a member");
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    // Nor does a node enroll under a member's name.
    let e = enroll(
        &svc,
        &token(&a, "mit").await,
        enroll_request("lab-w1", 1000, GI, (30000, 30099)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e}");

    // Revoked: the open channel ends and no member gets a new one.
    let mut w1 = w1;
    let r = a
        .admin
        .clone()
        .revoke_cluster(pb::RevokeClusterRequest { name: "lab".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.members.len(), 1);
    assert!(r.members[0].cluster_revoked);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = w1.inbound.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the revoked cluster's channel stayed open");
    for m in ["w1", "w2"] {
        let e = control(&svc, &lab, Some(m)).await.err().expect("revoked");
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
        assert!(e.message().contains("revoked"), "{e}");
    }
    // Nor a blob fetch or a session stream for a member.
    let c = Clients::with_identity(&svc, None, &lab).await.unwrap();
    let mut req = tonic::Request::new(pb::FetchBlobRequest {
        digest: slicebed_image::Digest::of(b"x").to_string(),
        offset: 0,
    });
    req.metadata_mut()
        .insert("x-slicebed-member", "w1".parse().unwrap());
    let e = c.node.clone().fetch_blob(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::SessionFrame {
        frame: Some(pb::session_frame::Frame::SessionId("s".into())),
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("x-slicebed-member", "w1".parse().unwrap());
    let e = c.node.clone().session(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    // A PI of another site may not revoke a cluster.
    make_site(&a, "eth").await;
    let pi = make_user_as(&a, "pi", pb::Role::Pi, "eth").await;
    let e = Clients::new(&svc, Some(&pi))
        .await
        .admin
        .clone()
        .revoke_cluster(pb::RevokeClusterRequest {
            name: "lab-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
}
