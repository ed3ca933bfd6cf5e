//! `bench_watch`: does a crowd of WatchEvents streams slow other users down?
//!
//! Against one real `slice-service` (SQLite), each round measures another user's WhoAmI
//! latency (sequential calls on its own connection; p50 and p99) in three settings, one after
//! the other so that the machine's drift hits them alike:
//!
//! 1. **quiet**: no watchers;
//! 2. **one greedy user**: one user attempts 2,000 watch streams at once (all but the cap are
//!    refused) and holds what it got, while the probe runs;
//! 3. **100 users**: 100 users hold 20 streams each (2,000 in all; half watch their own events,
//!    half a site an admin changes 10 times a second, so events are being delivered).
//!
//! It prints each round, then the medians over rounds and the ratios to quiet.
//!
//! Usage: `SLICEBED_BIN_DIR=target/release target/release/bench_watch [ROUNDS] [CALLS]` after
//! `cargo build --release --workspace --bins`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use slicebed_proto::v1 as pb;
use slicebed_tests::{Clients, Service};
use tonic::Code;

const USERS: usize = 100;
const PER_USER: usize = 20;
const GREEDY: usize = 2000;

fn site(name: &str) -> pb::CreateSiteRequest {
    pb::CreateSiteRequest {
        site: Some(pb::Site {
            name: name.into(),
            enabled: true,
            ..Default::default()
        }),
    }
}

async fn user(a: &Clients, svc: &Service, name: &str) -> Clients {
    let t = a
        .admin
        .clone()
        .create_user(pb::CreateUserRequest {
            name: name.into(),
            role: pb::Role::User as i32,
            site: "home".into(),
            token_ttl: None,
        })
        .await
        .expect("create user")
        .into_inner()
        .token;
    // Its own connection, as a separate client would have.
    Clients::new(svc, Some(&t)).await
}

/// p50 and p99 of `calls` sequential WhoAmI calls.
async fn probe(c: &Clients, calls: usize) -> (Duration, Duration) {
    let mut t = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        c.slices
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect("whoami");
        t.push(start.elapsed());
    }
    t.sort();
    let at = |q: f64| t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1];
    (at(0.50), at(0.99))
}

/// Holds a watch open, reading (and dropping) whatever it delivers, until aborted.
fn hold(mut s: tonic::Streaming<pb::Event>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = s.next().await {} })
}

async fn open(c: &Clients, object: &str) -> Result<tonic::Streaming<pb::Event>, tonic::Status> {
    c.slices
        .clone()
        .watch_events(pb::WatchEventsRequest {
            object: object.into(),
            after_id: 0,
        })
        .await
        .map(|r| r.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5);
    let calls = args.get(1).copied().unwrap_or(500);

    let svc = Service::start().await;
    let a = Clients::admin(&svc).await;
    a.admin.clone().create_site(site("home")).await.unwrap();
    a.admin.clone().create_site(site("hot")).await.unwrap();
    let prober = user(&a, &svc, "prober").await;
    let greedy = user(&a, &svc, "greedy").await;
    let mut crowd = Vec::new();
    for i in 0..USERS {
        crowd.push(user(&a, &svc, &format!("w{i}")).await);
    }
    // Events to deliver: an admin churns a site (create, delete) about 10 times a second.
    let churn = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for i in 0.. {
                tick.tick().await;
                let name = format!("churn{}", i % 2);
                if i % 4 < 2 {
                    let _ = a.admin.clone().create_site(site(&name)).await;
                } else {
                    let _ = a
                        .admin
                        .clone()
                        .delete_site(pb::DeleteSiteRequest { name })
                        .await;
                }
            }
        })
    };
    probe(&prober, calls / 5).await; // warm-up

    let mut quiet = Vec::new();
    let mut greedy_r = Vec::new();
    let mut crowd_r = Vec::new();
    for r in 0..rounds {
        let q = probe(&prober, calls).await;

        // One user tries 2,000 streams at once.
        let attempts = (0..GREEDY).map(|_| open(&greedy, ""));
        let probing = probe(&prober, calls);
        let (results, g) = tokio::join!(futures::future::join_all(attempts), probing);
        let mut held = Vec::new();
        let mut refused = 0;
        for res in results {
            match res {
                Ok(s) => held.push(hold(s)),
                Err(e) if e.code() == Code::ResourceExhausted => refused += 1,
                Err(e) => panic!("unexpected refusal: {e:?}"),
            }
        }
        let greedy_held = held.len();
        for h in held.drain(..) {
            h.abort();
        }

        // 100 users hold 20 each.
        let mut opens = Vec::new();
        for (i, c) in crowd.iter().enumerate() {
            for k in 0..PER_USER {
                let object = if k % 2 == 0 {
                    String::new()
                } else {
                    format!("site/churn{}", i % 2)
                };
                opens.push(async move { open(c, &object).await });
            }
        }
        for s in futures::future::join_all(opens).await {
            held.push(hold(s.expect("a watch within the cap")));
        }
        let crowd_held = held.len();
        let c = probe(&prober, calls).await;
        for h in held.drain(..) {
            h.abort();
        }
        println!(
            "round {r}: quiet p50 {:.2} p99 {:.2} ms | greedy ({greedy_held} held, {refused} \
             refused) p50 {:.2} p99 {:.2} ms | {crowd_held} held by {USERS} users p50 {:.2} \
             p99 {:.2} ms",
            ms(q.0),
            ms(q.1),
            ms(g.0),
            ms(g.1),
            ms(c.0),
            ms(c.1)
        );
        quiet.push(q);
        greedy_r.push(g);
        crowd_r.push(c);
        // Let the service notice the closed streams before the next quiet measurement.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    churn.abort();

    let med = |v: &[(Duration, Duration)]| {
        (
            median(v.iter().map(|x| x.0).collect()),
            median(v.iter().map(|x| x.1).collect()),
        )
    };
    let (q, g, c) = (med(&quiet), med(&greedy_r), med(&crowd_r));
    println!("WhoAmI of another user, {calls} sequential calls, median of {rounds} rounds:");
    println!(
        "  quiet:                       p50 {:.2} ms  p99 {:.2} ms",
        ms(q.0),
        ms(q.1)
    );
    println!(
        "  {GREEDY} attempted by one user:  p50 {:.2} ms  p99 {:.2} ms  ({:.2}x / {:.2}x)",
        ms(g.0),
        ms(g.1),
        ms(g.0) / ms(q.0),
        ms(g.1) / ms(q.1)
    );
    println!(
        "  {} held by {USERS} users:      p50 {:.2} ms  p99 {:.2} ms  ({:.2}x / {:.2}x)",
        USERS * PER_USER,
        ms(c.0),
        ms(c.1),
        ms(c.0) / ms(q.0),
        ms(c.1) / ms(q.1)
    );
    println!("  target: p99 under 50 ms");
}
