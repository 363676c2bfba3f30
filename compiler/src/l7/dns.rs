//! DNS (issue 13 §2): `dns.qname` matched in the kernel against exact names and
//! wildcard suffixes (`*.example.com`), case-insensitively, at a cost that does not grow
//! with the number of names.
//!
//! How: the stage (`ir::to_mir::dns`) copies the DNS message's first bytes into the
//! filter's scratch map, and two `bpf_loop`s ([`walk_callback`], [`copy_callback`]) turn
//! the question name into one canonical key: its labels in reverse order, each as its
//! length with the top bit set followed by its bytes in lower case, then a 0 byte
//! (`a.Blocked.test` is `\x84test\x87blocked\x81a\x00`). A set of patterns is an LPM trie
//! over such keys: an exact name is its whole key, `*.blocked.test` the key of
//! `blocked.test` without the final 0 plus one bit (the top bit of the next label's
//! length), so it covers every name below `blocked.test` and not `blocked.test` itself.
//! A name matches a set when some pattern is a prefix of its key: one trie lookup,
//! whatever the number of names (see docs/l7.md).

use crate::syntax::ast::Span;
use serde::Serialize;
use std::fmt::Write as _;

/// Longest DNS name on the wire (RFC 1035): length bytes, labels and the root's 0.
pub const NAME_WIRE_MAX: usize = 255;
/// Longest label.
pub const LABEL_MAX: usize = 63;
/// Bytes of a key after its prefix length: a 255-byte wire name gives at most 254
/// (its first length byte is not there, its root byte is the final 0).
pub const KEY_DATA: usize = 256;
/// An LPM-trie key: u32 prefix length (bits, host order) then [`KEY_DATA`] bytes.
pub const KEY_SIZE: usize = 4 + KEY_DATA;
/// The top bit on a label's length in a key: `*.x` ends on it.
const LABEL_MARK: u8 = 0x80;

// The scratch map value (`{filter}_l7`, one per-CPU entry): what the stage leaves.
/// u8: 0 no DNS message, 1 a question name was read, 2 incomplete.
pub const S_STATUS: i16 = 0;
/// u16: bytes of the message copied to `S_RAW`.
pub const S_N: i16 = 2;
/// u16, host order: the question's type (1 A, 28 AAAA, ...).
pub const S_QTYPE: i16 = 4;
/// u8: the header's RCODE (low 4 bits of byte 3).
pub const S_RCODE: i16 = 6;
/// u8: 1 for a response (QR bit), 0 for a query.
pub const S_QR: i16 = 7;
/// The LPM key of the question name.
pub const S_KEY: i16 = 8;
/// The message's first `RAW_MAX` bytes.
pub const S_RAW: i16 = 272;
/// Bytes of the message read: the header (12), a longest name (255), type and class (4),
/// rounded up to a power of two so that an index masked with `RAW_MAX - 1` stays inside.
pub const RAW_MAX: i16 = 512;
/// u16 per label: where each label of the question name starts in `S_RAW`.
pub const S_LABELS: i16 = S_RAW + RAW_MAX;
/// At most this many labels (a 255-byte name has at most 127).
pub const LABELS_MAX: i16 = 128;

/// Status values at `S_STATUS`.
pub const ST_NONE: i64 = 0;
pub const ST_OK: i64 = 1;
pub const ST_INCOMPLETE: i64 = 2;

/// The DNS port.
pub const PORT: u16 = 53;
/// Compression pointers followed in one name at most.
pub const HOPS_MAX: i64 = 16;

/// The integer fields of a DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Field {
    QType,
    RCode,
    Response,
}

