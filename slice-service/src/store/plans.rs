//! Query plans of the hot queries, on SQLite and (when `SLICEBED_TEST_POSTGRES` names a server)
//! PostgreSQL: each one must be answered from an index, never by reading a whole table.
//!
//! The texts are the store's own (its query functions and constants), so a query changed in the
//! store is checked as it now runs. SQLite: `EXPLAIN QUERY PLAN` must hold no `SCAN` of a table
//! (only `SEARCH ... USING INDEX`, and `SCAN CONSTANT ROW`), and must use the index the query is
//! meant to use. PostgreSQL: `EXPLAIN` with `enable_seqscan = off` (test tables are small, so the
//! planner may rightly prefer to read them whole) must hold no `Seq Scan`, and every index scan must
//! have an `Index Cond` (an index read end to end is a full scan too).

use sqlx::Row;

use super::*;
use crate::store::events::{events_query, Walk};
use crate::store::{list_tokens_query, nodes_named_query, token_by_hash_query};
use crate::store::{Conn, Db, EventFilter, CHILD_TOKENS};

/// One hot query: what it is, its text and arguments, and the indexes its SQLite plan must use
/// (`a|b`: either).
struct Case {
    what: String,
    sql: String,
    args: Vec<Arg>,
    sqlite_indexes: Vec<&'static str>,
}

