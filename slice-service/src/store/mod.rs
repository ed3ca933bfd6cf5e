//! Durable record of the control plane, through sqlx's `Any` driver so that one set of queries
//! serves SQLite (embedded default) and PostgreSQL (production).
//!
//! Queries use `$N` placeholders, which both drivers accept. Times are epoch milliseconds,
//! booleans 0/1 and lists JSON text, so no type differs between the two databases.
//! Functions take `&mut AnyConnection` so that callers decide the transaction: every state
//! change is one transaction, and its event rows are written in that same transaction.

/// SQL text assembled from this module's constant column lists, never from input: audited,
/// so it may run as dynamic SQL.
macro_rules! sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

mod blobs;
mod clusters;
mod events;
mod feed;
mod identity;
mod images;
mod nodes;
mod sites;
mod slices;
mod stats;
mod usage;
mod usage_history;
mod users;

pub use blobs::*;
pub use clusters::*;
pub use events::*;
pub use feed::*;
pub use identity::*;
pub use images::*;
pub use nodes::*;
pub use sites::*;
pub use slices::*;
pub use stats::*;
pub use usage::*;
pub use usage_history::*;
pub use users::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::watch;

use crate::error::Result;

/// A database connection or transaction.
pub type Conn = AnyConnection;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Read connections an SQLite database gets unless configured otherwise.
pub const DEFAULT_SQLITE_READERS: u32 = 4;

/// The database: a pool for transactions and one for reads (the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Db {
    /// Transactions. SQLite gets a single connection: writers are serialised by SQLite
    /// anyway, and one connection avoids "database is locked" when two deferred transactions
    /// both try to write.
    write: AnyPool,
    /// Reads outside transactions. SQLite in WAL mode lets these run beside the writer, so a
    /// read never queues behind a placement transaction. A single statement that writes here
    /// still works (SQLite serialises it with the writer, waiting out its busy timeout), but
    /// every state change belongs in a transaction from `begin`.
    read: AnyPool,
    /// Counts commits; rung after each one so that watchers of the event log look for new
    /// rows (`core::watch`) instead of polling the database.
    commits: Arc<watch::Sender<u64>>,
}

/// An open transaction; `commit` tells the event feed that rows may have been appended.
#[derive(Debug)]
pub struct Tx {
    inner: Transaction<'static, sqlx::Any>,
    commits: Arc<watch::Sender<u64>>,
}

impl Tx {
    /// Commits, then rings the commit bell (only after the rows are visible to readers).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Rolls back (dropping the transaction does the same).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

impl Db {
    /// Connects and applies migrations, with the default number of SQLite readers.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, DEFAULT_SQLITE_READERS).await
    }

    /// Connects and applies migrations; an SQLite file gets `readers` read connections beside
    /// its one writer (an in-memory SQLite database has a single connection for everything).
    pub async fn open_with(url: &str, readers: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let memory = sqlite && url.contains("memory");
        let opts = AnyConnectOptions::from_str(url)?;
        let write = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        use sqlx::Executor;
                        conn.execute("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await?;
        if sqlite {
            SQLITE.run(&write).await?;
        } else {
            POSTGRES.run(&write).await?;
        }
        let read = if sqlite && !memory {
            AnyPoolOptions::new()
                .max_connections(readers.max(1))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Executor;
                        conn.execute("PRAGMA foreign_keys = ON;").await?;
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?
        } else {
            write.clone()
        };
        Ok(Self {
            write,
            read,
            commits: Arc::new(watch::channel(0).0),
        })
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            inner: self.write.begin().await?,
            commits: self.commits.clone(),
        })
    }

    /// A pooled connection for reads only (it may see a commit a moment late, never a
    /// half-done transaction).
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.read.acquire().await?)
    }

    /// Wakes on every commit (the value is a counter with no other meaning).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Closes the pools (graceful shutdown).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Reads a JSON text column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    Ok(serde_json::from_str(s)?)
}

/// Writes a JSON text column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}
