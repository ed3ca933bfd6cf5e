//! gRPC handlers: authenticate, translate proto to domain, call `Core`, translate back.
//! No business rule lives here.

mod access;
mod admin;
mod convert;
mod guard;
mod node;
pub mod sessions;
mod slices;
mod status;

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::{self, Principal};
use crate::core::Core;

/// Concurrent exec, shell, logs and copy calls one user may hold.
const MAX_SESSIONS_PER_USER: usize = 32;

/// The services of slicebed.v1 over one core.
#[derive(Clone, Debug)]
pub struct Api {
    core: Arc<Core>,
    sessions: sessions::Sessions,
}

impl Api {
    /// Handlers over a core.
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            sessions: sessions::Sessions::new(MAX_SESSIONS_PER_USER),
        }
    }

    async fn principal<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        self.principal_of(req.metadata()).await
    }

    /// Authenticates from metadata alone, for streaming requests whose body is not `Sync`.
    async fn principal_of(&self, md: &tonic::metadata::MetadataMap) -> Result<Principal, Status> {
        let secret = auth::bearer(md)?;
        let mut c = self.core.db.conn().await?;
        Ok(auth::authenticate(&mut c, secret).await?)
    }
}
