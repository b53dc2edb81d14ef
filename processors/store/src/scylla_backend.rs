//! The ScyllaDB backend: every logical [`Table`] is one CQL table
//! `(p text, s text, v blob, PRIMARY KEY (p, s))`, so that every hot query reads one
//! partition. A thin mapping of the six [`Backend`] methods to prepared CQL statements,
//! prepared once per table on connect. The schema (also in `infra/scylla/schema.cql`)
//! is created on start with idempotent `CREATE ... IF NOT EXISTS` statements.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::PagingState;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlValue, Row};

use crate::backend::{Backend, Table, Write};
use crate::StoreError;

/// Rows fetched per page by `list`.
const LIST_PAGE_SIZE: i32 = 1000;

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("scylla: {what}: {e}"))
}

/// The statements of one table, prepared once.
struct Prepared {
    insert: PreparedStatement,
    insert_if_absent: PreparedStatement,
    select_one: PreparedStatement,
    select_partition: PreparedStatement,
    delete: PreparedStatement,
}

/// A ScyllaDB session plus the prepared statements of every table.
pub struct ScyllaBackend {
    session: Session,
    keyspace: String,
    stmts: HashMap<Table, Prepared>,
}

/// Whether `name` is a valid unquoted CQL keyspace name (it is interpolated into DDL).
fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The CQL that creates the keyspace (SimpleStrategy with `replication_factor`).
pub fn create_keyspace_cql(keyspace: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
}

/// The CQL that creates one logical table.
pub fn create_table_cql(keyspace: &str, table: Table) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.{} (p text, s text, v blob, PRIMARY KEY (p, s)) \
         WITH CLUSTERING ORDER BY (s ASC)",
        table.name()
    )
}

impl ScyllaBackend {
    /// Connect to `nodes` (`host:port`), create the keyspace and every table when
    /// missing, and prepare the statements of every table.
    pub async fn connect(
        nodes: &[String],
        keyspace: &str,
        replication_factor: u32,
    ) -> Result<Self, StoreError> {
        if nodes.is_empty() {
            return Err(StoreError::Backend(
                "scylla: no contact nodes given".to_string(),
            ));
        }
        if !valid_keyspace(keyspace) {
            return Err(StoreError::Backend(format!(
                "scylla: invalid keyspace name {keyspace:?} (letters, digits and _ only, starting with a letter, at most 48)"
            )));
        }
        if replication_factor == 0 {
            return Err(StoreError::Backend(
                "scylla: replication factor must be at least 1".to_string(),
            ));
        }
        // Client-side monotonic timestamps, so that a put followed by a delete (or an
        // overwrite) from this process is ordered even across coordinators.
        let session = SessionBuilder::new()
            .known_nodes(nodes)
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .build()
            .await
            .map_err(|e| err("connect", e))?;

        session
            .query_unpaged(create_keyspace_cql(keyspace, replication_factor), ())
            .await
            .map_err(|e| err("create keyspace", e))?;
        for t in Table::ALL {
            session
                .query_unpaged(create_table_cql(keyspace, t), ())
                .await
                .map_err(|e| err(&format!("create table {}", t.name()), e))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| err("schema agreement", e))?;

        let mut stmts = HashMap::new();
        for t in Table::ALL {
            let name = format!("{keyspace}.{}", t.name());
            let prep = |cql: String| {
                let session = &session;
                async move {
                    session
                        .prepare(cql.clone())
                        .await
                        .map_err(|e| err(&format!("prepare {cql}"), e))
                }
            };
            let select_partition = session
                .prepare(
                    Statement::new(format!(
                        "SELECT s, v FROM {name} WHERE p = ? ORDER BY s ASC"
                    ))
                    .with_page_size(LIST_PAGE_SIZE),
                )
                .await
                .map_err(|e| err(&format!("prepare select on {name}"), e))?;
            let p = Prepared {
                insert: prep(format!("INSERT INTO {name} (p, s, v) VALUES (?, ?, ?)")).await?,
                insert_if_absent: prep(format!(
                    "INSERT INTO {name} (p, s, v) VALUES (?, ?, ?) IF NOT EXISTS"
                ))
                .await?,
                select_one: prep(format!("SELECT v FROM {name} WHERE p = ? AND s = ?")).await?,
                select_partition,
                delete: prep(format!("DELETE FROM {name} WHERE p = ? AND s = ?")).await?,
            };
            stmts.insert(t, p);
        }
        Ok(ScyllaBackend {
            session,
            keyspace: keyspace.to_string(),
            stmts,
        })
    }

    /// The keyspace this backend writes to.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    fn stmts(&self, table: Table) -> &Prepared {
        // Every table is prepared in `connect`.
        &self.stmts[&table]
    }
}

