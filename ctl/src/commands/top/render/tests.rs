use super::*;
use crate::commands::top::view::{json, SliceTop};

fn usage(cpu: i64, mem: i64) -> pb::Usage {
    pb::Usage {
        cpu_millis: cpu,
        memory_bytes: mem,
        disk_bytes: 4096,
        net_rx_bytes_per_second: 2048,
        net_tx_bytes_per_second: 0,
    }
}

fn sliver(index: u32, current: Option<pb::Usage>) -> pb::SliverUsage {
    pb::SliverUsage {
        sliver_id: format!("demo-{index}-x"),
        index,
        node: format!("node-{index}"),
        site: "mit".into(),
        state: pb::SliverState::Running as i32,
        limits: Some(pb::Resources {
            cpu_millis: 1000,
            memory_bytes: 512 << 20,
            disk_bytes: 1 << 30,
        }),
        current,
        ..Default::default()
    }
}

#[test]
fn slivers_show_usage_against_limits_and_a_dash_when_unmeasured() {
    let text =
        sliver_usage_table(&[sliver(0, Some(usage(997, 12 << 20))), sliver(1, None)]).to_string();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[1],
        [
            "0",
            "node-0",
            "mit",
            "running",
            "1/1",
            "12Mi/512Mi",
            "2Ki/s",
            "0/s",
            "4Ki/1Gi"
        ]
    );
    assert_eq!(rows[2][4..], ["-", "-", "-", "-", "-"]);
}

#[test]
fn json_names_are_stable_and_unmeasured_usage_is_null() {
    let s = pb::SliceUsage {
        name: "demo".into(),
        state: pb::SliceState::Ready as i32,
        total: Some(usage(250, 1)),
        slivers: 2,
        reporting: 1,
        sliver_usage: vec![sliver(0, Some(usage(250, 1))), sliver(1, None)],
        ..Default::default()
    };
    let v: serde_json::Value = serde_json::from_str(&json(&SliceTop::from(&s)).unwrap()).unwrap();
    assert_eq!(v["state"], "ready");
    assert_eq!(v["usage"]["cpu_millis"], 250);
    assert_eq!(
        v["sliver_usage"][0]["usage"]["net_rx_bytes_per_second"],
        2048
    );
    assert_eq!(v["sliver_usage"][0]["limits"]["memory_bytes"], 512 << 20);
    assert!(v["sliver_usage"][1]["usage"].is_null());
    let listed = SliceTop::from(&s).without_slivers();
    assert!(listed.sliver_usage.is_empty());
}

#[test]
fn sparklines_scale_to_the_limit_or_the_highest_point() {
    let p = |cpu| pb::UsagePoint {
        mean: Some(usage(cpu, 0)),
        ..Default::default()
    };
    let h = [p(0), p(500), p(1000)];
    assert_eq!(sparkline(&h, 1000), "▁▅█");
    assert_eq!(sparkline(&h, 2000), "▁▃▅");
    assert_eq!(sparkline(&[], 1000), "");
}

#[test]
fn slices_and_nodes_read_as_used_against_limit_or_capacity() {
    let s = pb::SliceUsage {
        name: "demo".into(),
        owner: "alice".into(),
        state: pb::SliceState::Ready as i32,
        total: Some(usage(1500, 96 << 20)),
        limits: Some(pb::Resources {
            cpu_millis: 3000,
            memory_bytes: 192 << 20,
            disk_bytes: 0,
        }),
        slivers: 3,
        reporting: 2,
        ..Default::default()
    };
    let text = slices_table(&[s]).to_string();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        [
            "demo",
            "alice",
            "ready",
            "2/3",
            "1.5/3",
            "96Mi/192Mi",
            "2Ki/s",
            "0/s"
        ]
    );
    let n = pb::NodeUsage {
        name: "node-mit".into(),
        site: "mit".into(),
        state: pb::NodeState::Ready as i32,
        capacity: Some(pb::Resources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            disk_bytes: 0,
        }),
        total: Some(usage(250, 1 << 30)),
        reporting: 4,
        ..Default::default()
    };
    let text = node_table(&[n]).to_string();
    assert!(
        text.starts_with("SITE  NODE      STATE  SLIVERS  CPU"),
        "{text}"
    );
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["mit", "node-mit", "ready", "4", "0.25/4", "1Gi/8Gi", "2Ki/s", "0/s"]
    );
}
