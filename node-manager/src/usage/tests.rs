use super::*;
use crate::domain::{ContainerPhase, ObservedSliver, Resources};
use crate::runtime::fake::{Counters, FakeRuntime};

fn stats(container: &str, cpu: u64, rx: u64, tx: u64) -> ContainerStats {
    ContainerStats {
        container_id: container.into(),
        sliver_id: "v".into(),
        cpu_nanos: cpu,
        memory_bytes: 64 << 20,
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        started_at: None,
        read_at: None,
    }
}

#[test]
fn rates_are_counter_deltas_over_the_time_between_passes() {
    let a = stats("c1", 1_000_000_000, 1000, 0);
    // 1.5 s of CPU in 2 s: three quarters of a core; 4 KiB in 2 s.
    let b = stats("c1", 2_500_000_000, 1000 + 4096, 10);
    let u = rates(&a, &b, Duration::from_secs(2)).unwrap();
    assert_eq!(u.cpu_millis, 750);
    assert_eq!((u.net_rx_bps, u.net_tx_bps), (2048, 5));
    assert_eq!(u.memory_bytes, 64 << 20);
    // Two busy cores over 500 ms.
    let c = stats("c1", 2_500_000_000 + 1_000_000_000, 5096, 10);
    assert_eq!(
        rates(&b, &c, Duration::from_millis(500))
            .unwrap()
            .cpu_millis,
        2000
    );
}

#[test]
fn readings_that_cannot_be_compared_give_no_rate() {
    let a = stats("c1", 5_000, 10, 10);
    assert_eq!(
        rates(&a, &stats("c2", 9_000, 20, 20), Duration::from_secs(1)),
        None
    );
    assert_eq!(
        rates(&a, &stats("c1", 4_000, 20, 20), Duration::from_secs(1)),
        None
    );
    assert_eq!(
        rates(&a, &stats("c1", 9_000, 5, 20), Duration::from_secs(1)),
        None
    );
    assert_eq!(rates(&a, &stats("c1", 9_000, 20, 20), Duration::ZERO), None);
    // An idle sliver is zero, not absent.
    let idle = rates(&a, &a.clone(), Duration::from_secs(1)).unwrap();
    assert_eq!((idle.cpu_millis, idle.net_rx_bps), (0, 0));
}

fn running(rt: &FakeRuntime, container: &str, sliver: &str) {
    rt.insert(ObservedSliver {
        container_id: container.into(),
        sliver_id: sliver.into(),
        slice: "web".into(),
        generation: 1,
        phase: ContainerPhase::Running,
        exit_code: None,
        oom_killed: false,
        restarts: 0,
        limits: Resources::default(),
        error: None,
        ends_at: None,
    });
}

#[tokio::test(start_paused = true)]
async fn a_pass_reports_slivers_seen_in_the_previous_one_with_their_disk_use() {
    let rt = FakeRuntime::new("n1");
    running(&rt, "c1", "busy");
    running(&rt, "c2", "idle");
    let disk = DiskSizes::default();
    disk.set(HashMap::from([("c1".to_string(), 4096)]));
    let mut s = Sampler::new(rt.clone(), disk, Baselines::default());
    let at = |cpu: u64| Counters {
        cpu_nanos: cpu,
        memory_bytes: 1 << 20,
        ..Default::default()
    };
    rt.set_counters("busy", at(0));
    assert!(
        s.pass().await.unwrap().is_empty(),
        "the first pass is only a baseline"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    rt.set_counters("busy", at(10_000_000_000));
    let mut got = s.pass().await.unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "busy");
    assert_eq!(got[0].1.cpu_millis, 1000);
    assert_eq!(got[0].1.disk_bytes, 4096);
    assert_eq!((got[1].0.as_str(), got[1].1.cpu_millis), ("idle", 0));
    // A sliver whose container stopped drops out; one seen for the first time waits a pass.
    rt.update("c2", |c| c.phase = ContainerPhase::EXITED);
    running(&rt, "c3", "new");
    tokio::time::advance(Duration::from_secs(10)).await;
    let got = s.pass().await.unwrap();
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["busy"]
    );
    assert_eq!(got[0].1.cpu_millis, 0);
}

