//! Issue 10 findings in the core: one tenant's history never reaches the next owner of a slice
//! name; what users and nodes say is stored escaped and bounded; list answers stay small;
//! tokens cannot outlive or escape their parents; absurd durations are refused.

use super::*;
use crate::error::Error;

/// Everything `p` reads about "slice/NAME", as one text.
async fn history(bed: &TestBed, p: &Principal, name: &str) -> String {
    bed.core
        .list_events(p, &format!("slice/{name}"), 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {} {}\n", e.actor, e.object, e.action, e.detail))
        .collect()
}

#[tokio::test]
async fn the_next_owner_of_a_slice_name_reads_nothing_of_the_previous_one() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await.site("eth").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    let bob = bed.user("bob", "eth").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    bed.core
        .access_target(&alice, "demo", 0, "exec", "env API_KEY=hunter2 ./run")
        .await
        .unwrap();
    bed.core.delete_slice(&alice, "demo").await.unwrap();

    // The name is free; bob takes it and reads its history.
    bed.core.create_slice(&bob, spec("demo", 1)).await.unwrap();
    let seen = history(&bed, &bob, "demo").await;
    assert!(!seen.contains("hunter2"), "bob read alice's exec:\n{seen}");
    assert!(
        !seen.contains("user/alice"),
        "bob read alice's events:\n{seen}"
    );
    assert!(
        seen.contains("user/bob"),
        "bob's own history is there:\n{seen}"
    );

    // Alice still reads her own ended slice's history, and nothing of bob's.
    let hers = history(&bed, &alice, "demo").await;
    assert!(hers.contains("hunter2"), "{hers}");
    assert!(!hers.contains("user/bob"), "{hers}");
}

#[tokio::test]
async fn exec_lines_and_node_messages_are_stored_escaped_and_bounded() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    let argv = format!("echo \u{1b}]0;owned\u{7}\u{1b}[2J {}", "A".repeat(2 << 20));
    bed.core
        .access_target(&alice, "demo", 0, "exec", &argv)
        .await
        .unwrap();
    let sliver = bed.slivers("demo").await.remove(0).id;
    bed.report(
        "n1",
        &sliver,
        SliverState::Failed,
        &format!("oops\u{1b}[31m{}", "B".repeat(100_000)),
    )
    .await;

    let evs = bed.slice_events("demo").await;
    let exec = evs.iter().find(|e| e.action == "exec").expect("exec event");
    assert!(
        exec.detail.len() < 2048,
        "{} bytes stored",
        exec.detail.len()
    );
    assert!(exec
        .detail
        .starts_with("echo \\x1b]0;owned\\x07\\x1b[2J AAA"));
    assert!(exec.detail.contains("truncated"), "{}", exec.detail);
    for e in &evs {
        assert!(!e.detail.contains('\u{1b}'), "raw escape in {e:?}");
    }
    let stored = bed.sliver(&sliver).await.last_error;
    assert!(stored.starts_with("oops\\x1b[31mBBB"), "{stored:.40}");
    assert!(stored.len() < 2048 && !stored.contains('\u{1b}'));
}

#[tokio::test]
async fn a_list_of_events_stays_small_and_pages_back_to_the_rest() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    let big = "x".repeat(64 << 10);
    for _ in 0..1100 {
        bed.core
            .access_target(&alice, "demo", 0, "exec", &big)
            .await
            .unwrap();
    }
    let mut before = 0;
    let mut seen = 0;
    loop {
        let page = bed
            .core
            .list_events_page(&alice, "slice/demo", 0, before, 1000)
            .await
            .unwrap();
        let bytes: usize = page.events.iter().map(|e| e.detail.len() + 200).sum();
        assert!(bytes < 2 << 20, "a page of {bytes} bytes");
        seen += page.events.len();
        if !page.truncated && page.events.len() < 1000 {
            break;
        }
        before = page.events[0].id;
    }
    // 1100 execs, the slice's creation and its sliver's placement.
    assert_eq!(seen, 1102);
}

