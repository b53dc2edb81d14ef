//! rpm header blobs as the databases store them: `il` and `dl` (big-endian u32), `il`
//! index entries of 16 bytes (tag, type, offset, count), then `dl` bytes of data.

use std::collections::BTreeMap;

/// Tags read.
pub mod tag {
    pub const NAME: u32 = 1000;
    pub const VERSION: u32 = 1001;
    pub const RELEASE: u32 = 1002;
    pub const EPOCH: u32 = 1003;
    pub const VENDOR: u32 = 1011;
    pub const LICENSE: u32 = 1014;
    pub const ARCH: u32 = 1022;
    pub const SOURCERPM: u32 = 1044;
    pub const FILEDIGESTS: u32 = 1035;
    pub const DIRINDEXES: u32 = 1116;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const MODULARITYLABEL: u32 = 5096;
    pub const FILEDIGESTALGO: u32 = 5011;
}

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Most index entries and data bytes accepted (rpm's own limits: 0xffff entries,
/// 256 MiB of data).
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header blob too short")]
    Short,
    #[error("header sizes out of range (il {il}, dl {dl})")]
    Sizes { il: usize, dl: usize },
    #[error("header has no NAME or VERSION")]
    Incomplete,
}

/// The fields of a header that cataloging needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpmHeader {
    pub name: String,
    pub version: String,
    pub release: Option<String>,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub source_rpm: Option<String>,
    pub license: Option<String>,
    pub vendor: Option<String>,
    pub modularity_label: Option<String>,
    /// Absolute paths of the files, from BASENAMES/DIRNAMES/DIRINDEXES.
    pub files: Vec<String>,
    /// (path, hex digest) of the files FILEDIGESTS gives a digest (directories and
    /// symlinks have an empty one and are left out).
    pub file_digests: Vec<(String, String)>,
    /// FILEDIGESTALGO (a PGP hash algorithm id: 1 md5, 8 sha256); absent means md5.
    pub file_digest_algo: Option<u32>,
}

enum Value {
    Strings(Vec<String>),
    Ints(Vec<u32>),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

impl RpmHeader {
    /// Decode a header blob. Entries pointing outside the data are ignored.
    pub fn parse(blob: &[u8]) -> Result<RpmHeader, HeaderError> {
        let il = be32(blob, 0).ok_or(HeaderError::Short)? as usize;
        let dl = be32(blob, 4).ok_or(HeaderError::Short)? as usize;
        if il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(HeaderError::Sizes { il, dl });
        }
        let data_start = 8 + il * 16;
        let data = blob
            .get(data_start..data_start + dl)
            .ok_or(HeaderError::Sizes { il, dl })?;
        let wanted = [
            tag::NAME,
            tag::VERSION,
            tag::RELEASE,
            tag::EPOCH,
            tag::VENDOR,
            tag::LICENSE,
            tag::ARCH,
            tag::SOURCERPM,
            tag::DIRINDEXES,
            tag::BASENAMES,
            tag::DIRNAMES,
            tag::MODULARITYLABEL,
            tag::FILEDIGESTS,
            tag::FILEDIGESTALGO,
        ];
        let mut values: BTreeMap<u32, Value> = BTreeMap::new();
        for i in 0..il {
            let e = 8 + i * 16;
            let (Some(t), Some(ty), Some(off), Some(count)) = (
                be32(blob, e),
                be32(blob, e + 4),
                be32(blob, e + 8),
                be32(blob, e + 12),
            ) else {
                return Err(HeaderError::Short);
            };
            if !wanted.contains(&t) {
                continue;
            }
            let (off, count) = (off as usize, count as usize);
            if off >= data.len() || count > data.len() {
                continue;
            }
            let v = match ty {
                TYPE_INT32 => {
                    let ints: Option<Vec<u32>> =
                        (0..count).map(|k| be32(data, off + 4 * k)).collect();
                    match ints {
                        Some(v) => Value::Ints(v),
                        None => continue,
                    }
                }
                TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING => {
                    let n = if ty == TYPE_STRING { 1 } else { count };
                    let mut out = Vec::with_capacity(n.min(4096));
                    let mut at = off;
                    for _ in 0..n {
                        let Some(len) = data[at.min(data.len())..].iter().position(|&c| c == 0)
                        else {
                            break;
                        };
                        out.push(String::from_utf8_lossy(&data[at..at + len]).into_owned());
                        at += len + 1;
                    }
                    Value::Strings(out)
                }
                _ => continue,
            };
            values.insert(t, v);
        }
        let s = |t: u32| match values.get(&t) {
            Some(Value::Strings(v)) => v.first().cloned(),
            _ => None,
        };
        let mut h = RpmHeader {
            name: s(tag::NAME).ok_or(HeaderError::Incomplete)?,
            version: s(tag::VERSION).ok_or(HeaderError::Incomplete)?,
            release: s(tag::RELEASE),
            epoch: match values.get(&tag::EPOCH) {
                Some(Value::Ints(v)) => v.first().copied(),
                _ => None,
            },
            arch: s(tag::ARCH),
            source_rpm: s(tag::SOURCERPM),
            license: s(tag::LICENSE),
            vendor: s(tag::VENDOR),
            modularity_label: s(tag::MODULARITYLABEL),
            files: vec![],
            file_digests: vec![],
            file_digest_algo: match values.get(&tag::FILEDIGESTALGO) {
                Some(Value::Ints(v)) => v.first().copied(),
                _ => None,
            },
        };
        if let (Some(Value::Strings(base)), Some(Value::Strings(dirs)), Some(Value::Ints(idx))) = (
            values.get(&tag::BASENAMES),
            values.get(&tag::DIRNAMES),
            values.get(&tag::DIRINDEXES),
        ) {
            h.files = base
                .iter()
                .zip(idx)
                .filter_map(|(b, &i)| dirs.get(i as usize).map(|d| format!("{d}{b}")))
                .collect();
            // FILEDIGESTS runs parallel to BASENAMES.
            if let Some(Value::Strings(digests)) = values.get(&tag::FILEDIGESTS) {
                h.file_digests = base
                    .iter()
                    .zip(idx)
                    .zip(digests)
                    .filter(|(_, d)| !d.is_empty())
                    .filter_map(|((b, &i), d)| {
                        dirs.get(i as usize)
                            .map(|dir| (format!("{dir}{b}"), d.to_ascii_lowercase()))
                    })
                    .collect();
            }
        }
        Ok(h)
    }
}

