//! WatchEvents from the core's one feed: a watcher whose client stops reading falls behind
//! the broadcast, and must still get every event, once, in order.

use super::*;

#[tokio::test]
async fn a_watcher_that_lags_past_the_broadcast_gets_every_event_in_order() {
    let mut bed = TestBed::new().await;
    let mut rx = bed.core.watch_events(&bed.admin, "", 0).await.unwrap();
    let mut quiet = bed
        .core
        .watch_events(&bed.admin, "site/s7", 0)
        .await
        .unwrap();
    // Nobody reads `rx` while more events are appended than the broadcast keeps.
    let n = 5000;
    for i in 0..n {
        bed.site(&format!("s{i}")).await;
    }
    let mut last = 0;
    let mut sites = 0;
    while sites < n {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
            .await
            .expect("the lagging watch catches up")
            .expect("open")
            .expect("no error");
        assert!(e.id > last, "{} after {last}", e.id);
        last = e.id;
        if e.object.starts_with("site/") && e.action == "created" {
            assert_eq!(e.object, format!("site/s{sites}"));
            sites += 1;
        }
    }
    // A filtered watcher got exactly its one object's event.
    let e = quiet.recv().await.unwrap().unwrap();
    assert_eq!(e.object, "site/s7");
    assert!(quiet.try_recv().is_err());
}
