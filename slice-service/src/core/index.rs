//! Keeping the fleet index (`fleet.rs`) in step with the database: loaded once before the
//! service answers, then changed by each committed change, after its commit.

use crate::error::{Error, Result};
use crate::store;

use super::fleet::Fleet;
use super::Core;

impl Core {
    /// Reads the fleet index from the database, once; `run` calls it before serving, and
    /// placement calls it in case nothing did.
    pub async fn load_fleet(&self) -> Result<()> {
        self.fleet
            .get_or_try_init(|| async {
                let mut c = self.db.conn().await?;
                let f = Fleet::build(
                    store::all_holdings(&mut c).await?,
                    store::list_sites(&mut c).await?,
                    store::live_slice_tally(&mut c).await?,
                );
                Ok::<_, Error>(std::sync::Mutex::new(f))
            })
            .await?;
        Ok(())
    }

    /// Runs `f` on the index; None before it is loaded (a change committed before then is read
    /// with it, so skipping it loses nothing).
    pub(crate) fn with_fleet<T>(&self, f: impl FnOnce(&mut Fleet) -> T) -> Option<T> {
        let m = self.fleet.get()?;
        Some(f(&mut m.lock().unwrap_or_else(|p| p.into_inner())))
    }

    /// Reads a node again after a committed change to it (enrolment, report, labels, state,
    /// deletion). Under the placement lock, so that it never races a placement's own update.
    pub(crate) async fn refresh_node(&self, name: &str) -> Result<()> {
        let _guard = self.place_lock.lock().await;
        self.refresh_node_locked(name).await
    }

    /// A node's own fields as just committed (not what it holds, which only placements and
    /// deletions change): no need to read it again, nor to wait for the placement lock.
    pub(crate) fn node_written(&self, n: crate::model::Node) {
        self.with_fleet(|f| f.update_node(n));
    }

    /// The same, for a caller that holds the placement lock.
    pub(super) async fn refresh_node_locked(&self, name: &str) -> Result<()> {
        if self.fleet.get().is_none() {
            return Ok(());
        }
        let h = store::holding(&mut *self.db.conn().await?, name).await?;
        self.with_fleet(|f| match h {
            Some(h) => f.put_node(h),
            None => f.remove_node(name),
        });
        Ok(())
    }

    /// Reads a site again after it was created, changed or deleted.
    pub(crate) async fn refresh_site(&self, name: &str) -> Result<()> {
        if self.fleet.get().is_none() {
            return Ok(());
        }
        let site = store::get_site(&mut *self.db.conn().await?, name).await?;
        self.with_fleet(|f| f.put_site(name, site));
        Ok(())
    }
}
