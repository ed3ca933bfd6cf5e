//! Small inline SVG charts of a sliver's measured usage (CPU and memory) over the last
//! `WINDOW`, from the usage history the node managers report (`crate::usage`).
//!
//! Pure: points in, markup out. A value is drawn against the sliver's own limit (so a full
//! chart means "at its limit"), or against the series' peak when there is no limit. Time runs
//! from the first measurement in the window (or the window's start) to now, so a young sliver's
//! chart is not a dot at the right edge. Nothing is drawn for a sliver without measurements: no
//! chart is ever made up.

use std::fmt::Write;
use std::time::Duration;

use slicebed_units::Resources;

use super::html;
use crate::model::Millis;
use crate::usage::{Usage, UsagePoint};

/// How far back the charts go: every measurement of this window is kept in memory.
pub const WINDOW: Duration = crate::usage::RECENT;

const W: f64 = 120.0;
const H: f64 = 24.0;

/// One chart: `class` is `cpu` or `memory`; `value` picks the field; `limit` scales it.
fn chart(
    class: &str,
    label: &str,
    points: &[UsagePoint],
    now: Millis,
    value: impl Fn(&Usage) -> i64,
    limit: i64,
) -> String {
    let first = points.first().map_or(now, |p| p.at);
    let start = first.max(now - WINDOW.as_millis() as i64);
    let span = (now - start).max(1) as f64;
    let top = if limit > 0 {
        limit
    } else {
        points
            .iter()
            .map(|p| value(&p.mean))
            .max()
            .unwrap_or(0)
            .max(1)
    };
    let mut line = String::new();
    for p in points {
        let x = ((p.at - start) as f64 / span).clamp(0.0, 1.0) * W;
        let share = (value(&p.mean).max(0) as f64 / top as f64).clamp(0.0, 1.0);
        let y = H - 1.0 - share * (H - 2.0);
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    format!(
        "<svg class=\"spark {class}\" data-points=\"{n}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" \
         height=\"{H}\" role=\"img\" aria-label=\"{label} over the last {m} minutes\">\
         <title>{label} over the last {m} minutes</title><rect class=\"frame\" width=\"{W}\" \
         height=\"{H}\"/><polyline points=\"{pts}\"/></svg>",
        n = points.len(),
        m = WINDOW.as_secs() / 60,
        pts = line.trim_end(),
    )
}

/// The usage cell of one sliver: a chart of CPU and of memory, each with its latest figure
/// when that was measured at `current_since` or later (else "no recent measurement": its node
/// is silent), or a note that there are no measurements yet.
pub fn cell(
    points: &[UsagePoint],
    limits: Resources,
    now: Millis,
    current_since: Millis,
) -> String {
    let Some(last) = points.last() else {
        return "<span class=\"no-usage\">no measurements yet</span>".into();
    };
    if last.at < current_since {
        return format!(
            "<div class=\"usage\">{}</div><div class=\"usage\">{}</div>\
             <span class=\"no-usage\">no recent measurement</span>",
            chart(
                "cpu",
                "CPU",
                points,
                now,
                |u| u.cpu_millis,
                limits.cpu_millis
            ),
            chart(
                "memory",
                "Memory",
                points,
                now,
                |u| u.memory_bytes,
                limits.memory_bytes
            ),
        );
    }
    format!(
        "<div class=\"usage\">{} <span class=\"figure\">CPU {}</span></div>\
         <div class=\"usage\">{} <span class=\"figure\">{}</span></div>",
        chart(
            "cpu",
            "CPU",
            points,
            now,
            |u| u.cpu_millis,
            limits.cpu_millis
        ),
        if limits.cpu_millis > 0 {
            format!(
                "{}%",
                html::percent(last.mean.cpu_millis, limits.cpu_millis)
            )
        } else {
            format!("{} cores", html::cores(last.mean.cpu_millis))
        },
        chart(
            "memory",
            "Memory",
            points,
            now,
            |u| u.memory_bytes,
            limits.memory_bytes
        ),
        html::bytes(last.mean.memory_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: Millis, cpu: i64, mem: i64) -> UsagePoint {
        let u = Usage {
            cpu_millis: cpu,
            memory_bytes: mem,
            ..Default::default()
        };
        UsagePoint {
            at,
            span_ms: 0,
            mean: u,
            peak: u,
        }
    }

    #[test]
    fn charts_scale_to_the_limit_over_the_window() {
        let now = 10_000_000;
        let start = now - WINDOW.as_millis() as i64;
        let limits = Resources {
            cpu_millis: 200,
            memory_bytes: 64 << 20,
            disk_bytes: 0,
        };
        let points = [point(start - 1000, 0, 0), point(now, 200, 32 << 20)];
        let c = cell(&points, limits, now, now);
        // CPU from empty at the left edge (older points are pinned to it) to full at the right.
        assert!(c.contains("points=\"0.0,23.0 120.0,1.0\""), "{c}");
        // Memory at half its limit.
        assert!(c.contains("120.0,12.0\""), "{c}");
        assert!(c.contains("data-points=\"2\""));
        assert!(c.contains("CPU 100%") && c.contains("32 MiB"), "{c}");
        // A young sliver's measurements span the whole width.
        let young = [
            point(now - 4000, 100, 0),
            point(now - 2000, 50, 0),
            point(now, 0, 0),
        ];
        let c = cell(&young, limits, now, now - 4000);
        assert!(
            c.contains("points=\"0.0,12.0 60.0,17.5 120.0,23.0\""),
            "{c}"
        );
    }

    #[test]
    fn nothing_is_drawn_without_measurements() {
        let c = cell(&[], Resources::default(), 0, 0);
        assert!(!c.contains("<svg") && c.contains("no measurements yet"));
        // Old measurements are charted, but no figure passes for a current one.
        let c = cell(
            &[point(0, 50, 1 << 20)],
            Resources::default(),
            60_000,
            30_000,
        );
        assert!(
            c.contains("<svg") && c.contains("no recent measurement"),
            "{c}"
        );
        assert!(!c.contains("1 MiB"), "{c}");
        // Without a limit, the series' own peak is the top.
        let c = chart("cpu", "CPU", &[point(0, 50, 0)], 0, |u| u.cpu_millis, 0);
        assert!(c.contains(",1.0\""), "{c}");
    }
}
