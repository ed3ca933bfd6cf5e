//! Node identity in the core: certificates count only while recorded for their node and not
//! revoked; revoking cuts the node off and stops renewals without touching its slivers; a
//! node's claims about itself are bounded by its enrollment and the admins' labels.

use super::*;
use crate::error::Error;
use crate::pki::{IssuedCert, PeerCert};

fn cert(serial: &str) -> IssuedCert {
    IssuedCert {
        pem: String::new(),
        serial: serial.into(),
        issued_at: 0,
        expires_at: i64::MAX,
    }
}

fn peer(node: &str, serial: &str) -> PeerCert {
    PeerCert {
        node: node.into(),
        cluster: false,
        serial: serial.into(),
        expires_at: i64::MAX,
    }
}

async fn actions(bed: &TestBed, object: &str) -> Vec<String> {
    bed.object_events(object)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn a_revoked_node_cannot_renew_or_connect_and_keeps_its_slivers() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let renewed = bed
        .core
        .renew_node_cert("n1", |_| Ok(cert("aa01")))
        .await
        .unwrap();
    assert_eq!(
        bed.core
            .node_by_cert(&peer("n1", &renewed.serial))
            .await
            .unwrap()
            .name,
        "n1"
    );
    // A node renewing in a loop is stopped: at most 4 unexpired certificates at once.
    for serial in ["aa02", "aa03"] {
        bed.core
            .renew_node_cert("n1", |_| Ok(cert(serial)))
            .await
            .unwrap();
    }
    let e = bed
        .core
        .renew_node_cert("n1", |_| Ok(cert("aa04")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exhausted(_)), "{e}");
    // A serial recorded for n1 does not speak for another node, nor an unknown one for n1.
    assert!(bed.core.node_by_cert(&peer("n2", "aa01")).await.is_err());
    assert!(bed.core.node_by_cert(&peer("n1", "bb02")).await.is_err());
    let alice = bed.user("alice", "mit").await;
    bed.core.create_slice(&alice, spec("s1", 1)).await.unwrap();
    let before = bed.slivers("s1").await;

    bed.core.revoke_node(&bed.admin, "n1").await.unwrap();
    let e = bed
        .core
        .node_by_cert(&peer("n1", "aa01"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Unauthenticated(m) if m.contains("revoked")),
        "{e}"
    );
    let e = bed
        .core
        .renew_node_cert("n1", |_| Ok(cert("cc03")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
    assert!(!bed.core.hub.is_live("n1"), "cut off at once");
    let after = bed.slivers("s1").await;
    assert_eq!(
        before.iter().map(|v| v.state).collect::<Vec<_>>(),
        after.iter().map(|v| v.state).collect::<Vec<_>>(),
        "revoking evicts nothing"
    );
    let actions = actions(&bed, "node/n1").await;
    assert!(
        actions.contains(&"identity revoked".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn claims_above_the_enrollment_are_capped_and_labels_stay_the_admins() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 2000, 4 << 30).await;
    bed.core
        .label_node(
            &bed.admin,
            "n1",
            [("zone".into(), "eu".into())].into(),
            vec![],
        )
        .await
        .unwrap();
    let mut h = hello("n1", 1_000_000_000, 1 << 50);
    h.labels.insert("gpu".into(), "fake".into());
    h.address = "198.51.100.7".into();
    let (n, _) = bed
        .core
        .node_connected("n1", h, Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(n.capacity, Resources::new(2000, 4 << 30, 100 << 30));
    assert_eq!(n.labels, [("zone".to_string(), "eu".to_string())].into());
    assert_eq!(n.address, "198.51.100.7");
    let actions = actions(&bed, "node/n1").await;
    for want in ["capacity capped", "address changed", "labels set"] {
        assert!(
            actions.contains(&want.to_string()),
            "missing {want}: {actions:?}"
        );
    }
    // Less than enrolled is taken as reported (a machine may shrink).
    let (n, _) = bed
        .core
        .node_connected("n1", hello("n1", 1000, 1 << 30), Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(n.capacity.cpu_millis, 1000);
}
