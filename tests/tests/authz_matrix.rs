//! The authorization matrix: every RPC of the four services, called by every kind of caller,
//! against a real service, with the outcome each cell must have. One row per RPC, one column
//! per caller; `matrix_names_every_rpc` fails when an RPC is added to a `.proto` without a row.
//!
//! The world: sites `mit` and `eth`; `pat` is the PI of `mit` (the objects' site) and `quinn`
//! the PI of `eth`; `alice` (mit) owns the slice `alices`, whose member is `bob` (mit);
//! `mallory` is a user of `mit` who is neither; node `n1` (mit) holds the slice's only sliver
//! and then disconnects (so access calls that get past authorization end with UNAVAILABLE
//! instead of waiting for a session); node `n2` (mit) is enrolled only and its certificate is
//! the node column's; node `n3` (mit) is enrolled only and is the target of the node
//! administration RPCs; node `n4` (eth) is connected and holds the slices that cells make. Calls that change or consume something act
//! on an object made for that cell (a slice to delete, a site, a token, a node), and every
//! cell calls with a token of its own, so cells do not depend on each other's order.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use slicebed_proto::v1 as pb;
use slicebed_proto::v1::{
    access_service_client::AccessServiceClient, admin_service_client::AdminServiceClient,
    image_service_client::ImageServiceClient, node_service_client::NodeServiceClient,
    slice_service_client::SliceServiceClient,
};
use slicebed_tests::client::{channel, channel_as, Bearer};
use slicebed_tests::node::{enroll, enroll_request, hello, NodeCredential};
use slicebed_tests::{wait_for, Clients, Service, TestNode};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The bootstrap admin (a token of its own per cell).
    Admin,
    /// PI of the site the objects belong to (`pat`, mit).
    PiHere,
    /// PI of another site (`quinn`, eth).
    PiOther,
    /// The slice's owner (`alice`, a user of mit).
    Owner,
    /// A member of the slice (`bob`, a user of mit).
    Member,
    /// A user of the same site who is neither owner nor member (`mallory`).
    Foreign,
    /// Node `n2`'s client certificate (mutual TLS), no bearer token.
    Node,
    /// An unused enrollment token of site mit.
    Enroll,
    /// No credentials at all.
    Anon,
}

const CALLERS: [Caller; 9] = [
    Caller::Admin,
    Caller::PiHere,
    Caller::PiOther,
    Caller::Owner,
    Caller::Member,
    Caller::Foreign,
    Caller::Node,
    Caller::Enroll,
    Caller::Anon,
];

impl Caller {
    /// Suffix of the per-cell objects' names (a DNS label).
    fn tag(self) -> &'static str {
        match self {
            Caller::Admin => "admin",
            Caller::PiHere => "pi-here",
            Caller::PiOther => "pi-other",
            Caller::Owner => "owner",
            Caller::Member => "member",
            Caller::Foreign => "foreign",
            Caller::Node => "node",
            Caller::Enroll => "enroll",
            Caller::Anon => "anon",
        }
    }
}

/// What a cell must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Gets past authorization: succeeds, or fails for another reason than who calls
    /// (UNAVAILABLE for the sliver of a node that is not connected, NOT_FOUND for a session
    /// id no one asked for).
    A,
    /// PERMISSION_DENIED: the caller is known and may see the object, but not do this.
    D,
    /// NOT_FOUND: the service hides that the object exists from this caller.
    H,
    /// UNAUTHENTICATED: no credential this API accepts.
    U,
}
use Want::{A, D, H, U};

