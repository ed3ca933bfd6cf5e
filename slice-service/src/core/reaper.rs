//! Background duties: ending expired leases and noticing silent nodes.
//! Both are idempotent sweeps, so a crash between two runs loses nothing.

use std::sync::Arc;

use crate::error::Result;
use crate::hub::NodeCommand;
use crate::model::{NewEvent, SliceLife};
use crate::store;

use super::Core;

impl Core {
    /// Ends every live slice whose lease has passed; returns how many.
    pub async fn reap_expired(&self) -> Result<usize> {
        let expired = store::expired_slices(&mut *self.db.conn().await?, self.now_ms()).await?;
        for s in &expired {
            let mut tx = self.db.begin().await?;
            // Re-check inside the transaction: a renew may have won the race.
            match store::live_slice(&mut tx, &s.name).await? {
                Some(cur) if cur.id == s.id && cur.lease_expires_at <= self.now_ms() => {}
                _ => continue,
            }
            let stopped = self
                .end_slice(&mut tx, s, SliceLife::Expired, "system")
                .await?;
            tx.commit().await?;
            self.with_fleet(|f| f.slice_ended(&s.id));
            tracing::info!(slice = %s.name, "lease expired");
            for v in stopped {
                self.hub.send(&v.node, NodeCommand::Remove(v.id));
            }
        }
        Ok(expired.len())
    }

    /// Records nodes that went silent past their TTL.
    pub async fn mark_unreachable(&self) -> Result<()> {
        for node in self.hub.newly_unreachable() {
            let mut tx = self.db.begin().await?;
            store::append_event(
                &mut tx,
                &NewEvent::new(
                    "system",
                    format!("node/{node}"),
                    "unreachable",
                    format!("no heartbeat for {:?}", self.cfg.node_ttl),
                ),
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(node, "node unreachable");
        }
        Ok(())
    }
}

/// Runs the sweeps until the returned handle is aborted.
pub fn spawn_reapers(core: Arc<Core>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(core.cfg.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut admin_token_checked = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            // Hourly is plenty: it is renewed with a third of its life (10 days) left.
            if admin_token_checked.elapsed() >= std::time::Duration::from_secs(3600) {
                admin_token_checked = tokio::time::Instant::now();
                if let Err(e) = core.refresh_kept_admin_token().await {
                    tracing::error!(error = %e, "renewing the kept admin token failed");
                }
            }
            if let Err(e) = core.reap_expired().await {
                tracing::error!(error = %e, "lease reaper failed");
            }
            if let Err(e) = core.mark_unreachable().await {
                tracing::error!(error = %e, "liveness sweep failed");
            }
            if let Err(e) = core.warn_leases().await {
                tracing::error!(error = %e, "lease warning sweep failed");
            }
            if let Err(e) = core.handle_lost_and_draining().await {
                tracing::error!(error = %e, "node loss and drain sweep failed");
            }
            if let Err(e) = core.usage_sweep().await {
                tracing::error!(error = %e, "usage history sweep failed");
            }
        }
    })
}
