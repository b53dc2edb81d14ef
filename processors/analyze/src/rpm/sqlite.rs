//! SQLite rpmdb (`rpmdb.sqlite`): `Packages(hnum, blob)`. Read with SQLite itself
//! (rusqlite, bundled), deserialised from the bytes into a read-only in-memory
//! database: no file on the host is opened.

use rusqlite::{Connection, OpenFlags, MAIN_DB};

use super::RpmDbError;

fn corrupt(e: impl std::fmt::Display) -> RpmDbError {
    RpmDbError::Corrupt {
        format: "sqlite",
        message: e.to_string(),
    }
}

/// The header blobs of the `Packages` table, in `hnum` order.
pub fn blobs(content: &[u8]) -> Result<Vec<Vec<u8>>, RpmDbError> {
    if !content.starts_with(b"SQLite format 3\0") {
        return Err(RpmDbError::NotThisFormat("sqlite"));
    }
    let mut conn = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(corrupt)?;
    // A database written in WAL mode says so in its header (bytes 18/19 = 2); the
    // in-memory copy has no WAL file: read it as a rollback-journal database.
    let mut bytes = content.to_vec();
    if bytes.len() > 19 && bytes[18] == 2 && bytes[19] == 2 {
        bytes[18] = 1;
        bytes[19] = 1;
    }
    conn.deserialize_read_exact(MAIN_DB, &bytes[..], bytes.len(), true)
        .map_err(corrupt)?;
    let mut stmt = conn
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(corrupt)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(corrupt)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(corrupt)
}
