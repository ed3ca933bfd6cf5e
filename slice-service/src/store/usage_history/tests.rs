//! On a real SQLite file, and on PostgreSQL when `SLICEBED_TEST_POSTGRES` names a server.

use super::*;
use crate::store::Db;

const MIN: i64 = 60_000;

fn bucket(kind: SeriesKind, subject: &str, slice: &str, at: Millis, cpu: i64) -> Bucket {
    let u = Usage {
        cpu_millis: cpu,
        memory_bytes: cpu * 10,
        disk_bytes: 7,
        net_rx_bps: 3,
        net_tx_bps: 4,
    };
    Bucket {
        kind,
        subject: subject.into(),
        slice_id: slice.into(),
        node: "n1".into(),
        samples: 30,
        point: UsagePoint {
            at,
            span_ms: 5 * MIN,
            mean: u,
            peak: u.plus(u),
        },
    }
}

async fn exercise(db: &Db) {
    let t = 1_700_000_000_000 - 1_700_000_000_000 % (5 * MIN);
    // More rows than one statement takes, in one transaction.
    let mut many: Vec<Bucket> = (0..450)
        .map(|i| {
            bucket(
                SeriesKind::Sliver,
                &format!("v{}", i % 3),
                "s1",
                t + (i / 3) * 5 * MIN,
                i,
            )
        })
        .collect();
    many.push(bucket(SeriesKind::Node, "n1", "", t, 99));
    many.push(bucket(SeriesKind::Sliver, "w", "s2", t, 5));
    let mut tx = db.begin().await.unwrap();
    write_usage_buckets(&mut tx, &many).await.unwrap();
    tx.commit().await.unwrap();

    let mut c = db.conn().await.unwrap();
    let got = usage_buckets(&mut c, SeriesKind::Sliver, &["v1".into()], t)
        .await
        .unwrap();
    assert_eq!(got.len(), 150);
    assert_eq!(got[0], ("v1".to_string(), many[1].point));
    let since = usage_buckets(
        &mut c,
        SeriesKind::Sliver,
        &["v1".into(), "w".into()],
        t + 100 * 5 * MIN,
    )
    .await
    .unwrap();
    assert_eq!(since.len(), 50, "only buckets from `since` on");
    // A node's history is apart from a sliver's of the same name.
    let node = usage_buckets(&mut c, SeriesKind::Node, &["n1".into()], 0)
        .await
        .unwrap();
    assert_eq!(node.len(), 1);
    assert_eq!(node[0].1.mean.cpu_millis, 99);
    drop(c);

    // The same bucket again replaces it.
    let mut tx = db.begin().await.unwrap();
    write_usage_buckets(&mut tx, &[bucket(SeriesKind::Node, "n1", "", t, 42)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut c = db.conn().await.unwrap();
    let node = usage_buckets(&mut c, SeriesKind::Node, &["n1".into()], 0)
        .await
        .unwrap();
    assert_eq!((node.len(), node[0].1.mean.cpu_millis), (1, 42));
    assert_eq!(usage_slice_ids(&mut c).await.unwrap(), vec!["s1", "s2"]);
    drop(c);

    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        prune_usage_of_slices(&mut tx, &["s2".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        prune_usage_before(&mut tx, t + 10 * 5 * MIN).await.unwrap(),
        31
    );
    tx.commit().await.unwrap();
    let mut c = db.conn().await.unwrap();
    assert_eq!(usage_slice_ids(&mut c).await.unwrap(), vec!["s1"]);
    let all = ["v0", "v1", "v2"].map(String::from);
    let left = usage_buckets(&mut c, SeriesKind::Sliver, &all, 0)
        .await
        .unwrap();
    assert_eq!(left.len(), 420);
    assert!(left.iter().all(|(_, p)| p.at >= t + 10 * 5 * MIN));
}

#[tokio::test]
async fn buckets_are_written_in_batches_read_by_subject_and_pruned_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}/u.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    exercise(&db).await;
}

#[tokio::test]
async fn buckets_are_written_in_batches_read_by_subject_and_pruned_on_postgres() {
    use sqlx::Connection;
    let Some(base) = std::env::var("SLICEBED_TEST_POSTGRES")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!(
            "NOTICE: PostgreSQL skipped: set SLICEBED_TEST_POSTGRES=postgres://... to run it"
        );
        return;
    };
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("sbusage_{nanos:x}{:x}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db = Db::open(&format!("{prefix}/{name}")).await.unwrap();
    exercise(&db).await;
    db.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await;
}