#[tokio::test(start_paused = true)]
async fn the_task_publishes_a_pass_before_each_heartbeat_and_nothing_when_the_engine_is_away() {
    let rt = FakeRuntime::new("n1");
    running(&rt, "c1", "busy");
    let (tx, mut rx) = watch::channel(None);
    let start = Instant::now();
    let every = Duration::from_secs(8);
    let task = tokio::spawn(run(
        rt.clone(),
        DiskSizes::default(),
        Baselines::default(),
        start,
        every,
        tx,
    ));
    // At once: a baseline (the fake does not say when its containers started).
    rx.changed().await.unwrap();
    let (at, figures) = rx.borrow_and_update().clone().unwrap();
    assert_eq!((at, figures.len()), (start, 0));
    rx.changed().await.unwrap();
    let (at, figures) = rx.borrow_and_update().clone().unwrap();
    assert_eq!(
        at.duration_since(start),
        every - lead(every),
        "a pass ends before the beat"
    );
    assert_eq!(figures.len(), 1);
    rt.set_down(true);
    rx.changed().await.unwrap();
    assert!(rx.borrow_and_update().as_ref().unwrap().1.is_empty());
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_first_reading_counts_from_the_containers_start_and_baselines_outlive_a_sampler() {
    let rt = FakeRuntime::new("n1");
    running(&rt, "c1", "busy");
    // Two seconds old, one and a half of them busy, 4 KiB received.
    let started = SystemTime::now() - Duration::from_secs(2);
    rt.set_counters(
        "busy",
        Counters {
            cpu_nanos: 1_500_000_000,
            rx: 4096,
            started_at: Some(started),
            ..Default::default()
        },
    );
    let prev = Baselines::default();
    let got = Sampler::new(rt.clone(), DiskSizes::default(), prev.clone())
        .pass()
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let u = got[0].1;
    assert!((700..=760).contains(&u.cpu_millis), "{u:?}");
    assert!((1900..=2100).contains(&u.net_rx_bps), "{u:?}");
    // A new connection's sampler goes on from the same baselines: one second more, all busy.
    tokio::time::advance(Duration::from_secs(1)).await;
    rt.set_counters(
        "busy",
        Counters {
            cpu_nanos: 2_500_000_000,
            rx: 4096,
            started_at: Some(started),
            ..Default::default()
        },
    );
    let got = Sampler::new(rt.clone(), DiskSizes::default(), prev)
        .pass()
        .await
        .unwrap();
    assert_eq!((got[0].1.cpu_millis, got[0].1.net_rx_bps), (1000, 0));
    // A container that started a moment ago gives no rate yet.
    let now = SystemTime::now();
    let fresh = ContainerStats {
        started_at: Some(now),
        ..stats("c9", 1, 0, 0)
    };
    assert_eq!(since_start(&fresh, now + Duration::from_millis(50)), None);
    assert!(
        since_start(&stats("c9", 1, 0, 0), now).is_none(),
        "no start time known"
    );
}

#[tokio::test]
async fn rates_use_the_engines_read_times_not_the_passes() {
    // Docker reads counters on its own one-second tick: two passes a moment apart can get
    // readings two seconds apart (or the same reading twice). The rate must follow the read
    // times, or a one-core loop shows as two cores.
    let rt = FakeRuntime::new("n1");
    running(&rt, "c1", "loop");
    let t0 = SystemTime::now() - Duration::from_secs(10);
    let at = |secs: u64, cpu: u64| Counters {
        cpu_nanos: cpu,
        read_at: Some(t0 + Duration::from_secs(secs)),
        ..Default::default()
    };
    let mut sampler = Sampler::new(rt.clone(), DiskSizes::default(), Baselines::default());
    rt.set_counters("loop", at(0, 1_000_000_000));
    sampler.pass().await.unwrap();
    // Asked again at once, the engine answers with a reading 2 s later: 1 core, not 2,000 cores.
    rt.set_counters("loop", at(2, 3_000_000_000));
    let got = sampler.pass().await.unwrap();
    assert_eq!(got[0].1.cpu_millis, 1000);
    // The same reading again gives no figure and keeps the baseline...
    assert!(sampler.pass().await.unwrap().is_empty());
    // ...so the next reading is measured from it: half a core over 4 s.
    rt.set_counters("loop", at(6, 5_000_000_000));
    assert_eq!(sampler.pass().await.unwrap()[0].1.cpu_millis, 500);
}

#[test]
fn a_first_reading_counts_to_the_engines_read_time() {
    let started = SystemTime::now() - Duration::from_secs(60);
    let first = ContainerStats {
        started_at: Some(started),
        read_at: Some(started + Duration::from_secs(4)),
        ..stats("c1", 2_000_000_000, 0, 0)
    };
    let u = since_start(&first, first.read_at.unwrap()).unwrap();
    assert_eq!(u.cpu_millis, 500);
}