#[async_trait]
impl Backend for ScyllaBackend {
    async fn put(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.stmts(table).insert, (partition, sort, value))
            .await
            .map_err(|e| err("put", e))?;
        Ok(())
    }

    async fn put_if_absent(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let res = self
            .session
            .execute_unpaged(
                &self.stmts(table).insert_if_absent,
                (partition, sort, value),
            )
            .await
            .map_err(|e| err("put_if_absent", e))?;
        // An LWT answers one row whose first column is `[applied]`; when not applied,
        // the existing row's columns follow, so read it untyped.
        let row: Row = res
            .into_rows_result()
            .map_err(|e| err("put_if_absent result", e))?
            .first_row()
            .map_err(|e| err("put_if_absent result", e))?;
        match row.columns.first() {
            Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
            other => Err(StoreError::Backend(format!(
                "scylla: put_if_absent: unexpected [applied] column {other:?}"
            ))),
        }
    }

    async fn get(
        &self,
        table: Table,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let res = self
            .session
            .execute_unpaged(&self.stmts(table).select_one, (partition, sort))
            .await
            .map_err(|e| err("get", e))?;
        let row: Option<(Option<Vec<u8>>,)> = res
            .into_rows_result()
            .map_err(|e| err("get result", e))?
            .maybe_first_row()
            .map_err(|e| err("get result", e))?;
        // A null blob is never written by the store; treat it as an empty value.
        Ok(row.map(|(v,)| v.unwrap_or_default()))
    }

    async fn list(
        &self,
        table: Table,
        partition: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let stmt = &self.stmts(table).select_partition;
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (res, next) = self
                .session
                .execute_single_page(stmt, (partition,), paging)
                .await
                .map_err(|e| err("list", e))?;
            let rows = res.into_rows_result().map_err(|e| err("list result", e))?;
            for row in rows
                .rows::<(String, Option<Vec<u8>>)>()
                .map_err(|e| err("list result", e))?
            {
                let (s, v) = row.map_err(|e| err("list row", e))?;
                out.push((s, v.unwrap_or_default()));
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(p) => paging = p,
            }
        }
        Ok(out)
    }

    async fn delete(&self, table: Table, partition: &str, sort: &str) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.stmts(table).delete, (partition, sort))
            .await
            .map_err(|e| err("delete", e))?;
        Ok(())
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Vec<CqlValue>> = Vec::with_capacity(writes.len());
        for w in writes {
            match w {
                Write::Put {
                    table,
                    partition,
                    sort,
                    value,
                } => {
                    batch.append_statement(self.stmts(table).insert.clone());
                    values.push(vec![
                        CqlValue::Text(partition),
                        CqlValue::Text(sort),
                        CqlValue::Blob(value),
                    ]);
                }
                Write::Delete {
                    table,
                    partition,
                    sort,
                } => {
                    batch.append_statement(self.stmts(table).delete.clone());
                    values.push(vec![CqlValue::Text(partition), CqlValue::Text(sort)]);
                }
            }
        }
        self.session
            .batch(&batch, values)
            .await
            .map_err(|e| err("write_batch", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_keyspace("vigil"));
        assert!(valid_keyspace("vigil_test_2"));
        assert!(!valid_keyspace(""));
        assert!(!valid_keyspace("_vigil"));
        assert!(!valid_keyspace("1vigil"));
        assert!(!valid_keyspace("vigil; DROP KEYSPACE x"));
        assert!(!valid_keyspace("vigil.x"));
        assert!(!valid_keyspace(&"k".repeat(49)));
    }

    #[test]
    fn ddl_is_idempotent_and_one_partition_per_key() {
        let ks = create_keyspace_cql("vigil", 3);
        assert!(ks.starts_with("CREATE KEYSPACE IF NOT EXISTS vigil "));
        assert!(ks.contains("'replication_factor': 3"));
        for t in Table::ALL {
            let cql = create_table_cql("vigil", t);
            assert!(cql.starts_with(&format!("CREATE TABLE IF NOT EXISTS vigil.{} ", t.name())));
            assert!(cql.contains("PRIMARY KEY (p, s)"));
        }
    }

    #[tokio::test]
    async fn connect_rejects_bad_arguments_before_connecting() {
        let nodes = ["127.0.0.1:9".to_string()];
        for (n, ks, rf) in [
            (&[][..], "vigil", 1),
            (&nodes[..], "bad-name", 1),
            (&nodes[..], "vigil", 0),
        ] {
            match ScyllaBackend::connect(n, ks, rf).await {
                Err(StoreError::Backend(_)) => {}
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("connect({n:?}, {ks}, {rf}) must fail"),
            }
        }
    }
}
