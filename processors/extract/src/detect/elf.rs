//! A minimal, bounds-checked ELF reader over bytes: the section table (name, file range,
//! address) and the loadable segments, enough to find a named section and to map a
//! virtual address to file bytes. Malformed input gives `None`, never a panic.

/// Whether `b` starts with the ELF magic.
pub fn is_elf(b: &[u8]) -> bool {
    b.starts_with(b"\x7fELF")
}

#[derive(Debug, Clone, Copy)]
struct Layout {
    be: bool,
}

impl Layout {
    fn u16(&self, b: &[u8], off: usize) -> Option<u64> {
        let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(if self.be {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        } as u64)
    }
    fn u32(&self, b: &[u8], off: usize) -> Option<u64> {
        let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if self.be {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        } as u64)
    }
    fn u64(&self, b: &[u8], off: usize) -> Option<u64> {
        let s: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(if self.be {
            u64::from_be_bytes(s)
        } else {
            u64::from_le_bytes(s)
        })
    }
}

/// One section: name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    /// SHT_NOBITS (no bytes in the file).
    pub nobits: bool,
}

/// One PT_LOAD segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

/// A parsed ELF file over borrowed bytes.
#[derive(Debug, Clone)]
pub struct Elf<'a> {
    data: &'a [u8],
    pub big_endian: bool,
    pub is64: bool,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

const MAX_TABLE: u64 = 65_536;

impl<'a> Elf<'a> {
    /// Parse the headers; `None` when this is not a well-formed ELF file.
    pub fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if !is_elf(data) || data.len() < 52 {
            return None;
        }
        let is64 = match data[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let be = match data[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let l = Layout { be };
        let (phoff, shoff, rest) = if is64 {
            (l.u64(data, 0x20)?, l.u64(data, 0x28)?, 0x34)
        } else {
            (l.u32(data, 0x1c)?, l.u32(data, 0x20)?, 0x28)
        };
        let phentsize = l.u16(data, rest + 2)?;
        let phnum = l.u16(data, rest + 4)?;
        let shentsize = l.u16(data, rest + 6)?;
        let shnum = l.u16(data, rest + 8)?;
        let shstrndx = l.u16(data, rest + 10)?;

        let mut segments = Vec::new();
        if phnum <= MAX_TABLE && phentsize >= if is64 { 56 } else { 32 } {
            for i in 0..phnum {
                let Some(o) = phoff
                    .checked_add(i * phentsize)
                    .filter(|&o| o < data.len() as u64)
                else {
                    break;
                };
                let o = o as usize;
                if l.u32(data, o) != Some(1) {
                    continue; // not PT_LOAD (or out of range)
                }
                let seg = if is64 {
                    Segment {
                        offset: l.u64(data, o + 8)?,
                        vaddr: l.u64(data, o + 16)?,
                        filesz: l.u64(data, o + 32)?,
                    }
                } else {
                    Segment {
                        offset: l.u32(data, o + 4)?,
                        vaddr: l.u32(data, o + 8)?,
                        filesz: l.u32(data, o + 16)?,
                    }
                };
                segments.push(seg);
            }
        }

        let mut raw = Vec::new();
        if shnum <= MAX_TABLE && shentsize >= if is64 { 64 } else { 40 } {
            for i in 0..shnum {
                let Some(o) = shoff
                    .checked_add(i * shentsize)
                    .filter(|&o| o < data.len() as u64)
                else {
                    break;
                };
                let o = o as usize;
                let Some(name) = l.u32(data, o) else { break };
                let Some(ty) = l.u32(data, o + 4) else { break };
                let (addr, offset, size) = if is64 {
                    (
                        l.u64(data, o + 16)?,
                        l.u64(data, o + 24)?,
                        l.u64(data, o + 32)?,
                    )
                } else {
                    (
                        l.u32(data, o + 12)?,
                        l.u32(data, o + 16)?,
                        l.u32(data, o + 20)?,
                    )
                };
                raw.push((name, ty, addr, offset, size));
            }
        }
        let strtab = raw
            .get(shstrndx as usize)
            .and_then(|&(_, _, _, off, size)| slice(data, off, size));
        let sections = raw
            .iter()
            .map(|&(name, ty, addr, offset, size)| Section {
                name: strtab
                    .and_then(|t| t.get(name as usize..))
                    .map(|t| {
                        let end = memchr::memchr(0, t).unwrap_or(t.len());
                        String::from_utf8_lossy(&t[..end]).into_owned()
                    })
                    .unwrap_or_default(),
                addr,
                offset,
                size,
                nobits: ty == 8,
            })
            .collect();
        Some(Elf {
            data,
            big_endian: be,
            is64,
            sections,
            segments,
        })
    }

    /// The bytes of the named section, if present and inside the file.
    pub fn section_data(&self, name: &str) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name && !s.nobits)?;
        slice(self.data, s.offset, s.size)
    }

    /// File offset of the section named `name`.
    pub fn section_offset(&self, name: &str) -> Option<u64> {
        self.sections
            .iter()
            .find(|s| s.name == name && !s.nobits)
            .map(|s| s.offset)
    }

    /// `len` bytes at virtual address `addr`, through the loadable segments (or, failing
    /// that, the sections).
    pub fn read_vaddr(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let end = addr.checked_add(len)?;
        let ranges = self
            .segments
            .iter()
            .map(|s| (s.vaddr, s.offset, s.filesz))
            .chain(
                self.sections
                    .iter()
                    .filter(|s| !s.nobits && s.addr != 0)
                    .map(|s| (s.addr, s.offset, s.size)),
            );
        for (vaddr, offset, size) in ranges {
            let Some(vend) = vaddr.checked_add(size) else {
                continue;
            };
            if addr >= vaddr && end <= vend {
                if let Some(b) = offset
                    .checked_add(addr - vaddr)
                    .and_then(|o| slice(self.data, o, len))
                {
                    return Some(b);
                }
            }
        }
        None
    }
}

fn slice(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let end = off.checked_add(len)?;
    if end > data.len() as u64 {
        return None;
    }
    data.get(off as usize..end as usize)
}