impl Field {
    pub fn by_name(name: &str) -> Option<Field> {
        Some(match name {
            "dns.qtype" => Field::QType,
            "dns.rcode" => Field::RCode,
            "dns.response" => Field::Response,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::QType => "dns.qtype",
            Field::RCode => "dns.rcode",
            Field::Response => "dns.response",
        }
    }

    /// Where the stage leaves it in the scratch value, and its size.
    pub fn slot(self) -> (i16, u8) {
        match self {
            Field::QType => (S_QTYPE, 2),
            Field::RCode => (S_RCODE, 1),
            Field::Response => (S_QR, 1),
        }
    }

    /// The largest value.
    pub fn max(self) -> u64 {
        match self {
            Field::QType => 0xffff,
            Field::RCode => 15,
            Field::Response => 1,
        }
    }

    /// Names for values (`dns.qtype == AAAA`, `dns.rcode == NXDOMAIN`).
    pub fn named(self, name: &str) -> Option<u64> {
        let table: &[(&str, u64)] = match self {
            Field::QType => &[
                ("A", 1),
                ("NS", 2),
                ("CNAME", 5),
                ("SOA", 6),
                ("PTR", 12),
                ("MX", 15),
                ("TXT", 16),
                ("AAAA", 28),
                ("SRV", 33),
                ("SVCB", 64),
                ("HTTPS", 65),
                ("ANY", 255),
            ],
            Field::RCode => &[
                ("NOERROR", 0),
                ("FORMERR", 1),
                ("SERVFAIL", 2),
                ("NXDOMAIN", 3),
                ("NOTIMP", 4),
                ("REFUSED", 5),
            ],
            Field::Response => &[],
        };
        table
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }
}

/// Every DNS field, for errors and completion.
pub const FIELDS: &[&str] = &["dns", "dns.qname", "dns.qtype", "dns.rcode", "dns.response"];

/// One pattern of a name set: an exact name, or `*.` and a suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Pattern {
    pub wildcard: bool,
    /// Labels left to right, in lower case (without the `*`).
    pub labels: Vec<Vec<u8>>,
}

/// A set of patterns tested by rules, as one LPM-trie map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameSet {
    /// The map's name.
    pub map: String,
    pub patterns: Vec<Pattern>,
    pub span: Span,
    /// A named set (`set NAME: dnsname = ..`, its map named after it), which `pol set`
    /// changes; else the patterns written in a rule.
    pub declared: bool,
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*")?;
            if !self.labels.is_empty() {
                f.write_str(".")?;
            }
        }
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        f.write_str(&parts.join("."))
    }
}

const WILDCARD: &str = "a wildcard is the whole first label: `*.example.com`";

/// Parses `www.example.com`, `*.example.com`, `Example.COM.` (a final dot is the root and
/// changes nothing; case is folded). The error says what is wrong, for a span.
pub fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let t = text.strip_suffix('.').unwrap_or(text);
    if t.is_empty() {
        return Err("an empty name: write a name such as `example.com`".into());
    }
    let (wildcard, rest) = match t.strip_prefix('*') {
        Some("") => (true, ""),
        Some(r) => match r.strip_prefix('.') {
            Some(r) => (true, r),
            None => return Err(WILDCARD.into()),
        },
        None => (false, t),
    };
    let mut labels = Vec::new();
    if !rest.is_empty() {
        for l in rest.split('.') {
            if l.is_empty() {
                return Err(format!("an empty label in `{text}` (two dots in a row)"));
            }
            if l.contains('*') {
                return Err(WILDCARD.into());
            }
            if let Some(c) = l.chars().find(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "a name holds no white space or control character ({c:?})"
                ));
            }
            if l.len() > LABEL_MAX {
                return Err(format!(
                    "the label `{l}` is {} bytes long; DNS labels hold at most {LABEL_MAX}",
                    l.len()
                ));
            }
            labels.push(l.as_bytes().to_ascii_lowercase());
        }
    }
    // On the wire: a length byte per label, the labels, the root's 0; a wildcard stands
    // for at least one more label of at least one byte.
    let wire: usize =
        labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1 + 2 * usize::from(wildcard);
    if wire > NAME_WIRE_MAX {
        return Err(format!(
            "this name is {wire} bytes on the wire; DNS names hold at most {NAME_WIRE_MAX}"
        ));
    }
    Ok(Pattern { wildcard, labels })
}

/// The LPM-trie key of a pattern: [`KEY_SIZE`] bytes (prefix length in bits, then the
/// data, zero-padded).
pub fn pattern_key(p: &Pattern) -> Vec<u8> {
    let mut data = reversed(&p.labels);
    let bits = if p.wildcard {
        data.push(LABEL_MARK);
        (data.len() * 8 - 7) as u32
    } else {
        data.push(0);
        (data.len() * 8) as u32
    };
    with_prefix(bits, data)
}