fn case(
    what: impl Into<String>,
    sql: impl Into<String>,
    args: Vec<Arg>,
    idx: &[&'static str],
) -> Case {
    Case {
        what: what.into(),
        sql: sql.into(),
        args,
        sqlite_indexes: idx.to_vec(),
    }
}

fn t(s: &str) -> Arg {
    Arg::Text(s.into())
}

/// Every hot query of the store, with arguments of the right types.
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let alice = Viewer::User {
        name: "alice",
        pi_site: None,
    };
    let pi = Viewer::User {
        name: "paula",
        pi_site: Some("mit"),
    };
    // GetSlice by name, in any state, for each kind of viewer.
    for (who, v, idx) in [
        ("admin", Viewer::All, &["slices_name"][..]),
        (
            "user",
            alice,
            &["slices_name", "sqlite_autoindex_slice_members_1"],
        ),
        (
            "pi",
            pi,
            &["slices_name", "sqlite_autoindex_slice_members_1"],
        ),
    ] {
        let (sql, args) = visible_slice_query("exp", v);
        out.push(case(format!("get slice by name ({who})"), sql, args, idx));
    }
    out.push(case(
        "live slice by name",
        one_slice_query(LIVE_BY_NAME),
        vec![t("exp")],
        &["slices_live_name|slices_live_key"],
    ));
    out.push(case(
        "slice by id",
        one_slice_query(BY_ID),
        vec![t("s1")],
        &["sqlite_autoindex_slices_1"],
    ));
    // ListSlices: each viewer, live or all, with and without a site.
    let from = SliceKey {
        name: "exp".into(),
        created_at: 5,
        id: "s1".into(),
    };
    for (who, viewer) in [("admin", Viewer::All), ("user", alice), ("pi", pi)] {
        for include_ended in [false, true] {
            for site in [None, Some("mit")] {
                let l = SliceList {
                    viewer,
                    include_ended,
                    site,
                    from: from.clone(),
                    limit: 101,
                };
                let idx: &[&str] = match (viewer, include_ended, site) {
                    (Viewer::All, false, None) => &["slices_live_key"],
                    (Viewer::All, true, None) => &["slices_name"],
                    (Viewer::All, _, Some(_)) => &["slices_site"],
                    (Viewer::User { pi_site: None, .. }, _, _) => {
                        &["slices_owner", "slice_members_user"]
                    }
                    (Viewer::User { .. }, _, _) => {
                        &["slices_owner", "slice_members_user", "slices_site"]
                    }
                };
                let (sql, args) = list_slices_query(&l);
                out.push(case(
                    format!("list slices ({who}, ended {include_ended}, site {site:?})"),
                    sql,
                    args,
                    idx,
                ));
            }
        }
    }
    out.push(case(
        "members of a slice",
        MEMBERS_OF_SLICE,
        vec![t("s1")],
        &["sqlite_autoindex_slice_members_1"],
    ));
    out.push(case(
        "members of a page of slices",
        members_query(3),
        vec![t("s1"), t("s2"), t("s3")],
        &["sqlite_autoindex_slice_members_1"],
    ));
    // Slivers.
    out.push(case(
        "slivers of a slice",
        slivers_of_slice_query(),
        vec![t("s1")],
        &["slivers_slice"],
    ));
    out.push(case(
        "slivers of a page of slices",
        slivers_of_slices_query(3),
        vec![t("s1"), t("s2"), t("s3")],
        &["slivers_slice"],
    ));
    out.push(case(
        "slivers on a node by state",
        slivers_on_node_query(),
        vec![t("n1")],
        &["slivers_node"],
    ));
    out.push(case(
        "one sliver",
        sliver_query(),
        vec![t("v1")],
        &["sqlite_autoindex_slivers_1"],
    ));
    // Nodes by name (one, and the nodes of a page of slivers).
    out.push(case(
        "node by name",
        nodes_named_query(1),
        vec![t("n1")],
        &["sqlite_autoindex_nodes_1"],
    ));
    out.push(case(
        "nodes by names",
        nodes_named_query(3),
        vec![t("n1"), t("n2"), t("n3")],
        &["sqlite_autoindex_nodes_1"],
    ));
    // Events: by object, by slice, by actor, and everything (admin), both ways, paged.
    let some = |s: &str| Some(s.to_string());
    for (what, f, idx) in [
        (
            "object",
            EventFilter {
                object: some("node/n1"),
                ..Default::default()
            },
            "events_object",
        ),
        (
            "slice",
            EventFilter {
                slice_id: some("s1"),
                ..Default::default()
            },
            "events_slice_id",
        ),
        (
            "actor",
            EventFilter {
                actor: some("user/alice"),
                ..Default::default()
            },
            "events_actor",
        ),
        ("everything", EventFilter::default(), "INTEGER PRIMARY KEY"),
    ] {
        for walk in [Walk::Back, Walk::Forward] {
            let (sql, texts) = events_query(&f, walk);
            let mut args = vec![Arg::Int(10), Arg::Int(1000)];
            args.extend(texts.into_iter().map(Arg::Text));
            args.push(Arg::Int(100));
            out.push(case(
                format!("events by {what} ({walk:?})"),
                sql,
                args,
                &[idx],
            ));
        }
    }
    // Leases.
    out.push(case(
        "expired leases",
        expired_slices_query(),
        vec![Arg::Int(1000)],
        &["slices_live_lease"],
    ));
    out.push(case(
        "leases to warn",
        slices_to_warn_query(),
        vec![Arg::Int(1000)],
        &["slices_live_lease"],
    ));
    // Tokens: every authenticated call looks one up by hash.
    out.push(case(
        "token by hash",
        token_by_hash_query(),
        vec![t("ab12")],
        &["sqlite_autoindex_tokens_2"],
    ));
    out.push(case(
        "tokens of a subject",
        list_tokens_query(),
        vec![t("user"), t("alice")],
        &["tokens_subject"],
    ));
    out.push(case(
        "tokens made with a token",
        CHILD_TOKENS,
        vec![t("t1")],
        &["tokens_parent"],
    ));
    // Usage history (issue 15): read by subject and time, pruned by age and by ended slice,
    // and where heartbeats' slivers are placed.
    out.push(case(
        "usage history of slivers",
        crate::store::usage_history::read_query(2),
        vec![t("sliver"), Arg::Int(0), t("v1"), t("v2")],
        &["sqlite_autoindex_usage_buckets_1"],
    ));
    out.push(case(
        "usage history pruned by age",
        crate::store::usage_history::PRUNE_BEFORE,
        vec![Arg::Int(0)],
        &["usage_buckets_start"],
    ));
    out.push(case(
        "usage history of ended slices",
        crate::store::usage_history::prune_slices_query(2),
        vec![t("s1"), t("s2")],
        &["usage_buckets_slice"],
    ));
    out.push(case(
        "placement of reported slivers",
        crate::store::usage_history::owners_query(2),
        vec![t("v1"), t("v2")],
        &["sqlite_autoindex_slivers_1"],
    ));
    out
}

