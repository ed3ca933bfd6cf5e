//! gRPC handlers: authenticate, translate proto to domain, call `Core`, translate back.
//! No business rule lives here.

mod access;
mod admin;
pub(crate) mod convert;
mod fetch;
mod guard;
pub mod images;
mod node;
mod paging;
mod peer;
pub mod sessions;
mod slices;
mod status;
mod usage;

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::{self, Principal};
use crate::core::Core;

/// The services of slicebed.v1 over one core.
#[derive(Clone, Debug)]
pub struct Api {
    core: Arc<Core>,
    sessions: sessions::Sessions,
    /// Long-lived calls each user holds, by kind.
    limits: crate::limits::StreamLimits,
}

impl Api {
    /// Handlers over a core.
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            limits: crate::limits::StreamLimits::new(core.cfg.limits.streams),
            core,
            sessions: sessions::Sessions::default(),
        }
    }

    /// The long-lived calls each user holds (shared with the handlers; for metrics).
    pub fn stream_limits(&self) -> crate::limits::StreamLimits {
        self.limits.clone()
    }

    async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        self.principal_of(req.metadata()).await
    }

    /// Authenticates from metadata alone, for streaming requests whose body is not `Sync`.
    async fn principal_of(&self, md: &tonic::metadata::MetadataMap) -> Result<Principal, Status> {
        let secret = auth::bearer(md)?;
        let mut c = self.core.db.conn().await?;
        let p = auth::authenticate(&mut c, secret).await?;
        crate::trace::record_principal(&p.actor());
        Ok(p)
    }
}
