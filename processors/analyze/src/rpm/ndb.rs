//! ndb (`Packages.db`, rpm's own format, SUSE): a 32-byte header (`RpmP` magic,
//! version, generation, slot page count), slot entries of 16 bytes (`Slot` magic,
//! package index, block offset, block count) and blobs in 16-byte blocks, each with a
//! 16-byte head (`BlbS` magic, package index, checksum, length). Little-endian.

use super::RpmDbError;

const HEADER_MAGIC: u32 = u32::from_le_bytes(*b"RpmP");
const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"Slot");
const BLOB_MAGIC: u32 = u32::from_le_bytes(*b"BlbS");
const PAGE: usize = 4096;
const BLOCK: usize = 16;

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn corrupt(m: impl Into<String>) -> RpmDbError {
    RpmDbError::Corrupt {
        format: "ndb",
        message: m.into(),
    }
}

pub fn is_ndb(content: &[u8]) -> bool {
    le32(content, 0) == Some(HEADER_MAGIC)
}

/// The header blobs, in slot order. A slot pointing at a bad blob is skipped.
pub fn blobs(content: &[u8]) -> Result<Vec<Vec<u8>>, RpmDbError> {
    if !is_ndb(content) {
        return Err(RpmDbError::NotThisFormat("ndb"));
    }
    let version = le32(content, 4).ok_or_else(|| corrupt("short header"))?;
    if version != 0 {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let npages = le32(content, 12).ok_or_else(|| corrupt("short header"))? as usize;
    let slots_end = npages
        .checked_mul(PAGE)
        .filter(|&e| e <= content.len())
        .ok_or_else(|| corrupt("slot pages beyond the end of the file"))?;
    let mut out = vec![];
    let mut at = 32;
    while at + 16 <= slots_end {
        let (magic, pkg, blk_off, blk_cnt) = (
            le32(content, at).unwrap_or(0),
            le32(content, at + 4).unwrap_or(0),
            le32(content, at + 8).unwrap_or(0) as usize,
            le32(content, at + 12).unwrap_or(0) as usize,
        );
        at += 16;
        if magic != SLOT_MAGIC {
            return Err(corrupt("bad slot magic"));
        }
        if pkg == 0 {
            continue;
        }
        let start = blk_off.saturating_mul(BLOCK);
        let end = start.saturating_add(blk_cnt.saturating_mul(BLOCK));
        let Some(blob) = content.get(start..end.min(content.len())) else {
            continue;
        };
        if le32(blob, 0) != Some(BLOB_MAGIC) || le32(blob, 4) != Some(pkg) {
            continue;
        }
        let len = le32(blob, 12).unwrap_or(0) as usize;
        if let Some(h) = blob.get(16..16 + len) {
            out.push(h.to_vec());
        }
    }
    Ok(out)
}

/// Build an ndb file from header blobs (tests and fuzz seeds), as rpm lays it out.
pub fn build(headers: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; PAGE];
    out[0..4].copy_from_slice(b"RpmP");
    out[12..16].copy_from_slice(&1u32.to_le_bytes());
    let mut slot = 32;
    while slot + 16 <= PAGE {
        out[slot..slot + 4].copy_from_slice(b"Slot");
        slot += 16;
    }
    for (i, h) in headers.iter().enumerate() {
        let blk = out.len() / BLOCK;
        let mut blob = Vec::new();
        blob.extend_from_slice(b"BlbS");
        blob.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(h.len() as u32).to_le_bytes());
        blob.extend_from_slice(h);
        blob.extend_from_slice(&[0u8; 12]); // tail: checksum, length, magic
        while !blob.len().is_multiple_of(BLOCK) {
            blob.push(0);
        }
        let s = 32 + i * 16;
        out[s + 4..s + 8].copy_from_slice(&(i as u32 + 1).to_le_bytes());
        out[s + 8..s + 12].copy_from_slice(&(blk as u32).to_le_bytes());
        out[s + 12..s + 16].copy_from_slice(&((blob.len() / BLOCK) as u32).to_le_bytes());
        out.extend_from_slice(&blob);
    }
    out
}
