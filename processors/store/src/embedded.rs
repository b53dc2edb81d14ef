//! The embedded backend: one redb file. redb is a pure-Rust, single-file, ACID
//! (copy-on-write B-tree) store that is actively maintained and needs no C library;
//! every logical table is one redb table keyed by `(partition, sort)`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

type Def = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

fn def(t: Table) -> Def {
    TableDefinition::new(t.name())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

/// A redb database shared by all handles.
#[derive(Clone)]
pub struct EmbeddedBackend {
    db: Arc<Database>,
}

impl EmbeddedBackend {
    /// Open or create the file, and create every table.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        for t in Table::ALL {
            tx.open_table(def(t)).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(EmbeddedBackend { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
    }
}

fn apply(tx: &redb::WriteTransaction, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::Put {
            table,
            partition,
            sort,
            value,
        } => {
            let mut t = tx.open_table(def(*table)).map_err(err)?;
            t.insert((partition.as_str(), sort.as_str()), value.as_slice())
                .map_err(err)?;
        }
        Write::Delete {
            table,
            partition,
            sort,
        } => {
            let mut t = tx.open_table(def(*table)).map_err(err)?;
            t.remove((partition.as_str(), sort.as_str())).map_err(err)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn put(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write_batch(vec![Write::Put {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
            value,
        }])
        .await
    }

    async fn put_if_absent(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let (p, s) = (partition.to_string(), sort.to_string());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            let wrote = {
                let mut t = tx.open_table(def(table)).map_err(err)?;
                if t.get((p.as_str(), s.as_str())).map_err(err)?.is_some() {
                    false
                } else {
                    t.insert((p.as_str(), s.as_str()), value.as_slice())
                        .map_err(err)?;
                    true
                }
            };
            tx.commit().map_err(err)?;
            Ok(wrote)
        })
        .await
    }

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (p, s) = (partition.to_string(), sort.to_string());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(def(table)).map_err(err)?;
            Ok(t.get((p.as_str(), s.as_str()))
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let p = partition.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(def(table)).map_err(err)?;
            let mut out = Vec::new();
            for row in t.range((p.as_str(), "")..).map_err(err)? {
                let (k, v) = row.map_err(err)?;
                let (kp, ks) = k.value();
                if kp != p {
                    break;
                }
                out.push((ks.to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, table: Table, partition: &str, sort: &str) -> Result<(), StoreError> {
        self.write_batch(vec![Write::Delete {
            table,
            partition: partition.to_string(),
            sort: sort.to_string(),
        }])
        .await
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            for w in &writes {
                apply(&tx, w)?;
            }
            tx.commit().map_err(err)?;
            Ok(())
        })
        .await
    }
}
