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

mod events;
mod nodes;
mod sites;
mod slices;
mod users;

pub use events::*;
pub use nodes::*;
pub use sites::*;
pub use slices::*;
pub use users::*;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Transaction};
use std::str::FromStr;

use crate::error::Result;

/// A database connection or transaction.
pub type Conn = AnyConnection;
/// An open transaction.
pub type Tx = Transaction<'static, sqlx::Any>;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
}

impl Db {
    /// Connects and applies migrations.
    ///
    /// SQLite gets a single connection: writers are serialised anyway, and one connection
    /// avoids "database is locked" when two deferred transactions both try to write.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let opts = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
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
            .connect_with(opts)
            .await?;
        if sqlite {
            SQLITE.run(&pool).await?;
        } else {
            POSTGRES.run(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// A pooled connection for reads.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Closes the pool (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await
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