/// The pattern an LPM-trie key of [`pattern_key`] stands for (`pol set list`); `None` for
/// a key no pattern makes.
pub fn key_pattern(key: &[u8]) -> Option<Pattern> {
    let bits = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let data = key.get(4..)?;
    let (wildcard, len) = if bits % 8 == 1 {
        (true, bits / 8)
    } else if bits.is_multiple_of(8) && bits >= 8 {
        (false, bits / 8 - 1)
    } else {
        return None;
    };
    // The labels right to left: length with the top bit, bytes; then the mark or the 0.
    let mut labels = Vec::new();
    let mut i = 0;
    while i < len {
        let l = usize::from(*data.get(i)? & !LABEL_MARK);
        labels.push(data.get(i + 1..i + 1 + l)?.to_vec());
        i += 1 + l;
    }
    if i != len || (!wildcard && *data.get(len)? != 0) {
        return None;
    }
    labels.reverse();
    Some(Pattern { wildcard, labels })
}

/// The LPM-trie key the kernel builds for a question name (labels left to right, any case).
pub fn name_key(labels: &[Vec<u8>]) -> Vec<u8> {
    let lower: Vec<Vec<u8>> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    let mut data = reversed(&lower);
    data.push(0);
    let bits = (data.len() * 8) as u32;
    with_prefix(bits, data)
}

fn reversed(labels: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    for l in labels.iter().rev() {
        data.push(l.len() as u8 | LABEL_MARK);
        data.extend_from_slice(l);
    }
    data
}

fn with_prefix(bits: u32, mut data: Vec<u8>) -> Vec<u8> {
    data.resize(KEY_DATA, 0);
    let mut k = bits.to_ne_bytes().to_vec();
    k.extend(data);
    k
}

/// The reference matcher: does `p` match the name with these labels (any case)?
pub fn matches(p: &Pattern, labels: &[Vec<u8>]) -> bool {
    let n = p.labels.len();
    if labels.len() < n + usize::from(p.wildcard) || (!p.wildcard && labels.len() != n) {
        return false;
    }
    let tail = &labels[labels.len() - n..];
    tail.iter()
        .zip(&p.labels)
        .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// The question name of a DNS message as the kernel reads it: labels, following
/// compression pointers strictly backwards (at most [`HOPS_MAX`]); `None` when the
/// stage calls it incomplete (cut short, a pointer forwards or into the header, more
/// than 255 bytes, a reserved label type, not exactly one question).
pub fn question(msg: &[u8]) -> Option<Vec<Vec<u8>>> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let n = msg.len().min(RAW_MAX as usize);
    let mut pos = 12usize;
    let mut labels = Vec::new();
    let (mut wire, mut hops, mut qend) = (0usize, 0, None);
    loop {
        let c = *msg.get(pos).filter(|_| pos < n)?;
        if c == 0 {
            let end = qend.unwrap_or(pos + 1);
            // The type and class follow the name.
            return (end + 4 <= n).then_some(labels);
        }
        match c & 0xc0 {
            0xc0 => {
                let lo = *msg.get(pos + 1).filter(|_| pos + 1 < n)?;
                let target = (usize::from(c & 0x3f) << 8) | usize::from(lo);
                if target >= pos || target < 12 {
                    return None;
                }
                qend.get_or_insert(pos + 2);
                hops += 1;
                if hops > HOPS_MAX {
                    return None;
                }
                pos = target;
            }
            0 => {
                let len = usize::from(c);
                if pos + len + 1 >= n || labels.len() >= LABELS_MAX as usize - 1 {
                    return None;
                }
                wire += len + 1;
                if wire > NAME_WIRE_MAX - 1 {
                    return None;
                }
                labels.push(msg[pos + 1..=pos + len].to_vec());
                pos += len + 1;
            }
            _ => return None,
        }
    }
}

/// Names of the maps and functions of one filter's DNS stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub scratch: String,
    pub func: String,
    pub walk: String,
    pub copy: String,
}

impl Names {
    pub fn of_filter(filter: &str) -> Names {
        Names {
            scratch: scratch_map(filter),
            func: format!("{filter}_dns_name"),
            walk: format!("{filter}_dns_walk"),
            copy: format!("{filter}_dns_copy"),
        }
    }
}

/// The scratch map of a filter's L7 stage.
pub fn scratch_map(filter: &str) -> String {
    format!("{filter}_l7")
}

