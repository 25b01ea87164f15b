//! Where a field sits in a kernel struct, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). Programs written in Rust carry no CO-RE relocations, so an
//! offset that differs between kernel builds is looked up here and handed to the program as a
//! load-time global.

use std::path::Path;

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;
const TYPE_HEADER: usize = 12;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no field `{member}` in `struct {structure}`")]
    NoField { structure: String, member: String },
}

/// Byte offset of `member` in `struct structure` of the running kernel.
pub fn field_offset(structure: &str, member: &str) -> Result<u32, BtfError> {
    let path = Path::new("/sys/kernel/btf/vmlinux");
    let data = std::fs::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    offset_in(&data, structure, member)
}

/// Byte offset of `member` in `struct structure` of the BTF blob `data` (host byte order).
pub fn offset_in(data: &[u8], structure: &str, member: &str) -> Result<u32, BtfError> {
    let blob = Blob::parse(data)?;
    let mut at = 0;
    while at + TYPE_HEADER <= blob.types.len() {
        let name_off = u32_at(blob.types, at)?;
        let info = u32_at(blob.types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let members = at + TYPE_HEADER;
        if kind == KIND_STRUCT && blob.string(name_off)? == structure.as_bytes() {
            let bitfields = info >> 31 == 1;
            for index in 0..vlen {
                let entry = members + index * 12;
                if blob.string(u32_at(blob.types, entry)?)? != member.as_bytes() {
                    continue;
                }
                let mut bits = u32_at(blob.types, entry + 8)?;
                if bitfields {
                    bits &= 0x00ff_ffff;
                }
                return Ok(bits / 8);
            }
        }
        at = members + trailer_len(kind, vlen)?;
    }
    Err(BtfError::NoField {
        structure: structure.to_owned(),
        member: member.to_owned(),
    })
}

/// Bytes that follow a type's 12-byte header, by kind (include/uapi/linux/btf.h).
fn trailer_len(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7..=12 | 16 | 18 => 0,
        // ARRAY: type, index type, count.
        3 => 12,
        // STRUCT, UNION, DATASEC, ENUM64: vlen entries of three u32.
        KIND_STRUCT | KIND_UNION | 15 | 19 => vlen * 12,
        // ENUM, FUNC_PROTO: vlen entries of two u32.
        6 | 13 => vlen * 8,
        _ => return Err(BtfError::Malformed("unknown type kind")),
    })
}

struct Blob<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

impl<'a> Blob<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        if data.len() < HEADER_MIN {
            return Err(BtfError::Malformed("short header"));
        }
        if u16::from_ne_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("bad magic (or another byte order)"));
        }
        let header_len = u32_at(data, 4)? as usize;
        let section = |offset: usize, len: usize| {
            let start = header_len + u32_at(data, offset)? as usize;
            let len = u32_at(data, len)? as usize;
            data.get(start..start + len)
                .ok_or(BtfError::Malformed("section beyond the end"))
        };
        Ok(Blob {
            types: section(8, 12)?,
            strings: section(16, 20)?,
        })
    }

    fn string(&self, offset: u32) -> Result<&'a [u8], BtfError> {
        let rest = self
            .strings
            .get(offset as usize..)
            .ok_or(BtfError::Malformed("string beyond the end"))?;
        Ok(&rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())])
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, BtfError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob with `int` and `struct pair { int a; int b; }`, as the kernel lays it out.
    fn pair_blob(bitfields: bool) -> Vec<u8> {
        let strings = b"\0int\0pair\0a\0b\0";
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for word in words {
                types.extend_from_slice(&word.to_ne_bytes());
            }
        };
        // [1] INT "int", size 4, 32 bits.
        push(&[1, 1 << 24, 4, 32]);
        // [2] STRUCT "pair", two members; with kind_flag, offsets carry a bitfield size.
        let flag = if bitfields { 1 << 31 } else { 0 };
        let b_offset = if bitfields { (8 << 24) | 32 } else { 32 };
        push(&[
            5,
            flag | (KIND_STRUCT << 24) | 2,
            8,
            10,
            1,
            0,
            12,
            1,
            b_offset,
        ]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for word in [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend_from_slice(&word.to_ne_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        blob
    }

    #[test]
    fn member_offsets_are_read_in_bytes() {
        for bitfields in [false, true] {
            let blob = pair_blob(bitfields);
            assert_eq!(offset_in(&blob, "pair", "a").unwrap(), 0);
            assert_eq!(offset_in(&blob, "pair", "b").unwrap(), 4);
            assert!(matches!(
                offset_in(&blob, "pair", "c"),
                Err(BtfError::NoField { .. })
            ));
        }
    }

    #[test]
    fn a_cut_blob_is_an_error_not_a_guess() {
        let blob = pair_blob(false);
        for len in [0, 10, 30, blob.len() - 3] {
            assert!(offset_in(&blob[..len], "pair", "b").is_err(), "{len}");
        }
    }

    #[test]
    fn the_running_kernel_places_unix_sock_addr() {
        // struct unix_sock starts with its struct sock; `addr` lies beyond it, and
        // unix_address's `name` follows its refcount and length.
        let addr = field_offset("unix_sock", "addr").expect("unix_sock.addr");
        let sock_size = field_offset("sock", "sk_bpf_storage");
        assert!(addr > 0, "{addr}");
        if let Ok(inside) = sock_size {
            assert!(addr > inside, "{addr} vs {inside}");
        }
        assert_eq!(field_offset("unix_address", "name").unwrap(), 8);
    }
}
