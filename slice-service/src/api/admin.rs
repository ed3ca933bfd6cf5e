//! `slicebed.v1.AdminService` handlers.

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use super::{convert as cv, paging, Api};
use crate::error::Error;
use crate::model::{self, AdminState};

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for Api {
    async fn create_site(&self, req: Request<pb::CreateSiteRequest>) -> R<pb::Site> {
        let p = self.principal(&req).await?;
        let s = req
            .into_inner()
            .site
            .ok_or_else(|| Error::invalid("site is required"))?;
        let q = s.quota.unwrap_or_default();
        let site = model::Site {
            name: s.name,
            display_name: s.display_name,
            city: s.city,
            country: s.country,
            latitude: s.latitude,
            longitude: s.longitude,
            enabled: s.enabled,
            max_slices: q.max_slices as i64,
            max_slivers: q.max_slivers as i64,
            created_at: 0,
        };
        let created = self.core.create_site(&p, site).await?;
        Ok(Response::new(
            self.with_image_storage(&p, cv::site(&created)).await?,
        ))
    }

    async fn list_sites(&self, req: Request<pb::ListSitesRequest>) -> R<pb::ListSitesResponse> {
        let p = self.principal(&req).await?;
        let mut sites = Vec::new();
        for s in self.core.list_sites(&p).await? {
            sites.push(self.with_image_storage(&p, cv::site(&s)).await?);
        }
        Ok(Response::new(pb::ListSitesResponse { sites }))
    }

    async fn get_site(&self, req: Request<pb::GetSiteRequest>) -> R<pb::Site> {
        let p = self.principal(&req).await?;
        let site = cv::site(&self.core.get_site(&p, &req.get_ref().name).await?);
        Ok(Response::new(self.with_image_storage(&p, site).await?))
    }

    async fn delete_site(&self, req: Request<pb::DeleteSiteRequest>) -> R<pb::DeleteSiteResponse> {
        let p = self.principal(&req).await?;
        self.core.delete_site(&p, &req.get_ref().name).await?;
        Ok(Response::new(pb::DeleteSiteResponse {}))
    }

    async fn create_user(&self, req: Request<pb::CreateUserRequest>) -> R<pb::CreateUserResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let role = cv::role_in(r.role)?;
        let ttl = cv::duration("token ttl", r.token_ttl)?;
        let (u, secret, t) = self
            .core
            .create_user(&p, &r.name, role, Some(r.site), ttl)
            .await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(cv::user(&u)),
            token: secret,
            token_info: Some(cv::token(&t)),
        }))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> R<pb::ListUsersResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let users = self.core.list_users(&p, Some(&r.site)).await?;
        let (users, next_page_token) = paging::by_size(users.iter().map(cv::user), &r.page_token)?;
        Ok(Response::new(pb::ListUsersResponse {
            users,
            next_page_token,
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> R<pb::CreateTokenResponse> {
        let (p, via, _) = self.principal_token_of(req.metadata()).await?;
        let r = req.into_inner();
        let ttl = cv::duration("ttl", r.ttl)?;
        let (secret, t) = self
            .core
            .create_token(&p, Some(&via), &r.user, ttl, &r.description)
            .await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: secret,
            info: Some(cv::token(&t)),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> R<pb::RevokeTokenResponse> {
        let p = self.principal(&req).await?;
        self.core.revoke_token(&p, &req.get_ref().id).await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn rotate_token(
        &self,
        req: Request<pb::RotateTokenRequest>,
    ) -> R<pb::CreateTokenResponse> {
        let (p, via, _) = self.principal_token_of(req.metadata()).await?;
        let ttl = cv::duration("ttl", req.into_inner().ttl)?;
        let (secret, t) = self.core.rotate_token(&p, &via, ttl).await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: secret,
            info: Some(cv::token(&t)),
        }))
    }

    async fn list_tokens(&self, req: Request<pb::ListTokensRequest>) -> R<pb::ListTokensResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let tokens = self.core.list_tokens(&p, &r.user).await?;
        let (tokens, next_page_token) =
            paging::by_size(tokens.iter().map(cv::token), &r.page_token)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens,
            next_page_token,
        }))
    }

    async fn create_enrollment_token(
        &self,
        req: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> R<pb::CreateEnrollmentTokenResponse> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let ttl = cv::duration("ttl", r.ttl)?;
        let (secret, t) = self.core.create_enrollment_token(&p, &r.site, ttl).await?;
        Ok(Response::new(pb::CreateEnrollmentTokenResponse {
            token: secret,
            expires_at: cv::ts_opt(t.expires_at),
            site: t.subject,
        }))
    }

    async fn list_nodes(&self, req: Request<pb::ListNodesRequest>) -> R<pb::ListNodesResponse> {
        let p = self.principal(&req).await?;
        let r = req.get_ref();
        let nodes = self.core.list_nodes(&p, Some(&r.site)).await?;
        let (nodes, next_page_token) = paging::by_size(nodes.iter().map(cv::node), &r.page_token)?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes,
            next_page_token,
        }))
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> R<pb::Node> {
        let p = self.principal(&req).await?;
        Ok(Response::new(cv::node(
            &self.core.get_node(&p, &req.get_ref().name).await?,
        )))
    }

    async fn drain_node(&self, req: Request<pb::DrainNodeRequest>) -> R<pb::Node> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let deadline = cv::duration("deadline", r.deadline)?;
        let v = self
            .core
            .set_node_admin(&p, &r.name, AdminState::Draining, deadline)
            .await?;
        Ok(Response::new(cv::node(&v)))
    }

    async fn enable_node(&self, req: Request<pb::EnableNodeRequest>) -> R<pb::Node> {
        let p = self.principal(&req).await?;
        let v = self
            .core
            .set_node_admin(&p, &req.get_ref().name, AdminState::Active, None)
            .await?;
        Ok(Response::new(cv::node(&v)))
    }

    async fn delete_node(&self, req: Request<pb::DeleteNodeRequest>) -> R<pb::DeleteNodeResponse> {
        let p = self.principal(&req).await?;
        self.core.delete_node(&p, &req.get_ref().name).await?;
        Ok(Response::new(pb::DeleteNodeResponse {}))
    }

    async fn revoke_node(&self, req: Request<pb::RevokeNodeRequest>) -> R<pb::Node> {
        let p = self.principal(&req).await?;
        let v = self.core.revoke_node(&p, &req.get_ref().name).await?;
        Ok(Response::new(cv::node(&v)))
    }

    async fn revoke_cluster(
        &self,
        req: Request<pb::RevokeClusterRequest>,
    ) -> R<pb::RevokeClusterResponse> {
        let p = self.principal(&req).await?;
        let members = self.core.revoke_cluster(&p, &req.get_ref().name).await?;
        Ok(Response::new(pb::RevokeClusterResponse {
            members: members.iter().map(cv::node).collect(),
        }))
    }

    async fn label_node(&self, req: Request<pb::LabelNodeRequest>) -> R<pb::Node> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        let v = self
            .core
            .label_node(&p, &r.name, r.set.into_iter().collect(), r.remove)
            .await?;
        Ok(Response::new(cv::node(&v)))
    }

    async fn set_site_image_quota(
        &self,
        req: Request<pb::SetSiteImageQuotaRequest>,
    ) -> R<pb::Site> {
        let p = self.principal(&req).await?;
        let r = req.into_inner();
        self.core
            .set_site_image_quota(&p, &r.site, r.quota_bytes)
            .await?;
        let site = cv::site(&self.core.get_site(&p, &r.site).await?);
        Ok(Response::new(self.with_image_storage(&p, site).await?))
    }
}