// The loops' state, in the scratch value after the labels: on the stack, the verifier
// would track the position as a precise, ever wider range from one callback call to the
// next and never see two calls alike ("The sequence of 8193 jumps is too complex");
// loaded from a map value it is any number, and the callback is verified once.
pub(super) const S_STATE: usize = (S_LABELS + 2 * LABELS_MAX) as usize;
pub(super) const T_POS: usize = S_STATE;
const T_LABELS: usize = S_STATE + 8;
const T_WIRE: usize = S_STATE + 16;
const T_HOPS: usize = S_STATE + 24;
pub(super) const T_RES: usize = S_STATE + 32;
const T_QEND: usize = S_STATE + 40;
pub(super) const T_BYTES: usize = 48;
/// The TLS stage's own words (`l7::tls`).
pub const S_TLS: usize = S_STATE + T_BYTES;
/// The scratch value's size.
pub const SCRATCH_SIZE: u32 = (S_TLS + super::tls::TLS_BYTES) as u32;
/// The walk's calls: every label, every pointer and the end.
const WALK_CALLS: i64 = LABELS_MAX as i64 + HOPS_MAX + 2;

/// The stage's functions as MIR text: `{filter}_dns_name(u64) -> u64` (the status it
/// leaves in the scratch map) and its two callbacks. The scratch map must hold the
/// message's first bytes at `S_RAW` and their count at `S_N`.
pub fn text(n: &Names) -> String {
    let mut s = format!(
        "map {}: percpu_array, key 4, value {SCRATCH_SIZE}, max 1\n\n",
        n.scratch
    );
    s.push_str(&walk_callback(n));
    s.push('\n');
    s.push_str(&copy_callback(n));
    s.push('\n');
    s.push_str(&name_func(n));
    s
}

/// Value numbering for the text.
pub(super) struct W {
    pub s: String,
    pub next: u32,
}

impl W {
    pub(super) fn val(&mut self, ty: &str, rhs: &str) -> String {
        let v = format!("v{}", self.next);
        self.next += 1;
        let _ = writeln!(self.s, "    {v}: {ty} = {rhs}");
        v
    }
    pub(super) fn line(&mut self, l: &str) {
        let _ = writeln!(self.s, "    {l}");
    }
    pub(super) fn block(&mut self, header: &str) {
        let _ = writeln!(self.s, "{header}:");
    }
    /// A zero-extended load of `bits` from `ptr + off`.
    pub(super) fn load(&mut self, bits: u8, ptr: &str, off: i64) -> String {
        let x = self.val(&format!("u{bits}"), &format!("load [{ptr}+{off}]"));
        if bits == 64 {
            x
        } else {
            self.val("u64", &format!("zext {x}"))
        }
    }
    /// The scratch value (the callbacks look it up on each call: MIR passes no pointer
    /// through the stack), or a jump to `miss`.
    pub(super) fn scratch(&mut self, map: &str, slot: &str, miss: &str, hit: &str) -> String {
        let k = self.val("stack", &format!("addr {slot}"));
        self.line(&format!("store.u32 [{k}+0], 0"));
        let m = self.val(&format!("map({map})"), &format!("mapref {map}"));
        let v = self.val(
            &format!("val?({map})"),
            &format!("call map_lookup_elem({m}, {k})"),
        );
        self.line(&format!("br eq {v}, 0, {miss}, {hit}"));
        v
    }
    /// `s + (idx & mask)`: a pointer into the scratch value the verifier can bound.
    pub(super) fn at(&mut self, map: &str, s: &str, idx: &str, mask: i64) -> String {
        let m = self.val("u64", &format!("and {idx}, {mask}"));
        self.val(&format!("val({map})"), &format!("ptradd {s}, {m}"))
    }
}