#[tokio::test]
async fn the_migration_gives_old_events_their_slice_id() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    bed.core.delete_slice(&alice, "demo").await.unwrap();
    bed.advance(Duration::from_secs(1));
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    let want: Vec<String> = all_rows(&bed).await;
    // Rows as the previous schema left them, then the migration's backfill.
    let mut c = bed.core.db.conn().await.unwrap();
    sqlx::query("UPDATE events SET slice_id = ''")
        .execute(&mut *c)
        .await
        .unwrap();
    let migration = include_str!("../../../migrations/sqlite/0003_security.sql");
    let text: String = migration
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for stmt in text.split(';').filter(|s| s.contains("UPDATE events")) {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_string()))
            .execute(&mut *c)
            .await
            .unwrap();
    }
    drop(c);
    assert_eq!(all_rows(&bed).await, want);
}

/// `object slice_id` of every event that concerns a slice.
async fn all_rows(bed: &TestBed) -> Vec<String> {
    use sqlx::Row;
    let mut c = bed.core.db.conn().await.unwrap();
    sqlx::query("SELECT object, slice_id FROM events WHERE slice <> '' ORDER BY id")
        .fetch_all(&mut *c)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let (o, s): (String, String) = (r.get(0), r.get(1));
            assert!(!s.is_empty(), "{o} has no slice id");
            format!("{o} {s}")
        })
        .collect()
}

#[tokio::test]
async fn a_drain_deadline_too_long_to_add_is_refused_and_evicts_nothing() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let alice = bed.user("alice", "mit").await;
    bed.core
        .create_slice(&alice, spec("demo", 1))
        .await
        .unwrap();
    bed.sent("n1");

    let err = bed
        .core
        .set_node_admin(
            &bed.admin,
            "n1",
            crate::model::AdminState::Draining,
            Some(Duration::from_secs(i64::MAX as u64)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("deadline"), "{err}");

    bed.core.handle_lost_and_draining().await.unwrap();
    assert_eq!(bed.sent("n1"), []);
    let v = bed.slivers("demo").await.remove(0);
    assert_eq!(v.state, SliverState::Pending, "{}", v.last_error);
}

/// Whom `secret` authenticates as now, or the refusal.
async fn who(bed: &TestBed, secret: &str) -> Result<String, Error> {
    let mut c = bed.core.db.conn().await.unwrap();
    crate::auth::authenticate_token(&mut c, secret)
        .await
        .map(|(p, _)| p.actor())
}

/// The token behind `secret`.
async fn token_of(bed: &TestBed, secret: &str) -> crate::model::Token {
    let mut c = bed.core.db.conn().await.unwrap();
    crate::auth::authenticate_token(&mut c, secret)
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn a_child_token_never_outlives_its_parent_and_is_revoked_with_it() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    let (alice, first, _) = bed
        .core
        .create_user(
            &bed.admin,
            "alice",
            Role::User,
            Some("mit".into()),
            Some(Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    let alice = Principal::User(alice);
    let parent = token_of(&bed, &first).await;
    let (child, c) = bed
        .core
        .create_token(
            &alice,
            Some(&parent),
            "",
            Some(Duration::from_secs(400 * 86_400)),
            "laptop",
        )
        .await
        .unwrap();
    assert_eq!(
        c.expires_at, parent.expires_at,
        "capped to the parent's end"
    );
    let (grandchild, _) = bed
        .core
        .create_token(&alice, Some(&c), "", None, "ci")
        .await
        .unwrap();
    assert_eq!(who(&bed, &grandchild).await.unwrap(), "user/alice");

    bed.core.revoke_token(&alice, &parent.id).await.unwrap();

    for s in [&first, &child, &grandchild] {
        let e = who(&bed, s).await.unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
    }
    // A revoked token cannot mint a child that would survive it.
    let e = bed
        .core
        .create_token(&alice, Some(&parent), "", None, "late")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
}

#[tokio::test]
async fn a_pi_cannot_mint_a_token_for_a_user_of_its_site() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.user("alice", "mit").await;
    let (pi, _, _) = bed
        .core
        .create_user(&bed.admin, "pat", Role::Pi, Some("mit".into()), None)
        .await
        .unwrap();
    let pi = Principal::User(pi);

    let e = bed
        .core
        .create_token(&pi, None, "alice", None, "as alice")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("only admins"), "{e}");
    // The PI still manages alice's tokens otherwise, and mints its own.
    assert_eq!(bed.core.list_tokens(&pi, "alice").await.unwrap().len(), 1);
    bed.core
        .create_token(&pi, None, "", None, "mine")
        .await
        .unwrap();
    // Admins may, and the log says who did.
    let (_, t) = bed
        .core
        .create_token(&bed.admin, None, "alice", None, "support")
        .await
        .unwrap();
    let ev = bed.object_events(&format!("token/{}", t.id)).await;
    assert_eq!(
        (ev[0].actor.as_str(), ev[0].detail.as_str()),
        ("user/admin", "for alice")
    );
}

