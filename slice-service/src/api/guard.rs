//! Long streams end when the token they were opened with stops being good: revoked (directly
//! or through the token it was created with), its user deleted, or expired.
//!
//! A stream is authenticated once, when it opens; without this a watch opened before a
//! revocation would go on delivering. The check runs when a revocation is committed anywhere
//! (`auth::revocations`) and when the token's expiry comes, never per message. This module
//! must never deliver an item after it has seen the token fail.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::Status;

use super::Api;
use crate::auth;
use crate::model::{now_ms, Token};

/// A boxed response stream, as the handlers return them.
pub type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Api {
    /// `inner`, cut off with UNAUTHENTICATED as soon as `secret` (whose token is `token`) no
    /// longer authenticates.
    pub(super) fn guarded<T: Send + 'static>(
        &self,
        secret: String,
        token: Token,
        mut inner: Out<T>,
    ) -> Out<T> {
        let fails = self.token_fails(secret, token);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            tokio::pin!(fails);
            loop {
                tokio::select! {
                    item = inner.next() => match item {
                        Some(item) => {
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    status = &mut fails => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    /// Resolves, with the status to end a call with, once `secret` (whose token is `token`) no
    /// longer authenticates: checked when a revocation is committed after this call and when
    /// the token's expiry comes. Never resolves while the token stays good. For calls that are
    /// not a response stream (an upload), to race against their work.
    pub(super) fn token_fails(
        &self,
        secret: String,
        token: Token,
    ) -> impl std::future::Future<Output = Status> + Send + 'static {
        let core = self.core.clone();
        // Subscribed now, so a revocation committed while the call is being set up counts.
        let mut revoked = auth::revocations();
        revoked.mark_unchanged();
        async move {
            let expiry = token.expires_at.map(|at| {
                let left = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                tokio::time::Instant::now() + std::time::Duration::from_millis(left)
            });
            let expired = async {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(expired);
            loop {
                tokio::select! {
                    changed = revoked.changed() => {
                        if changed.is_err() {
                            // No more revocations can come (the service is stopping).
                            return std::future::pending().await;
                        }
                        let check = match core.db.conn().await {
                            Ok(mut c) => auth::authenticate(&mut c, &secret).await.map(|_| ()),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = check {
                            return Status::from(e);
                        }
                    }
                    _ = &mut expired => {
                        return Status::unauthenticated("token has expired");
                    }
                }
            }
        }
    }

    /// The caller and the token it called with, from metadata alone.
    pub(super) async fn principal_token_of(
        &self,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<(auth::Principal, Token, String), Status> {
        let secret = auth::bearer(md)?.to_string();
        let mut c = self.core.db.conn().await?;
        let (p, t) = auth::authenticate_token(&mut c, &secret).await?;
        crate::trace::record_principal(&p.actor());
        Ok((p, t, secret))
    }
}
