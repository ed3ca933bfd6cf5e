use super::*;

const MIN: i64 = 60_000;
/// A time at the start of a bucket.
const T0: Millis = 1_700_000_100_000 - 1_700_000_100_000 % (5 * MIN);

fn cpu(m: i64) -> Usage {
    Usage {
        cpu_millis: m,
        memory_bytes: m * 1000,
        ..Default::default()
    }
}

fn book() -> Book {
    let mut b = Book::default();
    for (id, node, slice) in [("a", "n1", "s1"), ("b", "n1", "s2"), ("c", "n2", "s1")] {
        let owner = Owner {
            node: node.into(),
            slice_id: slice.into(),
        };
        b.learn(id, Some(owner), T0);
    }
    b.learn("ghost", None, T0);
    b
}

#[test]
fn a_nodes_report_about_another_nodes_sliver_is_refused_once_and_not_recorded() {
    let mut b = book();
    let r = b.record("n1", T0, &[("a".into(), cpu(10)), ("c".into(), cpu(999))]);
    assert_eq!(r.accepted, 1);
    assert_eq!(r.refused, vec![("c".to_string(), "n2".to_string())]);
    assert_eq!(b.sliver_now("c", T0), None);
    assert_eq!(b.node_now("n1", T0), Some((T0, cpu(10), 1)));
    // Refused again, but said only once.
    let r = b.record("n1", T0 + 1000, &[("c".into(), cpu(999))]);
    assert!(r.refused.is_empty());
    assert_eq!(b.sliver_now("c", 0), None);
    // Unknown and unplaced ids are ignored.
    let r = b.record(
        "n1",
        T0 + 2000,
        &[("ghost".into(), cpu(1)), ("x".into(), cpu(1))],
    );
    assert_eq!((r.accepted, r.unknown), (0, 2));
    assert_eq!(b.unknown(["a", "x", "x", "ghost"]), vec!["x".to_string()]);
}

#[test]
fn buckets_hold_the_mean_and_peak_of_five_minutes_and_close_when_the_next_starts() {
    let mut b = book();
    for (i, m) in [100, 300, 200].iter().enumerate() {
        b.record("n1", T0 + i as i64 * MIN, &[("a".into(), cpu(*m))]);
    }
    assert!(
        b.take_closed(T0 + 4 * MIN).is_empty(),
        "the bucket is still open"
    );
    let open = b.unwritten(SeriesKind::Sliver, "a");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].mean, cpu(200));
    assert_eq!(open[0].peak, cpu(300));
    // A measurement in the next bucket closes it.
    b.record("n1", T0 + 5 * MIN, &[("a".into(), cpu(50))]);
    let closed = b.take_closed(T0 + 5 * MIN);
    let a: Vec<_> = closed.iter().filter(|x| x.subject == "a").collect();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].samples, 3);
    assert_eq!(a[0].slice_id, "s1");
    assert_eq!(a[0].point.at, T0);
    assert_eq!(a[0].point.span_ms, 5 * MIN);
    assert_eq!(a[0].point.mean, cpu(200));
    let node: Vec<_> = closed
        .iter()
        .filter(|x| x.kind == SeriesKind::Node)
        .collect();
    assert_eq!(node.len(), 1);
    assert_eq!(node[0].subject, "n1");
    assert_eq!(node[0].point.peak, cpu(300));
    assert!(b.take_closed(T0 + 6 * MIN).is_empty(), "handed over once");
}

#[test]
fn a_sliver_that_goes_quiet_still_gets_its_last_bucket_written() {
    let mut b = book();
    b.record("n1", T0 + MIN, &[("a".into(), cpu(7))]);
    let closed = b.take_closed(T0 + 11 * MIN);
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(closed.iter().all(|x| x.point.at == T0 && x.samples == 1));
}

#[test]
fn recent_points_cover_half_an_hour_and_stale_figures_are_not_current() {
    let mut b = book();
    for i in 0..40 {
        b.record("n1", T0 + i * MIN, &[("a".into(), cpu(i))]);
    }
    let now = T0 + 39 * MIN;
    let pts = b.recent(SeriesKind::Sliver, "a", 0);
    assert_eq!(pts.first().map(|p| p.at), Some(now - 30 * MIN));
    assert_eq!(pts.len(), 31);
    assert_eq!(b.recent(SeriesKind::Sliver, "a", now - 2 * MIN).len(), 3);
    assert_eq!(b.sliver_now("a", now), Some((now, cpu(39))));
    assert_eq!(b.sliver_now("a", now + 1), None);
}

#[test]
fn ended_slices_and_quiet_slivers_are_forgotten() {
    let mut b = book();
    b.record("n1", T0, &[("a".into(), cpu(1)), ("b".into(), cpu(2))]);
    b.record("n2", T0, &[("c".into(), cpu(3))]);
    // Slice s2 ended: "b" and its unwritten buckets go at once.
    b.record(
        "n1",
        T0 + 5 * MIN,
        &[("a".into(), cpu(1)), ("b".into(), cpu(2))],
    );
    b.forget(T0 + 5 * MIN, |s| s != "s2");
    assert_eq!(b.sliver_now("b", 0), None);
    let closed = b.take_closed(T0 + 5 * MIN);
    assert!(closed.iter().all(|x| x.subject != "b"), "{closed:?}");
    // Quiet for longer than the recent window, everything written: forgotten.
    let later = T0 + 40 * MIN;
    let _ = b.take_closed(later);
    b.forget(later, |_| true);
    assert_eq!(b.sizes(), (0, 0, 0));
    assert_eq!(b.unknown(["a"]), vec!["a".to_string()]);
}

#[test]
fn negative_figures_are_read_as_zero_and_failed_writes_are_kept() {
    let mut b = book();
    b.record("n1", T0, &[("a".into(), cpu(-5))]);
    assert_eq!(b.sliver_now("a", 0), Some((T0, Usage::default())));
    let closed = b.take_closed(T0 + 5 * MIN);
    assert_eq!(closed.len(), 2);
    b.put_back(closed.clone());
    assert_eq!(b.take_closed(T0 + 5 * MIN), closed);
}

#[test]
fn recent_points_are_bounded_whatever_the_heartbeat() {
    let mut b = book();
    for i in 0..1000 {
        b.record("n1", T0 + i * 100, &[("a".into(), cpu(i))]);
    }
    let pts = b.recent(SeriesKind::Sliver, "a", 0);
    assert_eq!(pts.len(), MAX_RECENT_POINTS);
    assert_eq!(pts.last().map(|p| p.mean), Some(cpu(999)));
}