/// Build a header blob (tests and fuzz seeds): string tags and one INT32 array per tag.
pub fn build(strings: &[(u32, &[&str])], ints: &[(u32, &[u32])]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (t, ss) in strings {
        let ty = if ss.len() == 1 && ![tag::BASENAMES, tag::DIRNAMES, tag::FILEDIGESTS].contains(t)
        {
            TYPE_STRING
        } else {
            TYPE_STRING_ARRAY
        };
        index.push((*t, ty, data.len() as u32, ss.len() as u32));
        for s in *ss {
            data.extend_from_slice(s.as_bytes());
            data.push(0);
        }
    }
    for (t, is) in ints {
        while !data.len().is_multiple_of(4) {
            data.push(0);
        }
        index.push((*t, TYPE_INT32, data.len() as u32, is.len() as u32));
        for i in *is {
            data.extend_from_slice(&i.to_be_bytes());
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(index.len() as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for (t, ty, off, c) in index {
        for x in [t, ty, off, c] {
            out.extend_from_slice(&x.to_be_bytes());
        }
    }
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields_and_file_list() {
        let b = build(
            &[
                (tag::NAME, &["bash"]),
                (tag::VERSION, &["5.1.8"]),
                (tag::RELEASE, &["6.el9"]),
                (tag::ARCH, &["x86_64"]),
                (tag::SOURCERPM, &["bash-5.1.8-6.el9.src.rpm"]),
                (tag::LICENSE, &["GPLv3+"]),
                (tag::BASENAMES, &["bash", "sh", "bashrc"]),
                (tag::DIRNAMES, &["/usr/bin/", "/etc/"]),
            ],
            &[(tag::EPOCH, &[1]), (tag::DIRINDEXES, &[0, 0, 1])],
        );
        let h = RpmHeader::parse(&b).unwrap();
        assert_eq!(h.name, "bash");
        assert_eq!(h.epoch, Some(1));
        assert_eq!(h.files, ["/usr/bin/bash", "/usr/bin/sh", "/etc/bashrc"]);
        assert_eq!(super::super::evr(&h), "1:5.1.8-6.el9");
    }

    #[test]
    fn hostile_blobs_are_errors_not_panics() {
        assert_eq!(RpmHeader::parse(&[0, 0]), Err(HeaderError::Short));
        assert!(RpmHeader::parse(&[0xff; 64]).is_err());
        let mut b = build(&[(tag::NAME, &["x"]), (tag::VERSION, &["1"])], &[]);
        for cut in 0..b.len() {
            let _ = RpmHeader::parse(&b[..cut]);
        }
        // An offset past the data is ignored.
        b[8 + 8..8 + 12].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(RpmHeader::parse(&b), Err(HeaderError::Incomplete));
    }
}
