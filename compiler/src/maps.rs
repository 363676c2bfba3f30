//! Map descriptions: kind, key and value types, size and flags. The rule IR builds them
//! (`ir::lower`), the object writer and layout.json write them out (`obj`, which re-exports
//! them), the runtime creates and reads maps by them. Nothing here knows ELF.

use serde::{Deserialize, Serialize};

/// `BPF_F_NO_PREALLOC`; the kernel demands it for LPM tries.
pub const BPF_F_NO_PREALLOC: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSpec {
    /// Symbol and BTF VAR name, a C identifier.
    pub name: String,
    pub kind: MapKind,
    /// Ignored for [`MapKind::RingBuf`].
    pub key: BtfTy,
    /// For [`MapKind::RingBuf`]: the record type written to the ring (layout.json only).
    pub value: BtfTy,
    pub max_entries: u32,
    /// `map_flags`; [`BPF_F_NO_PREALLOC`] is added for [`MapKind::LpmTrie`].
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    Hash,
    Array,
    PercpuArray,
    PercpuHash,
    LruHash,
    LpmTrie,
    /// `"ringbuf"` in layout.json, as bpftool spells it.
    #[serde(rename = "ringbuf")]
    RingBuf,
    /// Stack traces by id (`get_stackid`); BTF gives its sizes, not key/value types,
    /// which the kernel refuses for this map type.
    StackTrace,
}

impl MapKind {
    /// `enum bpf_map_type` value.
    pub fn bpf_type(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::Array => 2,
            MapKind::PercpuHash => 5,
            MapKind::PercpuArray => 6,
            MapKind::LruHash => 9,
            MapKind::LpmTrie => 11,
            MapKind::RingBuf => 27,
            MapKind::StackTrace => 7,
        }
    }
}

impl MapSpec {
    /// The `map_flags` actually written: LPM tries always get `BPF_F_NO_PREALLOC`.
    pub fn effective_flags(&self) -> u32 {
        match self.kind {
            MapKind::LpmTrie => self.flags | BPF_F_NO_PREALLOC,
            _ => self.flags,
        }
    }

    /// Key and value sizes as the kernel sees them (0 and 0 for a ring buffer).
    pub fn key_value_size(&self) -> (u32, u32) {
        match self.kind {
            MapKind::RingBuf => (0, 0),
            _ => (self.key.size(), self.value.size()),
        }
    }
}

/// A key, value or record type. Struct fields are laid out in order with natural C alignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum BtfTy {
    U8,
    U16,
    U32,
    U64,
    /// `u8[N]`.
    Bytes(u32),
    Struct {
        name: String,
        fields: Vec<(String, BtfTy)>,
    },
}

impl BtfTy {
    pub fn align(&self) -> u32 {
        match self {
            BtfTy::U8 | BtfTy::Bytes(_) => 1,
            BtfTy::U16 => 2,
            BtfTy::U32 => 4,
            BtfTy::U64 => 8,
            BtfTy::Struct { fields, .. } => {
                fields.iter().map(|(_, t)| t.align()).max().unwrap_or(1)
            }
        }
    }

    pub fn size(&self) -> u32 {
        match self {
            BtfTy::U8 => 1,
            BtfTy::U16 => 2,
            BtfTy::U32 => 4,
            BtfTy::U64 => 8,
            BtfTy::Bytes(n) => *n,
            BtfTy::Struct { .. } => {
                let (end, _) = self.field_offsets();
                round_up(end, self.align())
            }
        }
    }

    /// Byte offset of each struct field and the end of the last one (empty for non-structs).
    pub fn field_offsets(&self) -> (u32, Vec<u32>) {
        let BtfTy::Struct { fields, .. } = self else {
            return (0, Vec::new());
        };
        let mut end = 0;
        let mut offsets = Vec::with_capacity(fields.len());
        for (_, ty) in fields {
            let off = round_up(end, ty.align());
            offsets.push(off);
            end = off + ty.size();
        }
        (end, offsets)
    }
}

fn round_up(n: u32, align: u32) -> u32 {
    n.div_ceil(align) * align
}