/// Binds `args` to `sql` and returns the plan's lines.
async fn plan(c: &mut Conn, explain: &str, sql: &str, args: &[Arg]) -> Vec<String> {
    let text = format!("{explain} {sql}");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let rows = q
        .fetch_all(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{explain} {sql}: {e}"));
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>("detail")
                .or_else(|_| r.try_get::<String, _>("QUERY PLAN"))
                .expect("a plan line")
        })
        .collect()
}

/// Fills the database with a testbed's worth of history, then has the planner count it
/// (`ANALYZE`): 3,000 slices of 1,000 names (one live, two ended each), their members and
/// slivers, 200 nodes, 6,000 events and 1,000 tokens. The plans are then those of a database
/// in use, not of empty tables, for which any plan is as good as any other.
async fn seed(c: &mut Conn) {
    async fn rows(c: &mut Conn, head: &str, values: impl Iterator<Item = String>) {
        let values: Vec<String> = values.collect();
        for chunk in values.chunks(200) {
            let text = format!("{head} VALUES {}", chunk.join(", "));
            sqlx::query(sqlx::AssertSqlSafe(text))
                .execute(&mut *c)
                .await
                .unwrap_or_else(|e| panic!("{head}: {e}"));
        }
    }
    rows(
        c,
        "INSERT INTO sites (name, display_name, city, country, latitude, longitude, enabled, \
         max_slices, max_slivers, created_at)",
        (0..10).map(|i| format!("('site{i}', 'S', 'c', 'x', 0, 0, 1, 0, 0, 0)")),
    )
    .await;
    rows(
        c,
        "INSERT INTO nodes (name, site, address, cpu_millis, memory_bytes, disk_bytes, port_first, \
         port_last, labels, admin_state, agent_version, last_heartbeat, created_at)",
        (0..200).map(|i| {
            format!("('n{i}', 'site{}', 'a', 1000, 1, 1, 1, 2, '{{}}', 'active', 'v', NULL, 0)", i % 10)
        }),
    )
    .await;
    let life = |i: usize| match i % 3 {
        0 => "live",
        1 => "deleted",
        _ => "expired",
    };
    rows(
        c,
        "INSERT INTO slices (id, name, owner, description, site, image, command, env, cpu_millis, \
         memory_bytes, disk_bytes, ports, placement, restart_policy, created_at, lease_expires_at, life)",
        (0..3000).map(|i| {
            format!(
                "('s{i}', 'exp{}', 'u{}', '', 'site{}', 'img', '[]', '{{}}', 1, 1, 1, '[]', '{{}}', 'never', {i}, {}, '{}')",
                i / 3,
                i % 100,
                i % 10,
                1000 + i,
                life(i)
            )
        }),
    )
    .await;
    rows(
        c,
        "INSERT INTO slice_members (slice_id, user_name)",
        (0..3000).flat_map(|i| [1, 2].map(|k| format!("('s{i}', 'u{}')", (i + k * 37) % 100))),
    )
    .await;
    rows(
        c,
        "INSERT INTO slivers (id, slice_id, idx, node, site, state, cpu_millis, memory_bytes, \
         disk_bytes, ports, last_error, exit_code, generation, created_at, updated_at)",
        (0..6000).map(|i| {
            let state = if life(i / 2) == "live" {
                "running"
            } else {
                "deleted"
            };
            format!(
                "('v{i}', 's{}', {}, 'n{}', 'site0', '{state}', 1, 1, 1, '[]', '', NULL, 1, 0, 0)",
                i / 2,
                i % 2,
                i % 200
            )
        }),
    )
    .await;
    rows(
        c,
        "INSERT INTO events (time, actor, object, action, detail, slice, slice_id)",
        (0..6000).map(|i| {
            format!(
                "({i}, 'user/u{}', 'sliver/v{i}', 'state running', '', 'exp{}', 's{}')",
                i % 100,
                i / 6,
                i / 2
            )
        }),
    )
    .await;
    rows(
        c,
        "INSERT INTO tokens (id, hash, kind, subject, description, created_at, expires_at, revoked, \
         used_at, parent_id)",
        (0..1000).map(|i| {
            format!(
                "('t{i}', 'h{i}', 'user', 'u{}', '', {i}, NULL, 0, NULL, {})",
                i % 100,
                if i % 2 == 0 { "NULL".to_string() } else { format!("'t{}'", i - 1) }
            )
        }),
    )
    .await;
    sqlx::query("ANALYZE").execute(&mut *c).await.unwrap();
}

