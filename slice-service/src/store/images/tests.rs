//! The image store's records on a real SQLite file, and on PostgreSQL when
//! `SLICEBED_TEST_POSTGRES` names a server: visibility per reader, blob use, quotas' usage,
//! node fetch authorization and what garbage collection may take.

use super::*;
use crate::store::{
    add_holder, blob_collectable, blob_size, delete_blob_if_unreferenced, is_holder,
    node_may_fetch, touch_blobs, upsert_blob, Db,
};

fn d(x: &str) -> String {
    slicebed_image::Digest::of(x.as_bytes()).to_string()
}

async fn slice_running(
    c: &mut Conn,
    id: &str,
    owner: &str,
    member: &str,
    image: &str,
    digest: &str,
    node: &str,
) {
    sqlx::query(
        "INSERT INTO slices (id, name, owner, description, site, image, command, env, cpu_millis, \
         memory_bytes, disk_bytes, ports, placement, restart_policy, created_at, lease_expires_at, \
         life, image_digest) VALUES ($1, $1, $2, '', 'mit', $4, '[]', '[]', 1, 1, 1, '[]', '{}', \
         'never', 0, 0, 'live', $3)",
    )
    .bind(id)
    .bind(owner)
    .bind(digest)
    .bind(image)
    .execute(&mut *c)
    .await
    .unwrap();
    sqlx::query("INSERT INTO slice_members (slice_id, user_name) VALUES ($1, $2)")
        .bind(id)
        .bind(member)
        .execute(&mut *c)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO slivers (id, slice_id, idx, node, site, state, cpu_millis, memory_bytes, \
         disk_bytes, ports, last_error, generation, created_at, updated_at) \
         VALUES ($1, $2, 0, $3, 'mit', 'running', 1, 1, 1, '[]', '', 1, 0, 0)",
    )
    .bind(format!("{id}-0"))
    .bind(id)
    .bind(node)
    .execute(c)
    .await
    .unwrap();
}

/// alice (mit) pushes `alice/tool` (layers l1, l2); carol (eth) pushes `carol/app` sharing l2.
async fn seed(c: &mut Conn) -> (String, String) {
    for (b, size) in [
        ("l1", 100),
        ("l2", 200),
        ("l3", 300),
        ("cfg", 10),
        ("m1", 5),
        ("m2", 5),
    ] {
        upsert_blob(c, &d(b), size, 1).await.unwrap();
    }
    add_holder(c, &d("l1"), "alice").await.unwrap();
    let (m1, m2) = (d("m1"), d("m2"));
    for (name, owner, site, m, layers) in [
        ("alice/tool", "alice", "mit", &m1, vec!["l1", "l2"]),
        ("carol/app", "carol", "eth", &m2, vec!["l2", "l3"]),
    ] {
        let repo = Repo {
            name: name.into(),
            owner: owner.into(),
            site: site.into(),
            visibility: Visibility::Private,
            created_at: 1,
        };
        insert_repo(c, &repo).await.unwrap();
        let mut blobs = vec![m.clone(), d("cfg")];
        blobs.extend(layers.iter().map(|l| d(l)));
        let row = ManifestRow {
            name: name.into(),
            digest: m.clone(),
            config_digest: d("cfg"),
            size: 1,
            layers: layers.iter().map(|l| (d(l), 1)).collect(),
            created_at: 1,
        };
        assert!(insert_manifest(c, &row, &blobs).await.unwrap());
        assert!(
            !insert_manifest(c, &row, &blobs).await.unwrap(),
            "recorded once"
        );
        assert_eq!(set_tag(c, name, "v1", m, 1).await.unwrap(), None);
        touch_blobs(c, &blobs, 0).await.unwrap();
    }
    (m1, m2)
}

fn user<'a>(name: &'a str, site: &'a str) -> Reader<'a> {
    Reader::User { name, site }
}

async fn sees(c: &mut Conn, r: Reader<'_>, name: &str, m: &str) -> bool {
    visible_manifest(c, r, name, m).await.unwrap().is_some()
}

