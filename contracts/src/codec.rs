//! MessagePack codec: every record travels inside an [`Envelope`] that names the
//! record kind and the schema version it was written with.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The schema version this build writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = 1;

/// A record type that can travel on a subject or be stored.
pub trait Record: Serialize + DeserializeOwned {
    /// Stable name of the record kind, written into every envelope.
    const KIND: &'static str;
}

/// What is written on the wire: `{schema_version, record, body}` as a named map.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub schema_version: u32,
    pub record: String,
    pub body: T,
}

/// The header of an envelope, readable without knowing the body's type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Header {
    pub schema_version: u32,
    pub record: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {kind}: {source}")]
    Encode {
        kind: &'static str,
        source: rmp_serde::encode::Error,
    },
    #[error("cannot decode record header: {0}")]
    Header(rmp_serde::decode::Error),
    #[error("record {record} has schema version {found}, newer than the {supported} this reader supports; upgrade vigil")]
    NewerSchema {
        record: String,
        found: u32,
        supported: u32,
    },
    #[error("expected a {expected} record, found {found}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("cannot decode {kind} body: {source}")]
    Body {
        kind: &'static str,
        source: rmp_serde::decode::Error,
    },
}

/// Encode a record with named fields inside a versioned envelope.
pub fn encode<T: Record>(record: &T) -> Result<Vec<u8>, CodecError> {
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        record: T::KIND.to_string(),
        body: record,
    };
    rmp_serde::to_vec_named(&env).map_err(|source| CodecError::Encode {
        kind: T::KIND,
        source,
    })
}

/// Read only the envelope header (kind and schema version) and check the version.
pub fn header(bytes: &[u8]) -> Result<Header, CodecError> {
    let h: Header = rmp_serde::from_slice(bytes).map_err(CodecError::Header)?;
    if h.schema_version > SCHEMA_VERSION {
        return Err(CodecError::NewerSchema {
            record: h.record,
            found: h.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(h)
}

/// Decode a record, checking its kind and schema version first.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let h = header(bytes)?;
    if h.record != T::KIND {
        return Err(CodecError::WrongKind {
            expected: T::KIND,
            found: h.record,
        });
    }
    let env: Envelope<T> = rmp_serde::from_slice(bytes).map_err(|source| CodecError::Body {
        kind: T::KIND,
        source,
    })?;
    Ok(env.body)
}
