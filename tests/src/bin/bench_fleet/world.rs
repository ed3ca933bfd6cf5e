//! The world the phases share: sites, users, client connections; helpers to read the
//! service's view of the fleet and to wait for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slicebed_proto::v1 as pb;
use slicebed_tests::client::Bearer;
use slicebed_tests::{Clients, Service};

use crate::args::Args;
use crate::{Admin, Bench, CLIENTS, CREATORS};

impl Bench {
    pub async fn setup(args: Args, svc: Service) -> Self {
        let admin = Clients::admin(&svc).await.admin;
        for i in 0..args.sites {
            admin
                .clone()
                .create_site(pb::CreateSiteRequest {
                    site: Some(pb::Site {
                        name: site_name(i),
                        enabled: true,
                        ..Default::default()
                    }),
                })
                .await
                .expect("create site");
        }
        let mut bearers = Vec::new();
        for i in 0..=CREATORS {
            let name = if i < CREATORS {
                format!("user{i}")
            } else {
                "lister".into()
            };
            let token = admin
                .clone()
                .create_user(pb::CreateUserRequest {
                    name,
                    role: pb::Role::User as i32,
                    site: site_name(i % args.sites),
                    token_ttl: None,
                })
                .await
                .expect("create user")
                .into_inner()
                .token;
            bearers.push(Bearer::new(&token).expect("ascii token"));
        }
        let mut pool = Vec::new();
        for _ in 0..CLIENTS {
            pool.push(slicebed_tests::client::channel(&svc).await);
        }
        Bench {
            args,
            svc,
            admin,
            pool: Arc::new(pool),
            bearers: Arc::new(bearers),
            made: Arc::default(),
            rows: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.svc.pid().expect("the service runs")
    }

    pub fn row(&mut self, phase: &str, measure: &str, figure: String) {
        self.rows.push((phase.into(), measure.into(), figure));
    }
}

/// What was measured: the service binary and the tree this benchmark was built from.
pub fn build_info() -> String {
    let bin = slicebed_tests::bin("slice-service");
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let version = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let tree = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(h) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{h}{}", if dirty { "+changes" } else { "" })
        }
        None => "unknown".into(),
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "service {} ({version}), bench {profile} build in tree {tree}",
        bin.display()
    )
}

pub fn site_name(i: usize) -> String {
    format!("site-{i:02}")
}

pub fn spec(name: &str, slivers: u32) -> pb::CreateSliceRequest {
    pb::CreateSliceRequest {
        name: name.into(),
        image: "slicebed/base:latest".into(),
        command: vec!["sleep".into(), "infinity".into()],
        resources: Some(pb::Resources {
            cpu_millis: 1,
            memory_bytes: 4 << 20,
            disk_bytes: 1 << 20,
        }),
        placement: Some(pb::PlacementRequest {
            slivers,
            ..Default::default()
        }),
        lease: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Nodes the service shows ready, all nodes, and the CPU all of them have allocated.
pub async fn census(admin: &Admin) -> Result<(usize, usize, i64), tonic::Status> {
    let (mut ready, mut all, mut allocated) = (0, 0, 0);
    let mut page_token = String::new();
    loop {
        let page = admin
            .clone()
            .list_nodes(pb::ListNodesRequest {
                site: String::new(),
                page_token,
            })
            .await?
            .into_inner();
        for node in &page.nodes {
            all += 1;
            ready += usize::from(node.state == pb::NodeState::Ready as i32);
            allocated += node.allocated.as_ref().map_or(0, |r| r.cpu_millis);
        }
        if page.next_page_token.is_empty() {
            return Ok((ready, all, allocated));
        }
        page_token = page.next_page_token;
    }
}

/// Polls `f` every `every` until it holds; the time it took, or None after `limit`.
pub async fn until<F, Fut>(limit: Duration, every: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

pub fn secs(d: Option<Duration>) -> String {
    d.map_or("not within the limit".into(), |d| {
        format!("{:.2} s", d.as_secs_f64())
    })
}
