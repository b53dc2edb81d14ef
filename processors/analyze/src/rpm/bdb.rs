//! BerkeleyDB hash database (`/var/lib/rpm/Packages`), read-only, without the C library.
//! Page 0 is the hash metadata page (magic 0x061561, page size, last page number, byte
//! order given by how the magic reads). Every hash page (types 2 and 13) holds an index
//! of u16 item offsets after its 26-byte header, alternating key and value; a value is
//! inline (`H_KEYDATA`, 1) or, for anything larger than a fraction of a page, an
//! off-page reference (`H_OFFPAGE`, 3: first overflow page, total length) to a chain of
//! overflow pages (type 7) whose header's `hf_offset` is the bytes used on the last one.

use super::RpmDbError;

const HASH_MAGIC: u32 = 0x061561;
const HEADER: usize = 26;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// A header blob larger than this is not an rpm header (rpm caps data at 256 MiB).
const MAX_VALUE: usize = 256 << 20;

fn corrupt(m: impl Into<String>) -> RpmDbError {
    RpmDbError::Corrupt {
        format: "bdb",
        message: m.into(),
    }
}

#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(x)
        } else {
            u32::from_le_bytes(x)
        })
    }
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(x)
        } else {
            u16::from_le_bytes(x)
        })
    }
}

struct Db<'a> {
    bytes: &'a [u8],
    page_size: usize,
    order: Order,
}

impl<'a> Db<'a> {
    fn page(&self, n: u32) -> Option<&'a [u8]> {
        let start = (n as usize).checked_mul(self.page_size)?;
        self.bytes.get(start..start.checked_add(self.page_size)?)
    }

    /// Follow an overflow chain; a loop or a bad page ends it with an error.
    fn overflow(&self, first: u32, total: usize) -> Result<Vec<u8>, RpmDbError> {
        if total > MAX_VALUE {
            return Err(corrupt("off-page value too large"));
        }
        let mut out = Vec::with_capacity(total.min(self.bytes.len()));
        let mut n = first;
        let mut hops = 0usize;
        while n != 0 {
            hops += 1;
            if hops > self.bytes.len() / self.page_size + 1 {
                return Err(corrupt("overflow chain loops"));
            }
            let p = self
                .page(n)
                .ok_or_else(|| corrupt("overflow page beyond the end"))?;
            if p[25] != P_OVERFLOW {
                return Err(corrupt(format!("page {n} is not an overflow page")));
            }
            let next = self.order.u32(p, 16).unwrap_or(0);
            let used = if next == 0 {
                (self.order.u16(p, 22).unwrap_or(0) as usize).min(self.page_size - HEADER)
            } else {
                self.page_size - HEADER
            };
            out.extend_from_slice(&p[HEADER..HEADER + used]);
            n = next;
        }
        out.truncate(total);
        Ok(out)
    }
}

/// Every value of the hash database (for rpm: one header blob per installed package).
pub fn blobs(content: &[u8]) -> Result<Vec<Vec<u8>>, RpmDbError> {
    let magic_le = content
        .get(12..16)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let magic_be = content
        .get(12..16)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
    let order = match (magic_le, magic_be) {
        (Some(HASH_MAGIC), _) => Order { big: false },
        (_, Some(HASH_MAGIC)) => Order { big: true },
        _ => return Err(RpmDbError::NotThisFormat("bdb")),
    };
    if content.get(25) != Some(&P_HASHMETA) {
        return Err(corrupt("page 0 is not a hash metadata page"));
    }
    let page_size = order.u32(content, 20).unwrap_or(0) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(corrupt(format!("page size {page_size}")));
    }
    let last = order.u32(content, 32).unwrap_or(0);
    let db = Db {
        bytes: content,
        page_size,
        order,
    };
    let mut out = vec![];
    for n in 1..=last {
        let Some(p) = db.page(n) else { break };
        if p[25] != P_HASH && p[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = order.u16(p, 20).unwrap_or(0) as usize;
        let index = |i: usize| order.u16(p, HEADER + 2 * i).map(|o| o as usize);
        // Values are the odd items.
        for i in (1..entries).step_by(2) {
            let Some(off) = index(i).filter(|&o| o >= HEADER && o < page_size) else {
                continue;
            };
            match p[off] {
                H_OFFPAGE => {
                    let (Some(pg), Some(len)) = (order.u32(p, off + 4), order.u32(p, off + 8))
                    else {
                        continue;
                    };
                    // A chain that leaves the file (a database cut at extract's keep cap)
                    // or loops loses that value only.
                    if let Ok(v) = db.overflow(pg, len as usize) {
                        out.push(v);
                    }
                }
                H_KEYDATA => {
                    // Items are laid from the page end downwards: this one ends where the
                    // previous item (lower index) starts.
                    let end = if i == 0 {
                        page_size
                    } else {
                        index(i - 1).unwrap_or(page_size)
                    };
                    if end > off + 1 && end <= page_size {
                        out.push(p[off + 1..end].to_vec());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}
