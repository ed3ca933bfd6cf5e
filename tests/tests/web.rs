//! The web status page end to end: a real service with `[web] listen` on port 0, real node
//! managers on the local Docker engine and a real slice.
//!
//! Over plain HTTP: the public page and its fragment show sites and nodes but no slice; the
//! private endpoints refuse a missing, unknown or revoked token and an enrollment token; a PI
//! and an admin see the slice as ListSlices shows it them, another user sees nothing of it;
//! hostile site and slice text is escaped; usage charts appear once the node has measured;
//! the live event stream delivers the slice's end to its owner and nothing of it to others. In headless Chromium (Debian's `chromium`, driven over the
//! DevTools protocol): the map shows the three sites, the page without a token shows no slice,
//! a token shows the slice running, and the page updates when a killed container ends its
//! sliver and when a node goes silent. A screenshot is saved and its path printed.

mod common;

use std::time::Duration;

use common::testbed::*;
use common::*;
use serde_json::json;
use slicebed_proto::v1 as pb;
use slicebed_tests::cdp::{chromium_path, Browser};
use slicebed_tests::nm::{unique, NodeManager};
use slicebed_tests::{wait_for, Clients, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Heartbeats every 2 s: a silent node shows within 4 s, and a node's usage sampling pass
/// (cut off at half an interval) has time to finish on a busy machine.
const WEB: &str = "[nodes]\nheartbeat_interval = \"2s\"\nmissed_heartbeats = 2\n\
                   [web]\nlisten = \"127.0.0.1:0\"\n";

/// The status page's address, from `<data-dir>/web.addr`.
async fn web_addr(svc: &Service) -> String {
    let file = svc.dir.join("web.addr");
    wait_for("web.addr", Duration::from_secs(10), || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await
}

/// One HTTP answer.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `METHOD path` over plain HTTP/1.1, with a bearer token if given.
async fn request(addr: &str, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the status page");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .expect("read the answer");
    let raw = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head[9..12].parse().expect("a status code");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(addr: &str, path: &str, token: Option<&str>) -> Reply {
    request(addr, "GET", path, token).await
}

fn site_at(name: &str, display: &str, city: &str, lat: f64, lon: f64) -> pb::CreateSiteRequest {
    pb::CreateSiteRequest {
        site: Some(pb::Site {
            name: name.into(),
            display_name: display.into(),
            city: city.into(),
            country: "XX".into(),
            latitude: lat,
            longitude: lon,
            enabled: true,
            ..Default::default()
        }),
    }
}

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

#[tokio::test]
async fn without_a_token_the_page_shows_no_slice_and_other_tokens_see_nothing_of_it() {
    let svc = Service::start_with(WEB).await;
    let addr = web_addr(&svc).await;
    let admin = Clients::admin(&svc).await;
    let mut a = admin.admin.clone();
    a.create_site(site_at("mit", "MIT", "Cambridge", 42.36, -71.09))
        .await
        .unwrap();
    a.create_site(site_at("evil", HOSTILE, "\"'><b>x", 10.0, 10.0))
        .await
        .unwrap();
    let node = unique("wn");
    let _nm = NodeManager::start(&svc, "mit", &node).await;
    wait_ready(&admin, 1).await;
    let alice = make_user(&admin, "alice", "mit").await;
    let bob = make_user(&admin, "bob", "mit").await;
    let name = unique("webp");
    let mut req = web_slice(&name, 1);
    req.description = format!("</td>{HOSTILE}");
    Clients::new(&svc, Some(&alice))
        .await
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("alice creates a slice");
    let running = wait_running(&admin, &name).await;
    let sliver = running.slivers[0].id.clone();

    // The public page: sites and nodes, escaped, and nothing of the slice.
    let page = get(&addr, "/", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.body.contains("data-site=\"mit\"") && page.body.contains("data-site=\"evil\""));
    assert!(page.body.contains(&format!("data-node=\"{node}\"")));
    assert!(page
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(page.body.contains("&quot;&#39;&gt;&lt;b&gt;x"));
    assert!(!page.body.contains("<script>alert") && !page.body.contains("<img"));
    assert_eq!(
        page.body.matches("<script").count(),
        1,
        "only the embedded app.js"
    );
    for secret in [name.as_str(), sliver.as_str(), "alice"] {
        assert!(
            !page.body.contains(secret),
            "{secret} is on the public page"
        );
    }
    let fragment = get(&addr, "/overview", None).await;
    assert_eq!(fragment.status, 200);
    assert!(
        fragment.body.contains("data-count=\"slices\">1<"),
        "{}",
        fragment.body
    );
    assert!(!fragment.body.contains(&name));

    // No, malformed, unknown token: 401 and nothing.
    for token in [None, Some("sbu_".to_string() + &"0".repeat(64))] {
        let r = get(&addr, "/api/mine", token.as_deref()).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.header("www-authenticate").is_some());
        assert!(!r.body.contains(&name) && !r.body.contains(&sliver));
        let r = get(&addr, "/api/events", token.as_deref()).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // Another user of the same site: their own (empty) view.
    let r = get(&addr, "/api/mine", Some(&bob)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("data-user=\"bob\""));
    assert!(
        !r.body.contains(&name) && !r.body.contains(&sliver),
        "{}",
        r.body
    );

    // The owner: the slice, its sliver and node, the description escaped.
    let r = get(&addr, "/api/mine", Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.body.contains(&format!("data-slice=\"{name}\"")),
        "{}",
        r.body
    );
    assert!(r
        .body
        .contains(&format!("data-sliver=\"{sliver}\" data-state=\"running\"")));
    assert!(r.body.contains(&node));
    assert!(
        r.body.contains("&lt;/td&gt;&lt;script&gt;alert(1)"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script") && !r.body.contains("</td><script"));
    // Usage charts from what the node measured, once it has measured twice.
    let points = wait_for(
        "two usage measurements",
        Duration::from_secs(20),
        || async {
            let r = get(&addr, "/api/mine", Some(&alice)).await;
            let row = r.body.split(&format!("data-sliver=\"{sliver}\"")).nth(1)?;
            let row = row.split("</tr>").next()?;
            let n: usize = row
                .split("class=\"spark cpu\" data-points=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            (n >= 2 && row.contains("class=\"spark memory\"")).then_some(n)
        },
    )
    .await;
    assert!(points >= 2);

    // The API's visibility rule: a PI sees their site's slices, an admin every slice.
    let pat = make_user_as(&admin, "pat", pb::Role::Pi, "mit").await;
    for (who, token) in [("pat", &pat), ("admin", &svc.admin_token)] {
        let r = get(&addr, "/api/mine", Some(token)).await;
        assert!(
            r.body.contains(&format!("data-sliver=\"{sliver}\"")),
            "{who}: {}",
            r.body
        );
    }
    // An enrollment token is not a user's: refused, and shows nothing.
    let enroll = a
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let r = get(&addr, "/api/mine", Some(&enroll)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!r.body.contains(&name));

    // A revoked token is refused as the API refuses it.
    let extra = Clients::new(&svc, Some(&alice))
        .await
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            description: "web test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        get(&addr, "/api/mine", Some(&extra.token)).await.status,
        200
    );
    a.revoke_token(pb::RevokeTokenRequest {
        id: extra.info.unwrap().id,
    })
    .await
    .unwrap();
    let r = get(&addr, "/api/mine", Some(&extra.token)).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("revoked") && !r.body.contains(&name),
        "{}",
        r.body
    );

    // The form's fallback never reads the token; assets are embedded; nothing else is served.
    let r = request(&addr, "POST", "/sign-in", None).await;
    assert_eq!(r.status, 400);
    let js = get(&addr, "/static/app.js", None).await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    let map = get(&addr, "/static/world.svg", None).await;
    assert_eq!(map.header("content-type"), Some("image/svg+xml"));
    assert!(map.body.contains("Natural Earth"));
    assert_eq!(get(&addr, "/static/../Cargo.toml", None).await.status, 404);

    // The live stream: the slice's end reaches its owner, and nothing of it another user.
    let mut alices = Events::open(&addr, &alice).await;
    let mut bobs = Events::open(&addr, &bob).await;
    Clients::new(&svc, Some(&alice))
        .await
        .slices
        .clone()
        .delete_slice(pb::DeleteSliceRequest { name: name.clone() })
        .await
        .unwrap();
    alices.until(&format!("\"object\":\"slice/{name}\"")).await;
    assert!(
        alices.seen.contains("\"action\":\"deleted\""),
        "{}",
        alices.seen
    );
    // Bob acts after the delete: once his stream shows that, it has passed the delete.
    Clients::new(&svc, Some(&bob))
        .await
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest::default())
        .await
        .unwrap();
    bobs.until("\"actor\":\"user/bob\"").await;
    assert!(!bobs.seen.contains(&name), "bob saw {name}: {}", bobs.seen);
}

/// A raw `/api/events` stream and what it has delivered so far.
struct Events {
    stream: tokio::net::TcpStream,
    seen: String,
}

impl Events {
    /// Opens the stream and waits for its first (blank) line: from then on it watches.
    async fn open(addr: &str, token: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut e = Events {
            stream,
            seen: String::new(),
        };
        e.until("\r\n\r\n").await;
        assert!(e.seen.starts_with("HTTP/1.1 200"), "{}", e.seen);
        e
    }

    /// Reads until `want` has arrived (at most 20 s).
    async fn until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {want:?} on the stream within 20 s: {}", self.seen))
                .unwrap();
            assert!(n > 0, "the stream closed: {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

/// Skips (or, in CI, fails) when Debian's chromium is not installed.
fn browser_or_skip() -> Option<std::path::PathBuf> {
    let found = chromium_path();
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        );
        eprintln!(
            "NOTICE: chromium not found; skipping the browser test (apt-get install chromium)"
        );
    }
    found
}

#[tokio::test]
async fn the_page_shows_three_sites_on_the_map_and_a_slice_that_changes_state_in_chromium() {
    let Some(chromium) = browser_or_skip() else {
        return;
    };
    let svc = Service::start_with(WEB).await;
    let addr = web_addr(&svc).await;
    let admin = Clients::admin(&svc).await;
    let sites = [
        ("mit", "MIT", "Cambridge", 42.36, -71.09),
        ("eth", "ETH Zurich", "Zurich", 47.38, 8.55),
        ("kaist", "KAIST", "Daejeon", 36.37, 127.36),
    ];
    let mut nodes: Vec<NodeManager> = Vec::new();
    for (name, display, city, lat, lon) in sites {
        admin
            .admin
            .clone()
            .create_site(site_at(name, display, city, lat, lon))
            .await
            .unwrap();
        nodes.push(NodeManager::start(&svc, name, &unique(name)).await);
    }
    wait_ready(&admin, 3).await;
    let alice = make_user(&admin, "alice", "mit").await;
    let name = unique("demo");
    let mut req = web_slice(&name, 1);
    req.restart_policy = pb::RestartPolicy::Never as i32;
    Clients::new(&svc, Some(&alice))
        .await
        .slices
        .clone()
        .create_slice(req)
        .await
        .expect("create the slice");
    let running = wait_running(&admin, &name).await;
    assert_eq!(running.slivers.len(), 3);

    let mut b = Browser::launch(&chromium, 1280, 1400).await;
    b.navigate(&format!("http://{addr}/")).await;

    // The map: a dot per site, west to east, every node ready.
    let dots = b
        .eval(
            "[...document.querySelectorAll('#map g.site')].map(g => [g.dataset.site, \
             g.getAttribute('class'), Number(g.querySelector('circle').getAttribute('cx'))])",
        )
        .await;
    let dots = dots.as_array().expect("dots").clone();
    let names: Vec<&str> = dots.iter().map(|d| d[0].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{dots:?}");
    for d in &dots {
        assert_eq!(d[1], "site up", "{dots:?}");
    }
    let x = |site: &str| {
        dots.iter().find(|d| d[0] == site).expect(site)[2]
            .as_f64()
            .unwrap()
    };
    assert!(x("mit") < x("eth") && x("eth") < x("kaist"), "{dots:?}");
    let land = b
        .eval("fetch('/static/world.svg').then(r => r.ok && r.headers.get('content-type'))")
        .await;
    assert_eq!(land, json!("image/svg+xml"));
    let ready = b
        .eval("document.querySelectorAll('#sites .state.ready').length")
        .await;
    assert_eq!(ready, json!(3));
    // Without a token: no slice anywhere in the document.
    let html = b.eval("document.documentElement.outerHTML").await;
    assert!(
        !html.as_str().unwrap().contains(&name),
        "the public page names the slice"
    );

    // A token: the slice and its three running slivers.
    b.eval(&format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('token-form').requestSubmit(); true",
        json!(alice)
    ))
    .await;
    let running_rows = format!(
        "document.querySelectorAll('#mine-content article[data-slice=\"{name}\"] \
         tr[data-state=\"running\"]').length"
    );
    let start = std::time::Instant::now();
    while b.eval(&running_rows).await != json!(3) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the page did not show 3 running slivers within 30 s: {}; problems: {:?}",
            b.eval("document.getElementById('mine').innerText").await,
            b.problems()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each running sliver gets CPU and memory charts once its node has measured it twice.
    let charted = "[...document.querySelectorAll('#mine-content tr[data-state=\"running\"] \
                   svg.spark.cpu')].filter(s => Number(s.dataset.points) >= 2).length";
    let start = std::time::Instant::now();
    while b.eval(charted).await != json!(3) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no usage charts within 30 s: {}",
            b.eval("document.getElementById('mine-content').innerHTML")
                .await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = b.eval("location.href").await;
    assert!(!url.as_str().unwrap().contains("sbu_"), "{url}");
    assert_eq!(
        b.eval("document.getElementById('token').value").await,
        json!("")
    );

    // A sliver's container dies; with restart "never" the sliver ends, and the page shows it.
    let victim = &running.slivers[0];
    let container = containers(&victim.node)
        .await
        .into_iter()
        .find(|(_, n)| n.contains(&victim.id))
        .expect("the sliver's container");
    docker()
        .kill_container(
            &container.0,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .expect("docker kill");
    let state = format!(
        "(document.querySelector('tr[data-sliver=\"{}\"]') || {{}}).dataset?.state",
        victim.id
    );
    let start = std::time::Instant::now();
    loop {
        let s = b.eval(&state).await;
        if s == json!("failed") || s == json!("exited") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the page still shows the killed sliver as {s} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The live event stream carried it.
    let events = b.eval("document.getElementById('events').innerText").await;
    let events = events.as_str().unwrap_or_default().to_string();
    assert!(
        events.contains(&format!("sliver/{}", victim.id)),
        "events list: {events}"
    );

    let png = b.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-status.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    println!(
        "screenshot of the status page: {} ({} bytes)",
        path.display(),
        png.len()
    );

    // The page ran under its own Content-Security-Policy without a violation or an error.
    let problems: Vec<String> = b
        .problems()
        .into_iter()
        .filter(|p| !p.contains("ERR_ABORTED"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");

    // A node goes silent: the public overview, re-read by the page, turns its site red.
    let kaist = nodes
        .iter_mut()
        .find(|n| n.name.starts_with("kaist"))
        .expect("the kaist node");
    kaist.kill9();
    let dot = "document.querySelector('#map g.site[data-site=\"kaist\"]').getAttribute('class') \
               + ' ' + document.querySelector('#sites tr[data-site=\"kaist\"] .state').textContent";
    let start = std::time::Instant::now();
    loop {
        let now = b.eval(dot).await;
        if now == json!("site down unreachable") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "30 s after its node was killed, kaist shows as {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its sliver shows as unknown, with its chart but no figure that passes for current.
    let lost = running
        .slivers
        .iter()
        .find(|v| v.site == "kaist")
        .expect("a sliver at kaist");
    let row = format!(
        "(r => r ? r.dataset.state + ' ' + r.innerText : '')\
         (document.querySelector('tr[data-sliver=\"{}\"]'))",
        lost.id
    );
    let start = std::time::Instant::now();
    loop {
        let now = b.eval(&row).await;
        let text = now.as_str().unwrap_or_default();
        if text.starts_with("unknown") && text.contains("no recent measurement") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "30 s after its node was killed, the kaist sliver shows: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