#[tokio::test]
async fn the_bootstrap_admin_token_expires_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_data_dir(dir.path());
    let db = Db::open(&cfg.database_url).await.unwrap();
    let core = Core::with_clock(db, cfg, ManualClock::new());
    let secret = core.bootstrap().await.unwrap().expect("a fresh database");
    let mut c = core.db.conn().await.unwrap();
    let (admin, t) = crate::auth::authenticate_token(&mut c, &secret)
        .await
        .unwrap();
    drop(c);
    let expires = t.expires_at.expect("the bootstrap token expires");
    assert_eq!(expires - t.created_at, 30 * 86_400_000);

    let (new, nt) = core.rotate_token(&admin, &t, None).await.unwrap();
    assert_eq!(nt.expires_at.unwrap() - nt.created_at, 30 * 86_400_000);
    assert_ne!(nt.id, t.id);
    let mut c = core.db.conn().await.unwrap();
    let e = crate::auth::authenticate(&mut c, &secret)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
    let p = crate::auth::authenticate(&mut c, &new).await.unwrap();
    assert_eq!(p.actor(), "user/admin");
}

#[tokio::test]
async fn the_kept_admin_token_is_renewed_near_its_end_but_never_once_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::for_data_dir(dir.path());
    let db = Db::open(&cfg.database_url).await.unwrap();
    let clock = ManualClock::new();
    let core = Core::with_clock(db, cfg, clock.clone());
    let kept = core.bootstrap().await.unwrap().unwrap();
    let file = dir.path().join("admin.token");
    std::fs::write(&file, format!("{kept}\n")).unwrap();
    let read = || std::fs::read_to_string(&file).unwrap().trim().to_string();

    clock.advance(Duration::from_secs(19 * 86_400));
    assert!(
        !core.refresh_kept_admin_token().await.unwrap(),
        "11 days left"
    );
    assert_eq!(read(), kept);

    clock.advance(Duration::from_secs(2 * 86_400));
    assert!(
        core.refresh_kept_admin_token().await.unwrap(),
        "9 days left"
    );
    let fresh = read();
    assert_ne!(fresh, kept);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut c = core.db.conn().await.unwrap();
    let (p, t) = crate::auth::authenticate_token(&mut c, &fresh)
        .await
        .unwrap();
    assert_eq!(p.actor(), "user/admin");
    drop(c);

    core.revoke_token(&p, &t.id).await.unwrap();
    clock.advance(Duration::from_secs(40 * 86_400));
    assert!(!core.refresh_kept_admin_token().await.unwrap());
    assert_eq!(read(), fresh);
}

#[tokio::test]
async fn what_a_node_says_about_itself_is_stored_and_shown_escaped() {
    let mut bed = TestBed::new().await;
    bed.site("mit").await;
    bed.node("n1", "mit", 4000, 8 << 30).await;
    let mut h = hello("n1", 4000, 8 << 30);
    h.agent_version = "1.0\u{1b}]52;c;cm0gLXJmIH4=\u{7}".into();
    bed.core
        .node_connected("n1", h, Vec::new(), Some(("dead\u{1b}[2J".into(), 5)))
        .await
        .unwrap();

    let v = bed.core.get_node(&bed.admin, "n1").await.unwrap();
    assert_eq!(v.node.agent_version, "1.0\\x1b]52;c;cm0gLXJmIH4=\\x07");
    assert_eq!(v.engine_down.unwrap().message, "dead\\x1b[2J");
    for e in bed.object_events("node/n1").await {
        assert!(!e.detail.contains('\u{1b}'), "{e:?}");
    }
}
