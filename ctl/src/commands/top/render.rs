//! How `top` looks as text: tables with used/limit pairs and a small CPU sparkline for
//! histories (the JSON views are in `view`).

use slicebed_proto::v1 as pb;

use crate::{
    output::{
        view::{node_state, slice_state, sliver_state},
        Table,
    },
    quantity::{format_cpu, format_size},
};

/// "0.95/2" cores.
fn cpu(used: i64, limit: i64) -> String {
    format!("{}/{}", format_cpu(round_cpu(used)), format_cpu(limit))
}

/// CPU to two decimals of a core, so a busy loop reads 1 rather than 0.997.
fn round_cpu(m: i64) -> i64 {
    (m + 5) / 10 * 10
}

/// "12Mi/512Mi".
fn mem(used: i64, limit: i64) -> String {
    format!("{}/{}", format_size(used), format_size(limit))
}

/// "1.2Ki/s".
fn rate(bps: i64) -> String {
    format!("{}/s", format_size(bps))
}

/// One character per point of mean CPU, scaled to the highest point (or the limit).
pub fn sparkline(h: &[pb::UsagePoint], limit: i64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let vals: Vec<i64> = h
        .iter()
        .map(|p| p.mean.map(|m| m.cpu_millis).unwrap_or(0).max(0))
        .collect();
    let top = vals.iter().copied().max().unwrap_or(0).max(limit).max(1);
    vals.iter()
        .map(|v| BARS[((v * 7 + top / 2) / top).clamp(0, 7) as usize])
        .collect()
}

pub fn slices_table(slices: &[pb::SliceUsage]) -> Table {
    let mut t = Table::new([
        "SLICE", "OWNER", "STATE", "SLIVERS", "CPU", "MEMORY", "NET RX", "NET TX",
    ]);
    for s in slices {
        let (u, l) = (s.total.unwrap_or_default(), s.limits.unwrap_or_default());
        t.row([
            s.name.clone(),
            s.owner.clone(),
            slice_state(s.state()),
            format!("{}/{}", s.reporting, s.slivers),
            cpu(u.cpu_millis, l.cpu_millis),
            mem(u.memory_bytes, l.memory_bytes),
            rate(u.net_rx_bytes_per_second),
            rate(u.net_tx_bytes_per_second),
        ]);
    }
    t
}

/// One row per sliver: usage against its limits ("-" where nothing was measured lately).
pub fn sliver_usage_table(slivers: &[pb::SliverUsage]) -> Table {
    let history = slivers.iter().any(|v| !v.history.is_empty());
    let mut headers = vec![
        "INDEX", "NODE", "SITE", "STATE", "CPU", "MEMORY", "NET RX", "NET TX", "DISK",
    ];
    if history {
        headers.push("CPU HISTORY");
    }
    let mut t = Table::new(headers);
    for v in slivers {
        let l = v.limits.unwrap_or_default();
        let mut row = vec![
            v.index.to_string(),
            v.node.clone(),
            v.site.clone(),
            sliver_state(v.state()),
        ];
        match v.current {
            Some(u) => row.extend([
                cpu(u.cpu_millis, l.cpu_millis),
                mem(u.memory_bytes, l.memory_bytes),
                rate(u.net_rx_bytes_per_second),
                rate(u.net_tx_bytes_per_second),
                mem(u.disk_bytes, l.disk_bytes),
            ]),
            None => row.extend([
                "-".to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
        if history {
            row.push(sparkline(&v.history, l.cpu_millis));
        }
        t.row(row);
    }
    t
}

/// `top SLICE`: a line of totals, then the slivers.
pub fn slice_text(s: &pb::SliceUsage) -> String {
    let (u, l) = (s.total.unwrap_or_default(), s.limits.unwrap_or_default());
    let mut text = format!(
        "Slice {} ({}): {} of {} slivers measured, CPU {}, memory {}, net {} in, {} out\n\n",
        s.name,
        slice_state(s.state()),
        s.reporting,
        s.slivers,
        cpu(u.cpu_millis, l.cpu_millis),
        mem(u.memory_bytes, l.memory_bytes),
        rate(u.net_rx_bytes_per_second),
        rate(u.net_tx_bytes_per_second),
    );
    text.push_str(&sliver_usage_table(&s.sliver_usage).to_string());
    text
}

pub fn node_table(nodes: &[pb::NodeUsage]) -> Table {
    let history = nodes.iter().any(|n| !n.history.is_empty());
    let mut headers = vec![
        "SITE", "NODE", "STATE", "SLIVERS", "CPU", "MEMORY", "NET RX", "NET TX",
    ];
    if history {
        headers.push("CPU HISTORY");
    }
    let mut t = Table::new(headers);
    for n in nodes {
        let (u, c) = (n.total.unwrap_or_default(), n.capacity.unwrap_or_default());
        let mut row = vec![
            n.site.clone(),
            n.name.clone(),
            node_state(n.state()),
            n.reporting.to_string(),
            cpu(u.cpu_millis, c.cpu_millis),
            mem(u.memory_bytes, c.memory_bytes),
            rate(u.net_rx_bytes_per_second),
            rate(u.net_tx_bytes_per_second),
        ];
        if history {
            row.push(sparkline(&n.history, c.cpu_millis));
        }
        t.row(row);
    }
    t
}

#[cfg(test)]
mod tests;
