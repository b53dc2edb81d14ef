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
///
/// The header fields come before the body in what [`encode`] writes, so they are read
/// without walking the body; an envelope written in another field order is read whole.
pub fn header(bytes: &[u8]) -> Result<Header, CodecError> {
    let h = match peek::header(bytes) {
        Some(h) => h,
        None => rmp_serde::from_slice(bytes).map_err(CodecError::Header)?,
    };
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

/// The unsigned integer `field` of the body of a `T` record, read without decoding the
/// body: the fields before it are skipped over, the ones after it are not read. `None`
/// when the body has no such field (or it is not an unsigned integer). Cheap for a small
/// field that the record type declares before its large ones.
pub fn peek_body_u64<T: Record>(bytes: &[u8], field: &str) -> Result<Option<u64>, CodecError> {
    let h = header(bytes)?;
    if h.record != T::KIND {
        return Err(CodecError::WrongKind {
            expected: T::KIND,
            found: h.record,
        });
    }
    Ok(peek::body_u64(bytes, field))
}

/// Reading a few fields of MessagePack without decoding the rest: a cursor that knows
/// each value's length from its marker.
mod peek {
    use rmp::Marker;

    use super::Header;

    struct Cursor<'a> {
        rest: &'a [u8],
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.rest.len() {
                return None;
            }
            let (head, tail) = self.rest.split_at(n);
            self.rest = tail;
            Some(head)
        }

        /// A big-endian unsigned integer of `n` bytes.
        fn be(&mut self, n: usize) -> Option<u64> {
            Some(
                self.take(n)?
                    .iter()
                    .fold(0u64, |v, &b| (v << 8) | u64::from(b)),
            )
        }

        fn marker(&mut self) -> Option<Marker> {
            Some(Marker::from_u8(self.take(1)?[0]))
        }

        fn map_len(&mut self) -> Option<u64> {
            match self.marker()? {
                Marker::FixMap(n) => Some(u64::from(n)),
                Marker::Map16 => self.be(2),
                Marker::Map32 => self.be(4),
                _ => None,
            }
        }

        fn str(&mut self) -> Option<&'a [u8]> {
            let n = match self.marker()? {
                Marker::FixStr(n) => u64::from(n),
                Marker::Str8 => self.be(1)?,
                Marker::Str16 => self.be(2)?,
                Marker::Str32 => self.be(4)?,
                _ => return None,
            };
            self.take(usize::try_from(n).ok()?)
        }

        fn uint(&mut self) -> Option<u64> {
            match self.marker()? {
                Marker::FixPos(v) => Some(u64::from(v)),
                Marker::U8 => self.be(1),
                Marker::U16 => self.be(2),
                Marker::U32 => self.be(4),
                Marker::U64 => self.be(8),
                _ => None,
            }
        }

        /// Step over one value, nested ones included (without recursion).
        fn skip(&mut self) -> Option<()> {
            let mut pending: u64 = 1;
            while pending > 0 {
                pending -= 1;
                let fixed = match self.marker()? {
                    Marker::FixPos(_) | Marker::FixNeg(_) => 0,
                    Marker::Null | Marker::True | Marker::False | Marker::Reserved => 0,
                    Marker::U8 | Marker::I8 => 1,
                    Marker::U16 | Marker::I16 => 2,
                    Marker::U32 | Marker::I32 | Marker::F32 => 4,
                    Marker::U64 | Marker::I64 | Marker::F64 => 8,
                    Marker::FixStr(n) => u64::from(n),
                    Marker::Str8 | Marker::Bin8 => self.be(1)?,
                    Marker::Str16 | Marker::Bin16 => self.be(2)?,
                    Marker::Str32 | Marker::Bin32 => self.be(4)?,
                    Marker::FixExt1 => 2,
                    Marker::FixExt2 => 3,
                    Marker::FixExt4 => 5,
                    Marker::FixExt8 => 9,
                    Marker::FixExt16 => 17,
                    Marker::Ext8 => self.be(1)? + 1,
                    Marker::Ext16 => self.be(2)? + 1,
                    Marker::Ext32 => self.be(4)? + 1,
                    Marker::FixArray(n) => {
                        pending += u64::from(n);
                        0
                    }
                    Marker::Array16 => {
                        pending += self.be(2)?;
                        0
                    }
                    Marker::Array32 => {
                        pending += self.be(4)?;
                        0
                    }
                    Marker::FixMap(n) => {
                        pending += 2 * u64::from(n);
                        0
                    }
                    Marker::Map16 => {
                        pending += 2 * self.be(2)?;
                        0
                    }
                    Marker::Map32 => {
                        pending += 2 * self.be(4)?;
                        0
                    }
                };
                self.take(usize::try_from(fixed).ok()?)?;
            }
            Some(())
        }

        /// Position the cursor on the value of `key` in the map that starts here.
        fn find_key(&mut self, key: &str) -> Option<()> {
            for _ in 0..self.map_len()? {
                if self.str()? == key.as_bytes() {
                    return Some(());
                }
                self.skip()?;
            }
            None
        }
    }

    /// The envelope's header, when its two fields can be read from the front of it.
    pub(super) fn header(bytes: &[u8]) -> Option<Header> {
        let mut c = Cursor { rest: bytes };
        let (mut version, mut record) = (None, None);
        for _ in 0..c.map_len()? {
            match c.str()? {
                b"schema_version" => version = Some(u32::try_from(c.uint()?).ok()?),
                b"record" => record = Some(std::str::from_utf8(c.str()?).ok()?.to_string()),
                // Anything else first (the body): leave it to the full decoder.
                _ => return None,
            }
            if let (Some(v), Some(r)) = (version, &record) {
                return Some(Header {
                    schema_version: v,
                    record: r.clone(),
                });
            }
        }
        None
    }

    pub(super) fn body_u64(bytes: &[u8], field: &str) -> Option<u64> {
        let mut c = Cursor { rest: bytes };
        c.find_key("body")?;
        c.find_key(field)?;
        c.uint()
    }
}
