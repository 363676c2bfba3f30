//! `emit` records from the ring buffer: decoded by the record kinds layout.json lists,
//! printed as aligned columns (a header when the kind changes) or as JSON lines.

use serde_json::{json, Value as Json};

use super::aggregate::KeyValue;
use super::layout::{Events, Record};

/// A decoded record: its kind and field values.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: usize,
    pub record: &'a Record,
    pub values: Vec<KeyValue>,
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(b) = bytes.get(off..off + 8) {
        w.copy_from_slice(b);
    }
    u64::from_le_bytes(w)
}

/// Decodes one record; `None` for a kind the layout does not list or a short record.
pub fn decode<'a>(events: &'a Events, bytes: &[u8]) -> Option<Event<'a>> {
    let kind = usize::try_from(u64_at(bytes, 0)).ok()?;
    let record = events.records.get(kind)?;
    if bytes.len() < record.size as usize {
        return None;
    }
    let values = record
        .fields
        .iter()
        .map(|f| {
            let (off, size) = (f.offset as usize, f.size as usize);
            match f.ty.as_str() {
                "string" => KeyValue::Str(super::aggregate::text(
                    bytes.get(off..off + size).unwrap_or_default(),
                )),
                "strings" => KeyValue::Str(super::aggregate::joined(
                    bytes.get(off..off + size).unwrap_or_default(),
                )),
                "cgroup" => KeyValue::Cgroup(u64_at(bytes, off)),
                "i64" => KeyValue::Signed(u64_at(bytes, off) as i64),
                _ => KeyValue::Int(u64_at(bytes, off)),
            }
        })
        .collect();
    Some(Event {
        kind,
        record,
        values,
    })
}

/// Whether a field is text (left-aligned in columns).
fn is_text(ty: &str) -> bool {
    ty == "string" || ty == "strings"
}

/// Column widths: strings 16 wide, integers 7, or the name's length if longer.
fn widths(r: &Record) -> Vec<usize> {
    r.fields
        .iter()
        .map(|f| f.name.len().max(if is_text(&f.ty) { 16 } else { 7 }))
        .collect()
}

/// The header line of a record kind: its field names in capitals.
pub fn header(r: &Record) -> String {
    let cols: Vec<String> = r
        .fields
        .iter()
        .zip(widths(r))
        .map(|(f, w)| {
            let name = f.name.to_uppercase();
            if is_text(&f.ty) {
                format!("{name:<w$}")
            } else {
                format!("{name:>w$}")
            }
        })
        .collect();
    cols.join(" ").trim_end().to_string()
}

/// One record as a line of columns under [`header`].
pub fn line(e: &Event<'_>) -> String {
    let cols: Vec<String> = e
        .values
        .iter()
        .zip(widths(e.record))
        .map(|(v, w)| match v {
            KeyValue::Str(s) => format!("{s:<w$}"),
            KeyValue::Int(n) => format!("{n:>w$}"),
            KeyValue::Signed(n) => format!("{n:>w$}"),
            other => format!("{other:<w$}"),
        })
        .collect();
    cols.join(" ").trim_end().to_string()
}

/// A `print` record as its line: the format with each `{}` filled by a field.
pub fn text(e: &Event<'_>) -> String {
    let values: Vec<String> = e
        .values
        .iter()
        .map(|v| match v {
            KeyValue::Str(s) => s.clone(),
            KeyValue::Int(n) => n.to_string(),
            KeyValue::Signed(n) => n.to_string(),
            other => other.to_string(),
        })
        .collect();
    pol_compiler::probe::hir::render(e.record.format.as_deref().unwrap_or_default(), &values)
}

/// A `print` record in JSON: `{"type": "print", "probe": .., "text": ..}`.
pub fn text_json(e: &Event<'_>) -> Json {
    json!({"type": "print", "probe": e.record.probe, "text": text(e)})
}

/// One record as a JSON object: `{"type": "event", "probe": .., FIELD: VALUE, ..}`.
pub fn to_json(e: &Event<'_>) -> Json {
    let mut obj = serde_json::Map::new();
    obj.insert("type".into(), json!("event"));
    obj.insert("probe".into(), json!(e.record.probe));
    for (f, v) in e.record.fields.iter().zip(&e.values) {
        let v = match v {
            KeyValue::Int(n) => json!(n),
            KeyValue::Str(s) => json!(s),
            KeyValue::Cgroup(id) => super::aggregate::cgroup_json(*id),
            KeyValue::Signed(n) => json!(n),
            other => json!(other.to_string()),
        };
        obj.insert(f.name.clone(), v);
    }
    Json::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::layout::TraceLayout;

    #[test]
    fn records_decode_by_kind_and_print_in_columns() {
        let l = TraceLayout::parse(
            r#"{"schema": 1, "license": "GPL", "programs": [], "maps": [],
                "events": {"ring": "r", "lost": "l", "records": [{"probe": "opens", "size": 32,
                "fields": [{"name": "pid", "type": "u64", "offset": 8, "size": 8},
                           {"name": "comm", "type": "string", "offset": 16, "size": 16}]}]}}"#,
        )
        .expect("layout");
        let ev = l.events.expect("events");
        let mut rec = vec![0u8; 32];
        rec[8..16].copy_from_slice(&42u64.to_le_bytes());
        rec[16..19].copy_from_slice(b"cat");
        let e = decode(&ev, &rec).expect("decodes");
        assert_eq!(header(e.record), "    PID COMM");
        assert_eq!(line(&e), "     42 cat");
        assert_eq!(
            to_json(&e),
            serde_json::json!({"type": "event", "probe": "opens", "pid": 42, "comm": "cat"})
        );
        rec[0] = 1;
        assert!(decode(&ev, &rec).is_none(), "an unknown kind");
        assert!(decode(&ev, &rec[..8]).is_none(), "a short record");
    }
}