/// `walk(i, state) -> 0 | 1`: one step along the question name from `T_POS`: a label is
/// recorded (its start in `S_LABELS`), a pointer followed, the root ends the walk with
/// `T_RES` = 1; anything the kernel cannot read ends it with `T_RES` = 2.
fn walk_callback(n: &Names) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {}(u64, u64) -> i64 {{", n.walk);
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64, v1: u64)");
    let s = w.scratch(map, "ss0", "block19", "block1");
    w.block("block1");
    let pos = w.load(64, &s, T_POS as i64);
    let len = w.load(16, &s, i64::from(S_N));
    w.line(&format!("br uge {pos}, {len}, block20, block2"));
    w.block("block2");
    let p = w.at(map, &s, &pos, i64::from(RAW_MAX - 1));
    let c = w.load(8, &p, i64::from(S_RAW));
    w.line(&format!("br eq {c}, 0, block10, block3"));
    w.block("block3");
    let top = w.val("u64", &format!("and {c}, 192"));
    w.line(&format!("br eq {top}, 192, block12, block4"));
    w.block("block4");
    w.line(&format!("br ne {top}, 0, block20, block5"));
    // A label: its bytes and the byte after it lie inside what was read.
    w.block("block5");
    let end = w.val("u64", &format!("add {pos}, {c}"));
    let end = w.val("u64", &format!("add {end}, 1"));
    w.line(&format!("br uge {end}, {len}, block20, block6"));
    w.block("block6");
    let nl = w.load(64, &s, T_LABELS as i64);
    w.line(&format!("br uge {nl}, {}, block20, block7", LABELS_MAX - 1));
    w.block("block7");
    let nm = w.val("u64", &format!("and {nl}, {}", LABELS_MAX - 1));
    let idx = w.val("u64", &format!("shl {nm}, 1"));
    let q = w.val(&format!("val({map})"), &format!("ptradd {s}, {idx}"));
    w.line(&format!("store.u16 [{q}+{S_LABELS}], {pos}"));
    let nl2 = w.val("u64", &format!("add {nl}, 1"));
    w.line(&format!("store.u64 [{s}+{T_LABELS}], {nl2}"));
    let wire = w.load(64, &s, T_WIRE as i64);
    let wire = w.val("u64", &format!("add {wire}, {c}"));
    let wire = w.val("u64", &format!("add {wire}, 1"));
    w.line(&format!("store.u64 [{s}+{T_WIRE}], {wire}"));
    w.line(&format!(
        "br ugt {wire}, {}, block20, block8",
        NAME_WIRE_MAX - 1
    ));
    w.block("block8");
    w.line(&format!("store.u64 [{s}+{T_POS}], {end}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    // The root: the question's type follows it (or the first pointer).
    w.block("block10");
    let qend = w.load(64, &s, T_QEND as i64);
    w.line(&format!("br ne {qend}, 0, block11, block9"));
    w.block("block9");
    let after = w.val("u64", &format!("add {pos}, 1"));
    w.line(&format!("store.u64 [{s}+{T_QEND}], {after}"));
    w.line("jump block11");
    w.block("block11");
    w.line(&format!("store.u64 [{s}+{T_RES}], {ST_OK}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    // A pointer: two bytes, strictly backwards, past the header.
    w.block("block12");
    let p1 = w.val("u64", &format!("add {pos}, 1"));
    w.line(&format!("br uge {p1}, {len}, block20, block13"));
    w.block("block13");
    let pp = w.at(map, &s, &p1, i64::from(RAW_MAX - 1));
    let lo = w.load(8, &pp, i64::from(S_RAW));
    let hi = w.val("u64", &format!("and {c}, 63"));
    let hi = w.val("u64", &format!("shl {hi}, 8"));
    let target = w.val("u64", &format!("or {hi}, {lo}"));
    w.line(&format!("br uge {target}, {pos}, block20, block14"));
    w.block("block14");
    w.line(&format!("br ult {target}, 12, block20, block15"));
    w.block("block15");
    let qend = w.load(64, &s, T_QEND as i64);
    w.line(&format!("br ne {qend}, 0, block17, block16"));
    w.block("block16");
    let after = w.val("u64", &format!("add {pos}, 2"));
    w.line(&format!("store.u64 [{s}+{T_QEND}], {after}"));
    w.line("jump block17");
    w.block("block17");
    let hops = w.load(64, &s, T_HOPS as i64);
    let hops = w.val("u64", &format!("add {hops}, 1"));
    w.line(&format!("store.u64 [{s}+{T_HOPS}], {hops}"));
    w.line(&format!("br ugt {hops}, {HOPS_MAX}, block20, block18"));
    w.block("block18");
    w.line(&format!("store.u64 [{s}+{T_POS}], {target}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block("block19");
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.block("block20");
    w.line(&format!("store.u64 [{s}+{T_RES}], {ST_INCOMPLETE}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    w.s
}

/// `copy(i, state) -> 0 | 1`: label `labels - 1 - i` (right to left) appended to the key
/// at `T_POS`: its length with the top bit set, its bytes with A-Z in lower case.
fn copy_callback(n: &Names) -> String {
    let map = &n.scratch;
    let data = i64::from(S_KEY) + 4;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {}(u64, u64) -> i64 {{", n.copy);
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64, v1: u64)");
    let s = w.scratch(map, "ss0", "block6", "block1");
    w.block("block1");
    let nl = w.load(64, &s, T_LABELS as i64);
    w.line(&format!("br uge v0, {nl}, block6, block2"));
    w.block("block2");
    let k = w.val("u64", &format!("sub {nl}, v0"));
    let k = w.val("u64", &format!("sub {k}, 1"));
    let km = w.val("u64", &format!("and {k}, {}", LABELS_MAX - 1));
    let idx = w.val("u64", &format!("shl {km}, 1"));
    let q = w.val(&format!("val({map})"), &format!("ptradd {s}, {idx}"));
    let start = w.load(16, &q, i64::from(S_LABELS));
    let sp = w.at(map, &s, &start, i64::from(RAW_MAX - 1));
    let len = w.load(8, &sp, i64::from(S_RAW));
    let out = w.load(64, &s, T_POS as i64);
    let op = w.at(map, &s, &out, KEY_DATA as i64 - 1);
    let mark = w.val("u64", &format!("or {len}, {LABEL_MARK}"));
    w.line(&format!("store.u8 [{op}+{data}], {mark}"));
    let j0 = w.val("u64", "iconst 0");
    w.line(&format!("jump block3({j0})"));
    let j = format!("v{}", w.next);
    w.next += 1;
    w.block(&format!("block3({j}: u64)"));
    w.line(&format!("br uge {j}, {len}, block5, block4"));
    w.block("block4");
    let from = w.val("u64", &format!("add {start}, 1"));
    let from = w.val("u64", &format!("add {from}, {j}"));
    let fp = w.at(map, &s, &from, i64::from(RAW_MAX - 1));
    let c = w.load(8, &fp, i64::from(S_RAW));
    // A-Z (65..=90) + 32, without a branch: c + 191 carries into bit 8 when c >= 65,
    // c + 165 when c >= 91.
    let ge = w.val("u64", &format!("add {c}, 191"));
    let ge = w.val("u64", &format!("lshr {ge}, 8"));
    let gt = w.val("u64", &format!("add {c}, 165"));
    let gt = w.val("u64", &format!("lshr {gt}, 8"));
    let le = w.val("u64", &format!("xor {gt}, 1"));
    let up = w.val("u64", &format!("and {ge}, {le}"));
    let add = w.val("u64", &format!("shl {up}, 5"));
    let lc = w.val("u64", &format!("or {c}, {add}"));
    let to = w.val("u64", &format!("add {out}, 1"));
    let to = w.val("u64", &format!("add {to}, {j}"));
    let tp = w.at(map, &s, &to, KEY_DATA as i64 - 1);
    w.line(&format!("store.u8 [{tp}+{data}], {lc}"));
    let j2 = w.val("u64", &format!("add {j}, 1"));
    w.line(&format!(
        "br ult {j2}, {}, block3({j2}), block5",
        LABEL_MAX + 1
    ));
    w.block("block5");
    let next = w.val("u64", &format!("add {out}, {len}"));
    let next = w.val("u64", &format!("add {next}, 1"));
    w.line(&format!("store.u64 [{s}+{T_POS}], {next}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block("block6");
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    w.s
}

/// `name(_) -> status`: the header's fields, the walk, the question's type, the key;
/// the status is also left at `S_STATUS`.
/// Straight-line text: the walk along the wire name at `start` (a u64 value) of the
/// scratch value `s`; returns the walk's result (`ST_OK` when the name was read).
pub(super) fn walk(w: &mut W, n: &Names, s: &str, start: &str) -> String {
    for off in (S_STATE..S_STATE + T_BYTES).step_by(8) {
        w.line(&format!("store.u64 [{s}+{off}], 0"));
    }
    w.line(&format!("store.u64 [{s}+{T_POS}], {start}"));
    let st = w.val("u64", "iconst 0");
    let cb = w.val(&format!("fn({})", n.walk), &format!("funcref {}", n.walk));
    let calls = w.val("u32", &format!("iconst {WALK_CALLS}"));
    let fl = w.val("u64", "iconst 0");
    w.val("i64", &format!("call loop({calls}, {cb}, {st}, {fl})"));
    w.load(64, s, T_RES as i64)
}

/// Straight-line text after a walk: the key of the labels it found, at `S_KEY`.
pub(super) fn key(w: &mut W, n: &Names, s: &str) {
    let data = i64::from(S_KEY) + 4;
    w.line(&format!("store.u64 [{s}+{T_POS}], 0"));
    let st = w.val("u64", "iconst 0");
    let cb = w.val(&format!("fn({})", n.copy), &format!("funcref {}", n.copy));
    let calls = w.val("u32", &format!("iconst {LABELS_MAX}"));
    let fl = w.val("u64", "iconst 0");
    w.val("i64", &format!("call loop({calls}, {cb}, {st}, {fl})"));
    let out = w.load(64, s, T_POS as i64);
    let op = w.at(&n.scratch, s, &out, KEY_DATA as i64 - 1);
    w.line(&format!("store.u8 [{op}+{data}], 0"));
    let bytes = w.val("u64", &format!("add {out}, 1"));
    let bits = w.val("u64", &format!("shl {bytes}, 3"));
    w.line(&format!("store.u32 [{s}+{S_KEY}], {bits}"));
}

fn name_func(n: &Names) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 1,
    };
    let _ = writeln!(w.s, "func {}(u64) -> u64 {{", n.func);
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64)");
    let s = w.scratch(map, "ss0", "block6", "block1");
    w.block("block1");
    // Exactly one question (resolvers answer others with FORMERR).
    let qd = w.val("u16", &format!("load [{s}+{}]", S_RAW + 4));
    let qd = w.val("u16", &format!("bswap {qd}"));
    let qd = w.val("u64", &format!("zext {qd}"));
    w.line(&format!("br ne {qd}, 1, block5, block2"));
    w.block("block2");
    let flags = w.load(8, &s, i64::from(S_RAW + 2));
    let qr = w.val("u64", &format!("lshr {flags}, 7"));
    w.line(&format!("store.u8 [{s}+{S_QR}], {qr}"));
    let rc = w.load(8, &s, i64::from(S_RAW + 3));
    let rc = w.val("u64", &format!("and {rc}, 15"));
    w.line(&format!("store.u8 [{s}+{S_RCODE}], {rc}"));
    let start = w.val("u64", "iconst 12");
    let res = walk(&mut w, n, &s, &start);
    w.line(&format!("br ne {res}, {ST_OK}, block5, block3"));
    // The type after the name: inside what was read.
    w.block("block3");
    let qend = w.load(64, &s, T_QEND as i64);
    let qlast = w.val("u64", &format!("add {qend}, 4"));
    let len = w.load(16, &s, i64::from(S_N));
    w.line(&format!("br ugt {qlast}, {len}, block5, block4"));
    w.block("block4");
    let tp = w.at(map, &s, &qend, i64::from(RAW_MAX - 1));
    let hi = w.load(8, &tp, i64::from(S_RAW));
    let q1 = w.val("u64", &format!("add {qend}, 1"));
    let tp1 = w.at(map, &s, &q1, i64::from(RAW_MAX - 1));
    let lo = w.load(8, &tp1, i64::from(S_RAW));
    let hi = w.val("u64", &format!("shl {hi}, 8"));
    let qt = w.val("u64", &format!("or {hi}, {lo}"));
    w.line(&format!("store.u16 [{s}+{S_QTYPE}], {qt}"));
    key(&mut w, n, &s);
    w.line(&format!("store.u8 [{s}+{S_STATUS}], {ST_OK}"));
    let ok = w.val("u64", &format!("iconst {ST_OK}"));
    w.line(&format!("return {ok}"));
    w.block("block5");
    w.line(&format!("store.u8 [{s}+{S_STATUS}], {ST_INCOMPLETE}"));
    let bad = w.val("u64", &format!("iconst {ST_INCOMPLETE}"));
    w.line(&format!("return {bad}"));
    w.block("block6");
    let none = w.val("u64", &format!("iconst {ST_NONE}"));
    w.line(&format!("return {none}"));
    w.s.push_str("}\n");
    w.s
}

#[cfg(test)]
mod tests;