/// One row per RPC; columns in the order of `CALLERS`:
/// admin, PI here, PI other, owner, member, foreign, node, enroll, none.
#[rustfmt::skip]
const MATRIX: &[(&str, [Want; 9])] = &[
    //                                 adm pi  piO own mem for nod enr none
    ("SliceService/CreateSlice",      [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("SliceService/GetSlice",         [A,  A,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/ListSlices",       [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("SliceService/RenewSlice",       [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/DeleteSlice",      [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/ListEvents",       [A,  A,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/ListResources",    [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("SliceService/WhoAmI",           [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("SliceService/WatchEvents",      [A,  A,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/ListSliceUsage",   [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("SliceService/GetSliceUsage",    [A,  A,  H,  A,  A,  H,  U,  D,  U]),
    ("SliceService/ListNodeUsage",    [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/CreateSite",       [A,  D,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/ListSites",        [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/GetSite",          [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/DeleteSite",       [A,  D,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/SetSiteImageQuota", [A, D,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/CreateUser",       [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/ListUsers",        [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/CreateToken",      [A,  D,  D,  A,  D,  D,  U,  D,  U]),
    ("AdminService/RevokeToken",      [A,  A,  D,  A,  D,  D,  U,  D,  U]),
    ("AdminService/ListTokens",       [A,  A,  D,  A,  D,  D,  U,  D,  U]),
    ("AdminService/RotateToken",      [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/CreateEnrollmentToken", [A, A, D, D, D, D, U, D, U]),
    ("AdminService/ListNodes",        [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/GetNode",          [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("AdminService/DrainNode",        [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/EnableNode",       [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/DeleteNode",       [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/RevokeNode",       [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/LabelNode",        [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AdminService/RevokeCluster",    [A,  A,  D,  D,  D,  D,  U,  D,  U]),
    ("AccessService/Exec",            [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("AccessService/Logs",            [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("AccessService/CopyTo",          [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("AccessService/CopyFrom",        [A,  D,  H,  A,  A,  H,  U,  D,  U]),
    ("AccessService/ResolveEndpoints",[A,  A,  H,  A,  A,  H,  U,  D,  U]),
    ("NodeService/Enroll",            [D,  D,  D,  D,  D,  D,  U,  A,  U]),
    ("NodeService/Control",           [U,  U,  U,  U,  U,  U,  A,  U,  U]),
    ("NodeService/Session",           [U,  U,  U,  U,  U,  U,  A,  U,  U]),
    ("NodeService/FetchBlob",         [U,  U,  U,  U,  U,  U,  A,  U,  U]),
    // Images: `alice/tool` is alice's private image; the base image is public.
    ("ImageService/BlobStatus",       [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("ImageService/PushBlob",         [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("ImageService/CommitImage",      [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("ImageService/ListImages",       [A,  A,  A,  A,  A,  A,  U,  D,  U]),
    ("ImageService/GetImage",         [A,  H,  H,  A,  H,  H,  U,  D,  U]),
    ("ImageService/TagImage",         [A,  H,  H,  A,  H,  H,  U,  D,  U]),
    ("ImageService/DeleteImage",      [A,  H,  H,  A,  H,  H,  U,  D,  U]),
    ("ImageService/SetImageVisibility", [A, H, H, A, H, H, U, D, U]),
];

/// `Service/Method` of every RPC declared in `proto/proto/slicebed/v1/*.proto`.
fn declared_rpcs() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto/slicebed/v1");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("proto directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read proto");
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_string);
            } else if line.starts_with('}') {
                service = None;
            } else if let (Some(s), Some(rest)) = (&service, line.strip_prefix("rpc ")) {
                let name = rest.split('(').next().unwrap_or_default().trim();
                out.insert(format!("{s}/{name}"));
            }
        }
    }
    out
}

#[test]
fn matrix_names_every_rpc() {
    let declared = declared_rpcs();
    assert!(
        declared.len() >= 30,
        "found only {declared:?} in the protos"
    );
    let table: BTreeSet<String> = MATRIX.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(table.len(), MATRIX.len(), "a row appears twice");
    let missing: Vec<_> = declared.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&declared).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "RPCs without a row in the matrix: {missing:?}; rows naming no RPC: {unknown:?}"
    );
}

type Svc = InterceptedService<Channel, Bearer>;

/// The four clients of one cell.
struct Conn {
    slices: SliceServiceClient<Svc>,
    admin: AdminServiceClient<Svc>,
    access: AccessServiceClient<Svc>,
    node: NodeServiceClient<Svc>,
    images: ImageServiceClient<Svc>,
}

impl Conn {
    fn new(ch: &Channel, token: Option<&str>) -> Self {
        let b = token.map_or_else(Bearer::anonymous, |t| Bearer::new(t).expect("ascii token"));
        Self {
            slices: SliceServiceClient::with_interceptor(ch.clone(), b.clone()),
            admin: AdminServiceClient::with_interceptor(ch.clone(), b.clone()),
            access: AccessServiceClient::with_interceptor(ch.clone(), b.clone()),
            node: NodeServiceClient::with_interceptor(ch.clone(), b.clone()),
            images: ImageServiceClient::with_interceptor(ch.clone(), b),
        }
    }
}

struct World {
    svc: Service,
    admin: Clients,
    alice: Clients,
    /// A channel without a client certificate, and one with node n2's.
    plain: Channel,
    as_node: Channel,
    _n4: TestNode,
}

impl World {
    async fn build() -> Self {
        let svc = Service::start().await;
        let admin = Clients::admin(&svc).await;
        make_site(&admin, "mit").await;
        make_site(&admin, "eth").await;
        make_user_as(&admin, "pat", pb::Role::Pi, "mit").await;
        make_user_as(&admin, "quinn", pb::Role::Pi, "eth").await;
        let alice = Clients::new(&svc, Some(&make_user(&admin, "alice", "mit").await)).await;
        make_user(&admin, "bob", "mit").await;
        make_user(&admin, "mallory", "mit").await;
        let n1 = TestNode::join(&svc, "mit", "n1", 4000, 8 * GI).await;
        wait_ready(&admin, 1).await;
        // n3: enrolled, never connected; the node administration RPCs act on it.
        let tok = enrollment_token(&admin).await;
        enroll(&svc, &tok, enroll_request("n3", 1000, GI, (31000, 31999)))
            .await
            .expect("enroll n3");

        let mut req = slice_req("alices", 1, 64 * MI);
        req.members = vec!["bob".into()];
        let created = alice
            .slices
            .clone()
            .create_slice(req)
            .await
            .expect("alice creates her slice")
            .into_inner();
        assert_eq!(created.slice.expect("slice").slivers.len(), 1);
        // n1 goes away: access calls that get past authorization then end at once with
        // UNAVAILABLE ("not connected") instead of waiting for the node to open a session.
        n1.disconnect();
        wait_for("n1's disconnection", Duration::from_secs(10), || {
            let a = admin.clone();
            async move {
                events(&a, "node/n1")
                    .await
                    .iter()
                    .any(|e| e.action == "disconnected")
                    .then_some(())
            }
        })
        .await;
        // n4 (eth), connected, holds the slices cells make.
        let n4 = TestNode::join(&svc, "eth", "n4", 4000, 8 * GI).await;
        // n2: enrolled, never connected; the node column presents its certificate.
        let tok = enrollment_token(&admin).await;
        let n2 = enroll(&svc, &tok, enroll_request("n2", 1000, GI, (31000, 31999)))
            .await
            .expect("enroll n2");

        let plain = channel(&svc).await;
        let as_node = channel_as(&svc, Some(&n2))
            .await
            .expect("connect with n2's certificate");
        // alice's private image, made of the public base image's blobs.
        let alice_images = Conn::new(&plain, Some(&token_of(&admin, "alice").await)).images;
        commit_from_base(alice_images, "alice/tool:v1")
            .await
            .expect("alice commits alice/tool:v1");
        Self {
            svc,
            admin,
            alice,
            plain,
            as_node,
            _n4: n4,
        }
    }

    /// A fresh token of `user` ("" = the bootstrap admin itself), minted by the admin.
    async fn token_of(&self, user: &str) -> String {
        token_of(&self.admin, user).await
    }

    /// A client of the image API with a fresh token of alice.
    async fn alice_images(&self) -> ImageServiceClient<Svc> {
        Conn::new(&self.plain, Some(&self.token_of("alice").await)).images
    }

    /// The clients of one cell, each with credentials of its own.
    async fn conn(&self, c: Caller) -> Conn {
        let user = match c {
            Caller::Admin => "",
            Caller::PiHere => "pat",
            Caller::PiOther => "quinn",
            Caller::Owner => "alice",
            Caller::Member => "bob",
            Caller::Foreign => "mallory",
            Caller::Node => return Conn::new(&self.as_node, None),
            Caller::Enroll => {
                return Conn::new(&self.plain, Some(&enrollment_token(&self.admin).await))
            }
            Caller::Anon => return Conn::new(&self.plain, None),
        };
        Conn::new(&self.plain, Some(&self.token_of(user).await))
    }
}

/// A fresh token of `user` ("" = the bootstrap admin itself), minted by the admin.
async fn token_of(admin: &Clients, user: &str) -> String {
    admin
        .admin
        .clone()
        .create_token(pb::CreateTokenRequest {
            user: user.into(),
            ttl: None,
            description: "matrix".into(),
        })
        .await
        .expect("admin mints a token")
        .into_inner()
        .token
}

/// The public base image, as its caller sees it.
async fn base_image(images: &mut ImageServiceClient<Svc>) -> Result<pb::Image, Status> {
    Ok(images
        .get_image(pb::GetImageRequest {
            reference: "slicebed/base:latest".into(),
        })
        .await?
        .into_inner())
}

/// Commits `reference` as an image of the base image's config and layers (usable by every
/// user, as they are public: nothing to upload).
async fn commit_from_base(
    mut images: ImageServiceClient<Svc>,
    reference: &str,
) -> Result<pb::Image, Status> {
    let base = base_image(&mut images).await?;
    let digest = |s: &str| slicebed_image::Digest::parse(s).expect("a stored digest");
    let layers: Vec<_> = base
        .layers
        .iter()
        .map(|l| (digest(&l.digest), l.size))
        .collect();
    let manifest =
        slicebed_image::Manifest::new((digest(&base.config_digest), base.config_size), &layers);
    Ok(images
        .commit_image(pb::CommitImageRequest {
            reference: reference.into(),
            manifest: manifest.to_bytes(),
        })
        .await?
        .into_inner())
}

async fn enrollment_token(admin: &Clients) -> String {
    admin
        .admin
        .clone()
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            site: "mit".into(),
            ttl: None,
        })
        .await
        .expect("enrollment token")
        .into_inner()
        .token
}

fn sliver0() -> Option<pb::SliverRef> {
    Some(pb::SliverRef {
        slice: "alices".into(),
        index: 0,
    })
}

/// Makes the call of row `rpc` as the caller of `c`; Ok when it succeeded.
async fn call(w: &World, rpc: &str, caller: Caller, mut c: Conn) -> Result<(), Status> {
    let tag = caller.tag();
    match rpc {
        "SliceService/CreateSlice" => {
            c.slices
                .create_slice(slice_req(&format!("new-{tag}"), 1, 16 * MI))
                .await?;
        }
        "SliceService/GetSlice" => {
            c.slices
                .get_slice(pb::GetSliceRequest {
                    name: "alices".into(),
                })
                .await?;
        }
        "SliceService/ListSlices" => {
            c.slices
                .list_slices(pb::ListSlicesRequest::default())
                .await?;
        }
        "SliceService/RenewSlice" => {
            c.slices
                .renew_slice(pb::RenewSliceRequest {
                    name: "alices".into(),
                    duration: None,
                })
                .await?;
        }
        "SliceService/DeleteSlice" => {
            let name = format!("del-{tag}");
            let mut req = slice_req(&name, 1, 16 * MI);
            req.members = vec!["bob".into()];
            w.alice
                .slices
                .clone()
                .create_slice(req)
                .await
                .expect("alice creates a slice to delete");
            c.slices
                .delete_slice(pb::DeleteSliceRequest { name })
                .await?;
        }
        "SliceService/ListEvents" => {
            c.slices
                .list_events(pb::ListEventsRequest {
                    object: "slice/alices".into(),
                    ..Default::default()
                })
                .await?;
        }
        "SliceService/ListResources" => {
            c.slices.list_resources(pb::ListResourcesRequest {}).await?;
        }
        "SliceService/ListSliceUsage" => {
            c.slices
                .list_slice_usage(pb::ListSliceUsageRequest::default())
                .await?;
        }
        "SliceService/GetSliceUsage" => {
            c.slices
                .get_slice_usage(pb::GetSliceUsageRequest {
                    name: "alices".into(),
                    history: Some(prost_types::Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                })
                .await?;
        }
        "SliceService/ListNodeUsage" => {
            c.slices
                .list_node_usage(pb::ListNodeUsageRequest::default())
                .await?;
        }
        "SliceService/WhoAmI" => {
            c.slices.who_am_i(pb::WhoAmIRequest {}).await?;
        }
        "SliceService/WatchEvents" => {
            c.slices
                .watch_events(pb::WatchEventsRequest {
                    object: "slice/alices".into(),
                    after_id: 0,
                })
                .await?;
        }
        "AdminService/CreateSite" => {
            c.admin.create_site(site(&format!("s-{tag}"))).await?;
        }
        "AdminService/ListSites" => {
            c.admin.list_sites(pb::ListSitesRequest {}).await?;
        }
        "AdminService/GetSite" => {
            c.admin
                .get_site(pb::GetSiteRequest { name: "mit".into() })
                .await?;
        }
        "AdminService/SetSiteImageQuota" => {
            let name = format!("sq-{tag}");
            make_site(&w.admin, &name).await;
            c.admin
                .set_site_image_quota(pb::SetSiteImageQuotaRequest {
                    site: name,
                    quota_bytes: Some(MI as u64),
                })
                .await?;
        }
        "AdminService/DeleteSite" => {
            let name = format!("ds-{tag}");
            make_site(&w.admin, &name).await;
            c.admin.delete_site(pb::DeleteSiteRequest { name }).await?;
        }
        "AdminService/CreateUser" => {
            c.admin
                .create_user(pb::CreateUserRequest {
                    name: format!("u-{tag}"),
                    role: pb::Role::User as i32,
                    site: "mit".into(),
                    token_ttl: None,
                })
                .await?;
        }
        "AdminService/ListUsers" => {
            c.admin.list_users(pb::ListUsersRequest::default()).await?;
        }
        "AdminService/CreateToken" => {
            c.admin
                .create_token(pb::CreateTokenRequest {
                    user: "alice".into(),
                    ttl: None,
                    description: "matrix".into(),
                })
                .await?;
        }
        "AdminService/RevokeToken" => {
            let victim = w
                .admin
                .admin
                .clone()
                .create_token(pb::CreateTokenRequest {
                    user: "alice".into(),
                    ttl: None,
                    description: "to revoke".into(),
                })
                .await
                .expect("a token of alice")
                .into_inner();
            let id = victim.info.expect("token info").id;
            c.admin.revoke_token(pb::RevokeTokenRequest { id }).await?;
        }
        "AdminService/ListTokens" => {
            c.admin
                .list_tokens(pb::ListTokensRequest {
                    user: "alice".into(),
                    ..Default::default()
                })
                .await?;
        }
        "AdminService/RotateToken" => {
            c.admin
                .rotate_token(pb::RotateTokenRequest { ttl: None })
                .await?;
        }
        "AdminService/CreateEnrollmentToken" => {
            c.admin
                .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                    site: "mit".into(),
                    ttl: None,
                })
                .await?;
        }
        "AdminService/ListNodes" => {
            c.admin.list_nodes(pb::ListNodesRequest::default()).await?;
        }
        "AdminService/GetNode" => {
            c.admin
                .get_node(pb::GetNodeRequest { name: "n3".into() })
                .await?;
        }
        "AdminService/DrainNode" => {
            c.admin
                .drain_node(pb::DrainNodeRequest {
                    name: "n3".into(),
                    deadline: None,
                })
                .await?;
        }
        "AdminService/EnableNode" => {
            c.admin
                .enable_node(pb::EnableNodeRequest { name: "n3".into() })
                .await?;
        }
        "AdminService/DeleteNode" => {
            let name = format!("dn-{tag}");
            let tok = enrollment_token(&w.admin).await;
            enroll(
                &w.svc,
                &tok,
                enroll_request(&name, 1000, GI, (32000, 32999)),
            )
            .await
            .expect("enroll a node to delete");
            c.admin.delete_node(pb::DeleteNodeRequest { name }).await?;
        }
        "AdminService/RevokeCluster" => {
            // A cluster of mit enrolled for this cell (`node-manager enroll --cluster`).
            let name = format!("rc-{tag}");
            let tok = enrollment_token(&w.admin).await;
            let req = pb::EnrollRequest {
                cluster: true,
                ..enroll_request(&name, 0, 0, (32000, 32999))
            };
            enroll(&w.svc, &tok, req)
                .await
                .expect("enroll a cluster to revoke");
            c.admin
                .revoke_cluster(pb::RevokeClusterRequest { name })
                .await?;
        }
        "AdminService/RevokeNode" => {
            c.admin
                .revoke_node(pb::RevokeNodeRequest { name: "n3".into() })
                .await?;
        }
        "AdminService/LabelNode" => {
            c.admin
                .label_node(pb::LabelNodeRequest {
                    name: "n3".into(),
                    set: [("rack".to_string(), tag.to_string())].into(),
                    remove: vec![],
                })
                .await?;
        }
        "AccessService/Exec" => {
            let start = pb::ExecRequest {
                msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
                    sliver: sliver0(),
                    command: vec!["true".into()],
                    ..Default::default()
                })),
            };
            c.access.exec(tokio_stream::iter(vec![start])).await?;
        }
        "AccessService/Logs" => {
            c.access
                .logs(pb::LogsRequest {
                    sliver: sliver0(),
                    follow: false,
                    tail: 10,
                })
                .await?;
        }
        "AccessService/CopyTo" => {
            let start = pb::CopyToRequest {
                msg: Some(pb::copy_to_request::Msg::Start(pb::CopyToStart {
                    sliver: sliver0(),
                    path: "/tmp".into(),
                })),
            };
            c.access.copy_to(tokio_stream::iter(vec![start])).await?;
        }
        "AccessService/CopyFrom" => {
            c.access
                .copy_from(pb::CopyFromRequest {
                    sliver: sliver0(),
                    path: "/etc/hostname".into(),
                })
                .await?;
        }
        "AccessService/ResolveEndpoints" => {
            c.access
                .resolve_endpoints(pb::ResolveEndpointsRequest {
                    slice: "alices".into(),
                    port: String::new(),
                })
                .await?;
        }
        "NodeService/Enroll" => {
            let name = format!("en-{tag}");
            c.node
                .enroll(enroll_request(&name, 1000, GI, (33000, 33999)))
                .await?;
        }
        "NodeService/Control" => {
            let first = pb::NodeMessage {
                msg: Some(pb::node_message::Msg::Hello(hello(4000, 8 * GI))),
            };
            // Kept open while the service answers.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(first).await.expect("queued");
            let mut inbound = c
                .node
                .control(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            inbound.message().await?;
        }
        "NodeService/Session" => {
            let first = pb::SessionFrame {
                frame: Some(pb::session_frame::Frame::SessionId(
                    "no-such-session".into(),
                )),
            };
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(first).await.expect("queued");
            let r = c
                .node
                .session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            match r {
                // Past authorization: the service looked the session up for this node.
                Err(s) if s.code() == Code::NotFound && s.message().contains("session") => {}
                Err(s) => return Err(s),
                Ok(resp) => {
                    resp.into_inner().message().await?;
                }
            }
        }
        "NodeService/FetchBlob" => {
            // The public base image's first layer: any node may fetch it.
            let mut images = w.alice_images().await;
            let layer = base_image(&mut images).await.expect("base image").layers[0]
                .digest
                .clone();
            let mut s = c
                .node
                .fetch_blob(pb::FetchBlobRequest {
                    digest: layer,
                    offset: 0,
                })
                .await?
                .into_inner();
            s.message().await?;
        }
        "ImageService/BlobStatus" => {
            let d = slicebed_image::Digest::of(tag.as_bytes()).to_string();
            c.images
                .blob_status(pb::BlobStatusRequest { digests: vec![d] })
                .await?;
        }
        "ImageService/PushBlob" => {
            let data = format!("blob of {tag}").into_bytes();
            let chunk = pb::BlobChunk {
                digest: slicebed_image::Digest::of(&data).to_string(),
                offset: 0,
                size: data.len() as u64,
                data,
            };
            c.images.push_blob(tokio_stream::iter(vec![chunk])).await?;
        }
        "ImageService/CommitImage" => {
            commit_from_base(c.images, &format!("mine-{tag}/tool:v1")).await?;
        }
        "ImageService/ListImages" => {
            c.images
                .list_images(pb::ListImagesRequest::default())
                .await?;
        }
        "ImageService/GetImage" => {
            c.images
                .get_image(pb::GetImageRequest {
                    reference: "alice/tool:v1".into(),
                })
                .await?;
        }
        "ImageService/TagImage" => {
            c.images
                .tag_image(pb::TagImageRequest {
                    source: "alice/tool:v1".into(),
                    target: format!("alice/tool:t-{tag}"),
                })
                .await?;
        }
        "ImageService/DeleteImage" => {
            let reference = format!("alice/del-{tag}:v1");
            commit_from_base(w.alice_images().await, &reference)
                .await
                .expect("alice commits an image to delete");
            c.images
                .delete_image(pb::DeleteImageRequest { reference })
                .await?;
        }
        "ImageService/SetImageVisibility" => {
            // Private again: the cells after this one still find it private.
            c.images
                .set_image_visibility(pb::SetImageVisibilityRequest {
                    name: "alice/tool".into(),
                    visibility: pb::ImageVisibility::Private as i32,
                })
                .await?;
        }
        other => panic!("no call written for {other}"),
    }
    Ok(())
}

/// Whether `got` is what `want` asks; Some(description) when it is not.
fn mismatch(want: Want, got: &Result<(), Status>) -> Option<String> {
    let code = got.as_ref().err().map(Status::code);
    let ok = match want {
        A => !matches!(
            code,
            Some(Code::Unauthenticated | Code::PermissionDenied | Code::NotFound)
        ),
        D => code == Some(Code::PermissionDenied),
        H => code == Some(Code::NotFound),
        U => code == Some(Code::Unauthenticated),
    };
    (!ok).then(|| match got {
        Ok(()) => "allowed".to_string(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_caller() {
    let w = World::build().await;
    let mut wrong = Vec::new();
    for (rpc, row) in MATRIX {
        for (caller, want) in CALLERS.iter().zip(row) {
            let c = w.conn(*caller).await;
            let got = call(&w, rpc, *caller, c).await;
            if let Some(why) = mismatch(*want, &got) {
                wrong.push(format!("{rpc} as {caller:?}: want {want:?}, got {why}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cells are wrong:\n{}",
        wrong.len(),
        MATRIX.len() * CALLERS.len(),
        wrong.join("\n")
    );
}

/// The caller of a cell whose token was revoked, or the node credential of a revoked node,
/// gets no further than UNAUTHENTICATED, whatever the RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_reach_no_rpc() {
    let w = World::build().await;
    // A token of the owner, revoked.
    let tok = w.token_of("alice").await;
    let who = Conn::new(&w.plain, Some(&tok))
        .slices
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("the fresh token works")
        .into_inner();
    w.admin
        .admin
        .clone()
        .revoke_token(pb::RevokeTokenRequest { id: who.token_id })
        .await
        .expect("revoke");
    // A used enrollment token.
    let used = enrollment_token(&w.admin).await;
    enroll(
        &w.svc,
        &used,
        enroll_request("n9", 1000, GI, (34000, 34999)),
    )
    .await
    .expect("enroll n9");
    let mut wrong = Vec::new();
    for (rpc, _) in MATRIX {
        // The caller only names the objects a row makes, distinct for the two credentials.
        for (label, secret, tag) in [
            ("revoked user token", &tok, Caller::Owner),
            ("used enrollment token", &used, Caller::Member),
        ] {
            let got = call(&w, rpc, tag, Conn::new(&w.plain, Some(secret))).await;
            if let Some(why) = mismatch(U, &got) {
                wrong.push(format!("{rpc} with a {label}: got {why}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A node's certificate after `RevokeNode` opens neither the control channel, a session nor a
/// blob fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_certificate_reaches_no_node_rpc() {
    let svc = Service::start().await;
    let admin = Clients::admin(&svc).await;
    make_site(&admin, "mit").await;
    let tok = enrollment_token(&admin).await;
    let cred: NodeCredential = enroll(&svc, &tok, enroll_request("n5", 1000, GI, (31000, 31999)))
        .await
        .expect("enroll n5");
    admin
        .admin
        .clone()
        .revoke_node(pb::RevokeNodeRequest { name: "n5".into() })
        .await
        .expect("revoke n5");
    let ch = channel_as(&svc, Some(&cred))
        .await
        .expect("tls still connects");
    for rpc in [
        "NodeService/Control",
        "NodeService/Session",
        "NodeService/FetchBlob",
    ] {
        // `call` needs a world only for rows that make objects; these two do not.
        let got = probe_node_rpc(rpc, Conn::new(&ch, None)).await;
        assert_eq!(
            got.as_ref().err().map(Status::code),
            Some(Code::Unauthenticated),
            "{rpc} with a revoked node's certificate: {got:?}"
        );
    }
}

async fn probe_node_rpc(rpc: &str, mut c: Conn) -> Result<(), Status> {
    if rpc == "NodeService/FetchBlob" {
        // Any well-formed digest: authentication comes before the lookup.
        let digest = slicebed_image::Digest::of(b"x").to_string();
        c.node
            .fetch_blob(pb::FetchBlobRequest { digest, offset: 0 })
            .await?
            .into_inner()
            .message()
            .await?;
    } else if rpc == "NodeService/Control" {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(pb::NodeMessage {
            msg: Some(pb::node_message::Msg::Hello(hello(1000, GI))),
        })
        .await
        .expect("queued");
        c.node
            .control(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner()
            .message()
            .await?;
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(pb::SessionFrame {
            frame: Some(pb::session_frame::Frame::SessionId("x".into())),
        })
        .await
        .expect("queued");
        c.node
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner()
            .message()
            .await?;
    }
    Ok(())
}