#[tokio::test]
async fn hot_queries_search_indexes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plans.db").display()
    );
    let db = Db::open(&url).await.unwrap();
    let mut c = db.conn().await.unwrap();
    seed(&mut c).await;
    let mut failures = Vec::new();
    for k in cases() {
        let lines = plan(&mut c, "EXPLAIN QUERY PLAN", &k.sql, &k.args).await;
        let shown = lines.join("\n    ");
        if let Some(l) = lines
            .iter()
            .find(|l| l.trim_start().starts_with("SCAN ") && !l.contains("CONSTANT ROW"))
        {
            failures.push(format!("{}: full scan `{l}` in\n    {shown}", k.what));
        }
        for idx in &k.sqlite_indexes {
            // "a|b": either index serves.
            if !idx.split('|').any(|i| lines.iter().any(|l| l.contains(i))) {
                failures.push(format!("{}: does not use {idx}:\n    {shown}", k.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fresh PostgreSQL database on the server `SLICEBED_TEST_POSTGRES` names (a user allowed to
/// create databases), and its name; None when unset.
async fn fresh_postgres() -> Option<(String, String, String)> {
    use sqlx::Connection;
    let base = std::env::var("SLICEBED_TEST_POSTGRES")
        .ok()
        .filter(|b| !b.is_empty())?;
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("sbplans_{nanos:x}{:x}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(&base)
        .await
        .expect("connect to SLICEBED_TEST_POSTGRES");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("postgres URL with a database path");
    let url = format!("{prefix}/{name}");
    Some((base, url, name))
}

#[tokio::test]
async fn hot_queries_use_indexes_on_postgres() {
    let Some((base, url, name)) = fresh_postgres().await else {
        eprintln!(
            "NOTICE: PostgreSQL query plans skipped: set SLICEBED_TEST_POSTGRES=postgres://... to check them"
        );
        return;
    };
    let db = Db::open(&url).await.unwrap();
    let mut failures = Vec::new();
    {
        let mut c = db.conn().await.unwrap();
        seed(&mut c).await;
        // Small tables make a sequential scan the cheapest plan; forbid it to see whether an
        // index could answer at all.
        sqlx::query("SET enable_seqscan = off")
            .execute(&mut *c)
            .await
            .unwrap();
        for k in cases() {
            let lines = plan(&mut c, "EXPLAIN", &k.sql, &k.args).await;
            let shown = lines.join("\n    ");
            if lines.iter().any(|l| l.contains("Seq Scan")) {
                failures.push(format!("{}: sequential scan in\n    {shown}", k.what));
            }
            // An index scan without a condition reads the whole index.
            for (i, l) in lines.iter().enumerate() {
                if l.contains("Index Scan") || l.contains("Index Only Scan") {
                    let depth = l.len() - l.trim_start().len();
                    let cond = lines[i + 1..]
                        .iter()
                        .take_while(|n| {
                            let d = n.len() - n.trim_start().len();
                            d > depth && !n.contains("->")
                        })
                        .any(|n| n.contains("Index Cond"));
                    if !cond {
                        failures.push(format!(
                            "{}: index read end to end `{}` in\n    {shown}",
                            k.what,
                            l.trim()
                        ));
                    }
                }
            }
        }
    }
    db.close().await;
    {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::AnyConnection::connect(&base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
