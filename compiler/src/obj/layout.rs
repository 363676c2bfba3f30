//! layout.json: what the runtime needs to attach programs and decode maps and events,
//! without parsing the object. Field order is declaration order and lists keep spec order,
//! so the output is deterministic. Bump [`SCHEMA`] on any incompatible change.

use serde::Serialize;

use super::{AttachSpec, BtfTy, MapKind, ObjectSpec, RuleInfo, StatsInfo};

/// Version of the layout.json format.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    pub schema: u32,
    pub license: String,
    pub programs: Vec<ProgramLayout>,
    pub maps: Vec<MapLayout>,
}

impl Layout {
    /// Pretty-printed layout.json, as written next to the object.
    pub fn to_json(&self) -> String {
        // Plain structs with string keys: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramLayout {
    /// Symbol name: the name loaders know the program by.
    pub name: String,
    pub section: String,
    pub attach: AttachSpec,
    /// Instruction slots (`ld_imm64` counts twice).
    pub insns: usize,
    pub rules: Vec<RuleInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapLayout {
    pub name: String,
    pub kind: MapKind,
    /// `None` for ring buffers.
    pub key: Option<TypeLayout>,
    /// `None` for ring buffers.
    pub value: Option<TypeLayout>,
    /// Ring buffers only: the record type the programs write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<TypeLayout>,
    pub max_entries: u32,
    /// `map_flags` as written to the object.
    pub flags: u32,
    pub key_size: u32,
    pub value_size: u32,
}

/// A type with its size and, for structs, each field's byte offset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeLayout {
    /// `u8`, `u16`, `u32`, `u64`, `bytes` or `struct`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldLayout>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldLayout {
    pub name: String,
    pub offset: u32,
    #[serde(rename = "type")]
    pub ty: TypeLayout,
}

impl TypeLayout {
    pub fn of(ty: &BtfTy) -> Self {
        let plain = |kind| TypeLayout {
            kind,
            name: None,
            size: ty.size(),
            fields: None,
        };
        match ty {
            BtfTy::U8 => plain("u8"),
            BtfTy::U16 => plain("u16"),
            BtfTy::U32 => plain("u32"),
            BtfTy::U64 => plain("u64"),
            BtfTy::Bytes(_) => plain("bytes"),
            BtfTy::Struct { name, fields } => {
                let (_, offsets) = ty.field_offsets();
                let fields = fields
                    .iter()
                    .zip(offsets)
                    .map(|((fname, fty), offset)| FieldLayout {
                        name: fname.clone(),
                        offset,
                        ty: TypeLayout::of(fty),
                    })
                    .collect();
                TypeLayout {
                    kind: "struct",
                    name: Some(name.clone()),
                    size: ty.size(),
                    fields: Some(fields),
                }
            }
        }
    }
}

pub(crate) fn build(spec: &ObjectSpec) -> Layout {
    let programs = spec
        .programs
        .iter()
        .map(|p| ProgramLayout {
            name: p.name.clone(),
            section: p.section.clone(),
            attach: p.attach.clone(),
            insns: p.insns.len(),
            rules: p.rules.clone(),
            stats: p.stats.clone(),
        })
        .collect();
    let maps = spec
        .maps
        .iter()
        .map(|m| {
            let ring = m.kind == MapKind::RingBuf;
            let (key_size, value_size) = m.key_value_size();
            MapLayout {
                name: m.name.clone(),
                kind: m.kind,
                key: (!ring).then(|| TypeLayout::of(&m.key)),
                value: (!ring).then(|| TypeLayout::of(&m.value)),
                record: ring.then(|| TypeLayout::of(&m.value)),
                max_entries: m.max_entries,
                flags: m.effective_flags(),
                key_size,
                value_size,
            }
        })
        .collect();
    Layout {
        schema: SCHEMA,
        license: spec.license.clone(),
        programs,
        maps,
    }
}