async fn exercise(db: &Db) {
    let mut tx = db.begin().await.unwrap();
    let (m1, m2) = seed(&mut tx).await;
    tx.commit().await.unwrap();
    let mut c = db.conn().await.unwrap();
    let c = &mut *c;

    // Private: the owner and admins only.
    assert!(sees(c, user("alice", "mit"), "alice/tool", &m1).await);
    assert!(sees(c, Reader::Admin, "alice/tool", &m1).await);
    assert!(
        !sees(c, user("bob", "mit"), "alice/tool", &m1).await,
        "same site, private"
    );
    assert!(!sees(c, user("", ""), "alice/tool", &m1).await, "anonymous");
    assert!(!sees(c, user("alice", "mit"), "carol/app", &m2).await);
    assert_eq!(
        list_visible(c, user("alice", "mit"), None, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        list_visible(c, Reader::Admin, None, None, None)
            .await
            .unwrap()
            .len(),
        2
    );
    // A digest under another repository's name is not that repository's image.
    assert!(!sees(c, user("alice", "mit"), "alice/tool", &m2).await);

    // Site: every user of the owner's site.
    set_visibility(c, "alice/tool", Visibility::Site)
        .await
        .unwrap();
    assert!(sees(c, user("bob", "mit"), "alice/tool", &m1).await);
    assert!(!sees(c, user("quinn", "eth"), "alice/tool", &m1).await);
    assert!(!sees(c, user("", ""), "alice/tool", &m1).await);
    // Public: everyone, anonymous callers too.
    set_visibility(c, "alice/tool", Visibility::Public)
        .await
        .unwrap();
    assert!(sees(c, user("quinn", "eth"), "alice/tool", &m1).await);
    assert!(sees(c, user("", ""), "alice/tool", &m1).await);
    set_visibility(c, "alice/tool", Visibility::Private)
        .await
        .unwrap();

    // Blobs: alice may use l1 (she uploaded it) and l2 (in her image), not l3 (carol's).
    assert!(is_holder(c, &d("l1"), "alice").await.unwrap());
    assert!(blob_visible(c, user("alice", "mit"), &d("l2"))
        .await
        .unwrap());
    assert!(!blob_visible(c, user("alice", "mit"), &d("l3"))
        .await
        .unwrap());
    assert!(
        repo_blob_visible(c, user("alice", "mit"), "alice/tool", &d("l2"))
            .await
            .unwrap()
    );
    assert!(
        !repo_blob_visible(c, user("alice", "mit"), "carol/app", &d("l2"))
            .await
            .unwrap()
    );

    // Site usage counts distinct blobs once: mit holds m1, cfg, l1, l2.
    let (used, held) = site_usage(c, "mit", &[d("l2"), d("l3")]).await.unwrap();
    assert_eq!(used, 5 + 10 + 100 + 200);
    assert_eq!(held, vec![d("l2")]);

    // A live slice of carol's image with dave as member: dave reads it, n1 may fetch it.
    let mut tx = db.begin().await.unwrap();
    slice_running(&mut tx, "s1", "carol", "dave", "carol/app:v1", &m2, "n1").await;
    // The same bytes under another name: dave's slice opens carol/app, not this one.
    let twin = ManifestRow {
        name: "erin/twin".into(),
        digest: m2.clone(),
        config_digest: d("cfg"),
        size: 1,
        layers: vec![],
        created_at: 1,
    };
    let repo = Repo {
        name: "erin/twin".into(),
        owner: "erin".into(),
        site: "mit".into(),
        visibility: Visibility::Private,
        created_at: 1,
    };
    insert_repo(&mut tx, &repo).await.unwrap();
    insert_manifest(&mut tx, &twin, std::slice::from_ref(&m2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(sees(c, user("dave", "mit"), "carol/app", &m2).await);
    assert!(!sees(c, user("erin", "mit"), "carol/app", &m2).await);
    assert!(!sees(c, user("dave", "mit"), "erin/twin", &m2).await);
    assert!(sees(c, user("erin", "mit"), "erin/twin", &m2).await);
    assert_eq!(
        live_slices_using(c, &m2).await.unwrap(),
        vec!["s1".to_string()]
    );
    for b in ["m2", "cfg", "l2", "l3"] {
        assert!(
            node_may_fetch(c, "n1", &d(b)).await.unwrap(),
            "n1 fetches {b}"
        );
    }
    assert!(
        !node_may_fetch(c, "n1", &d("l1")).await.unwrap(),
        "l1 is in no image n1 runs"
    );
    assert!(
        !node_may_fetch(c, "n2", &d("l3")).await.unwrap(),
        "n2 runs nothing"
    );
    set_visibility(c, "alice/tool", Visibility::Public)
        .await
        .unwrap();
    assert!(
        node_may_fetch(c, "n2", &d("l1")).await.unwrap(),
        "public image"
    );

    // Tags and deletion; GC may then take what only alice/tool referenced.
    assert_eq!(
        tag_digest(c, "alice/tool", "v1").await.unwrap(),
        Some(m1.clone())
    );
    assert_eq!(set_tag(c, "alice/tool", "v2", &m1, 2).await.unwrap(), None);
    assert_eq!(
        tags_of(c, "alice/tool", &m1).await.unwrap(),
        vec!["v1", "v2"]
    );
    assert!(delete_tag(c, "alice/tool", "v2").await.unwrap());
    assert!(!delete_tag(c, "alice/tool", "v2").await.unwrap());
    let mut freed = delete_manifest(c, "alice/tool", &m1).await.unwrap();
    freed.sort();
    let mut want = vec![m1.clone(), d("cfg"), d("l1"), d("l2")];
    want.sort();
    assert_eq!(freed, want);
    assert!(
        get_repo(c, "alice/tool").await.unwrap().is_none(),
        "last manifest gone"
    );
    assert!(blob_collectable(c, &d("l1"), 10).await.unwrap());
    assert!(
        !blob_collectable(c, &d("l2"), 10).await.unwrap(),
        "shared with carol/app"
    );
    assert!(
        !blob_collectable(c, &d("cfg"), 10).await.unwrap(),
        "shared config"
    );
    // A push touched it a moment ago: kept within the grace period.
    touch_blobs(c, &[d("l1")], 50).await.unwrap();
    assert!(!blob_collectable(c, &d("l1"), 10).await.unwrap());
    assert!(blob_collectable(c, &d("l1"), 51).await.unwrap());
    assert!(delete_blob_if_unreferenced(c, &d("l1")).await.unwrap());
    assert!(!delete_blob_if_unreferenced(c, &d("l2")).await.unwrap());
    assert_eq!(blob_size(c, &d("l1")).await.unwrap(), None);
    assert!(!is_holder(c, &d("l1"), "alice").await.unwrap());
}

#[tokio::test]
async fn image_records_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&format!("sqlite://{}/i.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    exercise(&db).await;
}

#[tokio::test]
async fn image_records_on_postgres() {
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
    let name = format!("sbimages_{nanos:x}{:x}", std::process::id());
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
