//! TLS (issue 13 §3): the server name (`tls.sni`) and the version a client offers, read
//! from the ClientHello in the kernel.
//!
//! The stage (`ir::to_mir::dns`, shared with DNS) copies the first bytes of a TCP segment's
//! payload into the scratch map; `{filter}_tls_hello` ([`hello_func`]) checks that they
//! start a handshake record holding a ClientHello, skips the session id, cipher suites and
//! compression methods, and walks the extensions ([`exts_callback`]): `server_name` (0)
//! and `supported_versions` (43). The host name is then rewritten in place into DNS wire
//! form ([`conv_callback`]: each `.` becomes the length of the label after it), so the
//! DNS stage's walk and key serve it unchanged: `tls.sni` is matched exactly like
//! `dns.qname`, one LPM-trie lookup per hello, with the same `*.suffix` patterns.

use super::dns::{self, Names, RAW_MAX, ST_INCOMPLETE, ST_NONE, ST_OK, S_N, S_RAW, S_TLS, W};
use serde::Serialize;
use std::fmt::Write as _;

/// u8: the TLS stage's status (`dns::ST_*`): a ClientHello was read.
pub const S_TLS_STATUS: i16 = 1;
// The TLS words in the scratch value.
/// u64: the next extension's offset in `S_RAW`.
const X_EXT: usize = S_TLS;
/// u64: the end of the extensions.
const X_END: usize = S_TLS + 8;
/// u64: where the host name starts (0: no server_name extension).
const X_SNI: usize = S_TLS + 16;
/// u64: its length.
const X_SNI_LEN: usize = S_TLS + 24;
/// u16 (in a u64): the version the client offers (`tls.version`).
pub const X_VERSION: i16 = (S_TLS + 32) as i16;
/// u64: the conversion's cursor, and the length of the label it is in.
const X_CONV: usize = S_TLS + 40;
const X_COUNT: usize = S_TLS + 48;
/// u8: 1 when the hello named a server and its key is at `S_KEY`.
pub const X_HAS_NAME: i16 = (S_TLS + 56) as i16;
/// u64: the extension walk's and the conversion's result.
const X_RES: usize = S_TLS + 64;
// ALPN (only in a filter that tests `tls.alpn`).
/// u64: the next protocol's offset in `S_RAW`.
const X_ALPN_POS: usize = S_TLS + 72;
/// u64: the end of the protocol list.
const X_ALPN_END: usize = S_TLS + 80;
/// u64: 1 once an ALPN extension was found.
const X_ALPN_FOUND: usize = S_TLS + 88;
/// u32: the bits of the `tls.alpn` tests some offered protocol matches.
pub const X_ALPN_BITS: i16 = (S_TLS + 96) as i16;
/// [`ALPN_KEY`] bytes: the key of one protocol (its length, its bytes, zeros).
const X_ALPN_KEY: usize = S_TLS + 104;
/// The TLS words' size (8 spare bytes after the key: the copy's masked index reaches one
/// past it).
pub const TLS_BYTES: usize = 104 + ALPN_KEY + 8;

/// The ALPN map's key: the protocol's length, then its bytes, zero-padded.
pub const ALPN_KEY: usize = 32;
/// The longest protocol name a `tls.alpn` pattern may be (a longer offered one matches
/// none).
pub const ALPN_NAME_MAX: usize = ALPN_KEY - 1;
/// Protocols of one ALPN list looked at, at most: a longer list is incomplete.
pub const ALPN_MAX: i64 = 16;
/// Distinct `tls.alpn` tests in one file: each is a bit of `X_ALPN_BITS`.
pub const ALPN_TESTS_MAX: usize = 32;
/// The file's ALPN map: protocol key -> the bits of the tests naming it.
pub const ALPN_MAP: &str = "tls_alpn";

/// Extensions looked at, at most.
const EXTS_MAX: i64 = 64;
/// `supported_versions` entries looked at, at most.
const VERSIONS_MAX: i64 = 8;
/// The longest host name (a DNS name of 255 bytes on the wire is 253 as text).
pub const NAME_MAX: i64 = 253;

/// The integer fields of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Field {
    Version,
}

/// `tls.version` values by name.
pub fn version(name: &str) -> Option<u64> {
    Some(match name.to_ascii_uppercase().as_str() {
        "SSL3" => 0x0300,
        "TLS10" => 0x0301,
        "TLS11" => 0x0302,
        "TLS12" => 0x0303,
        "TLS13" => 0x0304,
        _ => return None,
    })
}

/// Every TLS field, for errors.
pub const FIELDS: &[&str] = &["tls", "tls.alpn", "tls.sni", "tls.version"];

/// The protocols of one `tls.alpn` test (`== "h2"`, `in { "h2", "http/1.1" }`): it holds
/// when the client offers one of them. Test `i` of a file is bit `i` of `X_ALPN_BITS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlpnSet {
    pub protocols: Vec<Vec<u8>>,
}

/// The key of one protocol name in the ALPN map (`None` when longer than
/// [`ALPN_NAME_MAX`]: no pattern can be).
pub fn alpn_key(name: &[u8]) -> Option<Vec<u8>> {
    if name.len() > ALPN_NAME_MAX {
        return None;
    }
    let mut k = vec![name.len() as u8];
    k.extend_from_slice(name);
    k.resize(ALPN_KEY, 0);
    Some(k)
}

/// The ALPN map's entries: each protocol of some test, with the bits of every test that
/// names it (one lookup per offered protocol answers all tests).
pub fn alpn_entries(sets: &[AlpnSet]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut own: std::collections::BTreeMap<Vec<u8>, u32> = Default::default();
    for (i, set) in sets.iter().enumerate().take(ALPN_TESTS_MAX) {
        for p in &set.protocols {
            if let Some(k) = alpn_key(p) {
                *own.entry(k).or_default() |= 1 << i;
            }
        }
    }
    own.into_iter()
        .map(|(k, bits)| (k, bits.to_le_bytes().to_vec()))
        .collect()
}

/// What the kernel reads from a TCP segment's payload (the reference the random tests
/// check the stage against; it follows the stage step by step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not a ClientHello: the rules see no TLS.
    None,
    /// A ClientHello pol cannot read: the filter's incomplete rule decides.
    Incomplete,
    Read {
        /// `tls.version`: the largest of the legacy version and the non-GREASE
        /// `supported_versions` entries.
        version: u16,
        /// The host name's labels, as sent (`tls.sni`).
        sni: Option<Vec<Vec<u8>>>,
        /// The offered protocols (`tls.alpn`), read only when `alpn`.
        alpn: Vec<Vec<u8>>,
    },
}

/// The reference reading of `payload` by a filter's TLS stage (`alpn`: the filter tests
/// `tls.alpn`).
pub fn hello(payload: &[u8], alpn: bool) -> Hello {
    if payload.len() < 6 {
        return Hello::None;
    }
    let raw = &payload[..payload.len().min(RAW_MAX as usize)];
    let n = raw.len();
    let at = |i: usize| raw.get(i & (RAW_MAX as usize - 1)).copied().unwrap_or(0);
    let be16 = |i: usize| u16::from(at(i)) << 8 | u16::from(at(i + 1));
    if raw[0] != 22 || raw[1] != 3 || raw[5] != 1 {
        return Hello::None;
    }
    if n < 44 {
        return Hello::Incomplete;
    }
    let mut version = be16(9);
    let mut p = usize::from(raw[43]) + 44;
    if p + 2 > n {
        return Hello::Incomplete;
    }
    p += 2 + usize::from(be16(p));
    if p + 1 > n {
        return Hello::Incomplete;
    }
    p += 1 + usize::from(at(p));
    if p + 2 > n {
        return Hello::Read {
            version,
            sni: None,
            alpn: Vec::new(),
        };
    }
    let end = p + 2 + usize::from(be16(p));
    let mut ext = p + 2;
    let mut sni: Option<(usize, usize)> = None;
    let mut list: Option<(usize, usize)> = None;
    for _ in 0..EXTS_MAX {
        if ext >= end {
            break;
        }
        let p = ext;
        if p + 4 > n {
            // Cut short: complete only when what the filter reads was found.
            if sni.is_some() && (!alpn || list.is_some()) {
                break;
            }
            return Hello::Incomplete;
        }
        let ty = be16(p);
        let next = p + 4 + usize::from(be16(p + 2));
        ext = next;
        match ty {
            0 => {
                let nend = p + 9;
                if nend > n {
                    if sni.is_some() && (!alpn || list.is_some()) {
                        break;
                    }
                    return Hello::Incomplete;
                }
                if at(p + 6) != 0 {
                    continue;
                }
                let nl = usize::from(be16(p + 7));
                if nend + nl >= n || nl == 0 || nl > NAME_MAX as usize {
                    if sni.is_some() && (!alpn || list.is_some()) {
                        break;
                    }
                    return Hello::Incomplete;
                }
                sni = Some((nend, nl));
            }
            43 => {
                let vend = p + 5;
                if vend > n {
                    continue;
                }
                let vl = usize::from(at(p + 4));
                for j in 0..VERSIONS_MAX as usize {
                    let off = 2 * j;
                    if off + 2 > vl || vend + off + 2 > n {
                        break;
                    }
                    let v = be16(vend + off);
                    if v & 0x0f0f != 0x0a0a && v > version {
                        version = v;
                    }
                }
            }
            16 if alpn => {
                if next > n {
                    if sni.is_some() && list.is_some() {
                        break;
                    }
                    return Hello::Incomplete;
                }
                if p + 6 > next || p + 6 + usize::from(be16(p + 4)) != next {
                    return Hello::Incomplete;
                }
                list = Some((p + 6, next));
            }
            _ => {}
        }
    }
    let mut protocols = Vec::new();
    if let Some((mut pos, end)) = list {
        for _ in 0..ALPN_MAX {
            if pos >= end {
                break;
            }
            let l = usize::from(at(pos));
            if l == 0 || pos + 1 + l > end {
                return Hello::Incomplete;
            }
            protocols.push(raw[pos + 1..pos + 1 + l].to_vec());
            pos += 1 + l;
        }
        if pos < end {
            return Hello::Incomplete;
        }
    }
    let sni = match sni {
        None => None,
        Some((start, len)) => {
            let name = &raw[start..start + len];
            let labels: Vec<Vec<u8>> = name.split(|&c| c == b'.').map(<[u8]>::to_vec).collect();
            if labels
                .iter()
                .any(|l| l.is_empty() || l.len() > dns::LABEL_MAX)
                || labels.len() > dns::LABELS_MAX as usize - 1
            {
                return Hello::Incomplete;
            }
            Some(labels)
        }
    };
    Hello::Read {
        version,
        sni,
        alpn: protocols,
    }
}

/// Names of the TLS functions of a filter.
pub fn hello_name(filter: &str) -> String {
    format!("{filter}_tls_hello")
}

fn exts_name(filter: &str) -> String {
    format!("{filter}_tls_exts")
}

fn conv_name(filter: &str) -> String {
    format!("{filter}_tls_conv")
}

fn alpn_name(filter: &str) -> String {
    format!("{filter}_tls_alpn")
}

/// The TLS functions as MIR text, to go with `dns::text(n)` (whose callbacks they use).
/// `alpn`: the filter tests `tls.alpn`, and the file's ALPN map has this many entries.
pub fn text(filter: &str, n: &Names, alpn: Option<u32>) -> String {
    let mut s = String::new();
    if let Some(max) = alpn {
        let _ = writeln!(
            s,
            "map {ALPN_MAP}: hash, key {ALPN_KEY}, value 4, max {max}\n"
        );
        s.push_str(&alpn_callback(filter, n));
        s.push('\n');
    }
    s.push_str(&exts_callback(filter, n, alpn.is_some()));
    s.push('\n');
    s.push_str(&conv_callback(filter, n));
    s.push('\n');
    s.push_str(&hello_func(filter, n, alpn.is_some()));
    s
}

/// `alpn(i, _) -> 0 | 1`: one protocol of the ALPN list at `X_ALPN_POS`, looked up in the
/// ALPN map; the bits of the tests it matches are added to `X_ALPN_BITS`. An empty name
/// or one past the list makes the hello incomplete.
fn alpn_callback(filter: &str, n: &Names) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {}(u64, u64) -> i64 {{", alpn_name(filter));
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64, v1: u64)");
    let s = w.scratch(map, "ss0", "block9", "block1");
    w.block("block1");
    let pos = w.load(64, &s, X_ALPN_POS as i64);
    let end = w.load(64, &s, X_ALPN_END as i64);
    w.line(&format!("br uge {pos}, {end}, block9, block2"));
    w.block("block2");
    let p = w.at(map, &s, &pos, i64::from(RAW_MAX - 1));
    let l = w.load(8, &p, i64::from(S_RAW));
    w.line(&format!("br eq {l}, 0, block8, block3"));
    w.block("block3");
    let e = w.val("u64", &format!("add {pos}, 1"));
    let e = w.val("u64", &format!("add {e}, {l}"));
    w.line(&format!("br ugt {e}, {end}, block8, block4"));
    w.block("block4");
    w.line(&format!("store.u64 [{s}+{X_ALPN_POS}], {e}"));
    // A name longer than any pattern matches none.
    w.line(&format!("br ugt {l}, {ALPN_NAME_MAX}, block7, block5"));
    w.block("block5");
    for off in (0..ALPN_KEY).step_by(8) {
        w.line(&format!("store.u64 [{s}+{}], 0", X_ALPN_KEY + off));
    }
    w.line(&format!("store.u8 [{s}+{X_ALPN_KEY}], {l}"));
    let j0 = w.val("u64", "iconst 0");
    w.line(&format!("jump block10({j0})"));
    let j = format!("v{}", w.next);
    w.next += 1;
    w.block(&format!("block10({j}: u64)"));
    w.line(&format!("br uge {j}, {l}, block11, block12"));
    w.block("block12");
    let from = w.val("u64", &format!("add {pos}, 1"));
    let from = w.val("u64", &format!("add {from}, {j}"));
    let fp = w.at(map, &s, &from, i64::from(RAW_MAX - 1));
    let c = w.load(8, &fp, i64::from(S_RAW));
    let tp = w.at(map, &s, &j, ALPN_KEY as i64 - 1);
    w.line(&format!("store.u8 [{tp}+{}], {c}", X_ALPN_KEY + 1));
    let j2 = w.val("u64", &format!("add {j}, 1"));
    w.line(&format!(
        "br ult {j2}, {ALPN_NAME_MAX}, block10({j2}), block11"
    ));
    w.block("block11");
    let m = w.val(&format!("map({ALPN_MAP})"), &format!("mapref {ALPN_MAP}"));
    let kp = w.val(&format!("val({map})"), &format!("ptradd {s}, {X_ALPN_KEY}"));
    let v = w.val(
        &format!("val?({ALPN_MAP})"),
        &format!("call map_lookup_elem({m}, {kp})"),
    );
    w.line(&format!("br eq {v}, 0, block7, block13"));
    w.block("block13");
    let bits = w.val("u32", &format!("load [{v}+0]"));
    let old = w.val("u32", &format!("load [{s}+{X_ALPN_BITS}]"));
    let or = w.val("u32", &format!("or {old}, {bits}"));
    w.line(&format!("store.u32 [{s}+{X_ALPN_BITS}], {or}"));
    w.line("jump block7");
    w.block("block7");
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block("block8");
    w.line(&format!("store.u64 [{s}+{X_RES}], {ST_INCOMPLETE}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.block("block9");
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    renumber(&w.s)
}

/// `be16` at `raw[idx]` (idx a u64 value), masked into the window.
fn be16(w: &mut W, map: &str, s: &str, idx: &str) -> String {
    let p = w.at(map, s, idx, i64::from(RAW_MAX - 1));
    let hi = w.load(8, &p, i64::from(S_RAW));
    let i1 = w.val("u64", &format!("add {idx}, 1"));
    let p1 = w.at(map, s, &i1, i64::from(RAW_MAX - 1));
    let lo = w.load(8, &p1, i64::from(S_RAW));
    let hi = w.val("u64", &format!("shl {hi}, 8"));
    w.val("u64", &format!("or {hi}, {lo}"))
}

/// `exts(i, _) -> 0 | 1`: one extension at `X_EXT`; the host name's place and the highest
/// offered version are kept. An extension cut short before the host name was found makes
/// the hello incomplete.
fn exts_callback(filter: &str, n: &Names, alpn: bool) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {}(u64, u64) -> i64 {{", exts_name(filter));
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64, v1: u64)");
    let s = w.scratch(map, "ss0", "block13", "block1");
    w.block("block1");
    let p = w.load(64, &s, X_EXT as i64);
    let end = w.load(64, &s, X_END as i64);
    w.line(&format!("br uge {p}, {end}, block13, block2"));
    w.block("block2");
    let len = w.load(16, &s, i64::from(S_N));
    let hdr = w.val("u64", &format!("add {p}, 4"));
    w.line(&format!("br ugt {hdr}, {len}, block14, block3"));
    w.block("block3");
    let ty = be16(&mut w, map, &s, &p);
    let p2 = w.val("u64", &format!("add {p}, 2"));
    let elen = be16(&mut w, map, &s, &p2);
    let next = w.val("u64", &format!("add {hdr}, {elen}"));
    w.line(&format!("store.u64 [{s}+{X_EXT}], {next}"));
    w.line(&format!("br eq {ty}, 0, block4, block7"));
    // server_name: list length (2), name type (1, 0 = host name), name length (2), name.
    w.block("block4");
    let nend = w.val("u64", &format!("add {p}, 9"));
    w.line(&format!("br ugt {nend}, {len}, block14, block5"));
    w.block("block5");
    let t6 = w.val("u64", &format!("add {p}, 6"));
    let tp = w.at(map, &s, &t6, i64::from(RAW_MAX - 1));
    let nt = w.load(8, &tp, i64::from(S_RAW));
    w.line(&format!("br ne {nt}, 0, block12, block6"));
    w.block("block6");
    let p7 = w.val("u64", &format!("add {p}, 7"));
    let nl = be16(&mut w, map, &s, &p7);
    let last = w.val("u64", &format!("add {nend}, {nl}"));
    // The name and the byte after it (its terminator once converted) inside the window.
    w.line(&format!("br uge {last}, {len}, block14, block15"));
    w.block("block15");
    w.line(&format!("br eq {nl}, 0, block14, block16"));
    w.block("block16");
    w.line(&format!("br ugt {nl}, {NAME_MAX}, block14, block17"));
    w.block("block17");
    w.line(&format!("store.u64 [{s}+{X_SNI}], {nend}"));
    w.line(&format!("store.u64 [{s}+{X_SNI_LEN}], {nl}"));
    w.line("jump block12");
    w.block("block7");
    if alpn {
        w.line(&format!("br eq {ty}, 16, block40, block41"));
        // ALPN: the list length (2), then the protocols; the whole extension inside the
        // window, its list exactly filling it.
        w.block("block40");
        w.line(&format!("br ugt {next}, {len}, block14, block42"));
        w.block("block42");
        let p6 = w.val("u64", &format!("add {p}, 6"));
        w.line(&format!("br ugt {p6}, {next}, block43, block44"));
        w.block("block44");
        let p4 = w.val("u64", &format!("add {p}, 4"));
        let ll = be16(&mut w, map, &s, &p4);
        let le = w.val("u64", &format!("add {p6}, {ll}"));
        w.line(&format!("br ne {le}, {next}, block43, block45"));
        w.block("block45");
        w.line(&format!("store.u64 [{s}+{X_ALPN_POS}], {p6}"));
        w.line(&format!("store.u64 [{s}+{X_ALPN_END}], {next}"));
        w.line(&format!("store.u64 [{s}+{X_ALPN_FOUND}], 1"));
        w.line("jump block12");
        w.block("block43");
        w.line(&format!("store.u64 [{s}+{X_RES}], {ST_INCOMPLETE}"));
        let one = w.val("i64", "iconst 1");
        w.line(&format!("return {one}"));
        w.block("block41");
    }
    w.line(&format!("br ne {ty}, 43, block12, block8"));
    // supported_versions: list length (1), then versions; GREASE values (0x?a?a) skipped.
    w.block("block8");
    let vend = w.val("u64", &format!("add {p}, 5"));
    w.line(&format!("br ugt {vend}, {len}, block12, block9"));
    w.block("block9");
    let p4 = w.val("u64", &format!("add {p}, 4"));
    let lp = w.at(map, &s, &p4, i64::from(RAW_MAX - 1));
    let vl = w.load(8, &lp, i64::from(S_RAW));
    let j0 = w.val("u64", "iconst 0");
    w.line(&format!("jump block10({j0})"));
    let j = format!("v{}", w.next);
    w.next += 1;
    w.block(&format!("block10({j}: u64)"));
    let off = w.val("u64", &format!("shl {j}, 1"));
    let off2 = w.val("u64", &format!("add {off}, 2"));
    w.line(&format!("br ugt {off2}, {vl}, block12, block18"));
    w.block("block18");
    let at = w.val("u64", &format!("add {vend}, {off}"));
    let at2 = w.val("u64", &format!("add {at}, 2"));
    w.line(&format!("br ugt {at2}, {len}, block12, block19"));
    w.block("block19");
    let v = be16(&mut w, map, &s, &at);
    let g = w.val("u64", &format!("and {v}, 3855"));
    w.line(&format!("br eq {g}, 2570, block11, block20"));
    w.block("block20");
    let best = w.load(16, &s, i64::from(X_VERSION));
    w.line(&format!("br ule {v}, {best}, block11, block21"));
    w.block("block21");
    w.line(&format!("store.u16 [{s}+{X_VERSION}], {v}"));
    w.line("jump block11");
    w.block("block11");
    let j2 = w.val("u64", &format!("add {j}, 1"));
    w.line(&format!(
        "br ult {j2}, {VERSIONS_MAX}, block10({j2}), block12"
    ));
    w.block("block12");
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block("block13");
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    // Cut short: incomplete unless the host name (and the ALPN list, when the filter
    // tests it) was already found.
    w.block("block14");
    let sni = w.load(64, &s, X_SNI as i64);
    if alpn {
        w.line(&format!("br ne {sni}, 0, block46, block22"));
        w.block("block46");
        let found = w.load(64, &s, X_ALPN_FOUND as i64);
        w.line(&format!("br ne {found}, 0, block13, block22"));
    } else {
        w.line(&format!("br ne {sni}, 0, block13, block22"));
    }
    w.block("block22");
    w.line(&format!("store.u64 [{s}+{X_RES}], {ST_INCOMPLETE}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    renumber(&w.s)
}

/// `conv(i, _) -> 0 | 1`: one byte of the host name, right to left from `X_CONV`: a `.`
/// becomes the length of the label after it, and the byte before the name (the low byte
/// of its length field, in this copy) the length of the first label. An empty label or
/// one over 63 bytes makes the hello incomplete (`a..b` must not read as `a`).
fn conv_callback(filter: &str, n: &Names) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {}(u64, u64) -> i64 {{", conv_name(filter));
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64, v1: u64)");
    let s = w.scratch(map, "ss0", "block6", "block1");
    w.block("block1");
    let pos = w.load(64, &s, X_CONV as i64);
    let start = w.load(64, &s, X_SNI as i64);
    let before = w.val("u64", &format!("sub {start}, 1"));
    let cnt = w.load(64, &s, X_COUNT as i64);
    let p = w.at(map, &s, &pos, i64::from(RAW_MAX - 1));
    w.line(&format!("br eq {pos}, {before}, block2, block3"));
    w.block("block2");
    w.line(&format!("br eq {cnt}, 0, block7, block8"));
    w.block("block8");
    w.line(&format!("br ugt {cnt}, {}, block7, block9", dns::LABEL_MAX));
    w.block("block9");
    w.line(&format!("store.u8 [{p}+{S_RAW}], {cnt}"));
    w.line(&format!("store.u64 [{s}+{X_RES}], {ST_OK}"));
    w.line("jump block6");
    w.block("block3");
    let c = w.load(8, &p, i64::from(S_RAW));
    w.line(&format!("br eq {c}, 46, block4, block5"));
    w.block("block4");
    w.line(&format!("br eq {cnt}, 0, block7, block10"));
    w.block("block10");
    w.line(&format!(
        "br ugt {cnt}, {}, block7, block11",
        dns::LABEL_MAX
    ));
    w.block("block11");
    w.line(&format!("store.u8 [{p}+{S_RAW}], {cnt}"));
    w.line(&format!("store.u64 [{s}+{X_COUNT}], 0"));
    w.line("jump block12");
    w.block("block5");
    let c1 = w.val("u64", &format!("add {cnt}, 1"));
    w.line(&format!("store.u64 [{s}+{X_COUNT}], {c1}"));
    w.line("jump block12");
    w.block("block12");
    let prev = w.val("u64", &format!("sub {pos}, 1"));
    w.line(&format!("store.u64 [{s}+{X_CONV}], {prev}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block("block6");
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.block("block7");
    w.line(&format!("store.u64 [{s}+{X_RES}], {ST_INCOMPLETE}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    renumber(&w.s)
}

/// `hello(_) -> status`: `ST_NONE` when the bytes are not a ClientHello, `ST_INCOMPLETE`
/// when one cannot be read, else `ST_OK` with the version at `X_VERSION` and, when the
/// client named a server, its key at `S_KEY` and `X_HAS_NAME` set.
fn hello_func(filter: &str, n: &Names, alpn: bool) -> String {
    let map = &n.scratch;
    let mut w = W {
        s: String::new(),
        next: 1,
    };
    let mask = i64::from(RAW_MAX - 1);
    let _ = writeln!(w.s, "func {}(u64) -> u64 {{", hello_name(filter));
    w.line("ss0 = slot 4, align 4");
    w.block("block0(v0: u64)");
    let s = w.scratch(map, "ss0", "block32", "block1");
    // A handshake record (22) of TLS 3.x holding a ClientHello (1).
    w.block("block1");
    w.line(&format!("store.u8 [{s}+{X_HAS_NAME}], 0"));
    w.line(&format!("store.u64 [{s}+{}], 0", X_VERSION));
    w.line(&format!("store.u64 [{s}+{X_ALPN_FOUND}], 0"));
    w.line(&format!("store.u32 [{s}+{X_ALPN_BITS}], 0"));
    let b0 = w.load(8, &s, i64::from(S_RAW));
    w.line(&format!("br ne {b0}, 22, block30, block2"));
    w.block("block2");
    let b1 = w.load(8, &s, i64::from(S_RAW + 1));
    w.line(&format!("br ne {b1}, 3, block30, block3"));
    w.block("block3");
    let b5 = w.load(8, &s, i64::from(S_RAW + 5));
    w.line(&format!("br ne {b5}, 1, block30, block4"));
    // Record (5), handshake header (4), version (2), random (32), session id length.
    w.block("block4");
    let len = w.load(16, &s, i64::from(S_N));
    w.line(&format!("br ult {len}, 44, block31, block5"));
    w.block("block5");
    let v9 = w.val("u64", "iconst 9");
    let legacy = be16(&mut w, map, &s, &v9);
    w.line(&format!("store.u16 [{s}+{X_VERSION}], {legacy}"));
    let sid = w.load(8, &s, i64::from(S_RAW + 43));
    let p = w.val("u64", &format!("add {sid}, 44"));
    let p2 = w.val("u64", &format!("add {p}, 2"));
    w.line(&format!("br ugt {p2}, {len}, block31, block6"));
    w.block("block6");
    let cs = be16(&mut w, map, &s, &p);
    let p = w.val("u64", &format!("add {p2}, {cs}"));
    let p1 = w.val("u64", &format!("add {p}, 1"));
    w.line(&format!("br ugt {p1}, {len}, block31, block7"));
    w.block("block7");
    let cp = w.at(map, &s, &p, mask);
    let cm = w.load(8, &cp, i64::from(S_RAW));
    let p = w.val("u64", &format!("add {p1}, {cm}"));
    let p2 = w.val("u64", &format!("add {p}, 2"));
    // No extensions at all: a hello without a name.
    w.line(&format!("br ugt {p2}, {len}, block20, block8"));
    w.block("block8");
    let el = be16(&mut w, map, &s, &p);
    let end = w.val("u64", &format!("add {p2}, {el}"));
    w.line(&format!("store.u64 [{s}+{X_EXT}], {p2}"));
    w.line(&format!("store.u64 [{s}+{X_END}], {end}"));
    w.line(&format!("store.u64 [{s}+{X_SNI}], 0"));
    w.line(&format!("store.u64 [{s}+{X_RES}], 0"));
    let st = w.val("u64", "iconst 0");
    let cb = w.val(
        &format!("fn({})", exts_name(filter)),
        &format!("funcref {}", exts_name(filter)),
    );
    let calls = w.val("u32", &format!("iconst {EXTS_MAX}"));
    let fl = w.val("u64", "iconst 0");
    w.val("i64", &format!("call loop({calls}, {cb}, {st}, {fl})"));
    let res = w.load(64, &s, X_RES as i64);
    w.line(&format!("br eq {res}, {ST_INCOMPLETE}, block31, block9"));
    w.block("block9");
    if alpn {
        // Each offered protocol, one lookup each; a list longer than ALPN_MAX is
        // incomplete.
        let found = w.load(64, &s, X_ALPN_FOUND as i64);
        w.line(&format!("br eq {found}, 0, block41, block40"));
        w.block("block40");
        let cb = w.val(
            &format!("fn({})", alpn_name(filter)),
            &format!("funcref {}", alpn_name(filter)),
        );
        let calls = w.val("u32", &format!("iconst {ALPN_MAX}"));
        w.val("i64", &format!("call loop({calls}, {cb}, {st}, {fl})"));
        let res = w.load(64, &s, X_RES as i64);
        w.line(&format!("br eq {res}, {ST_INCOMPLETE}, block31, block42"));
        w.block("block42");
        let pos = w.load(64, &s, X_ALPN_POS as i64);
        let end = w.load(64, &s, X_ALPN_END as i64);
        w.line(&format!("br ult {pos}, {end}, block31, block41"));
        w.block("block41");
    }
    let sni = w.load(64, &s, X_SNI as i64);
    w.line(&format!("br eq {sni}, 0, block20, block10"));
    // The host name into wire form, in place, right to left.
    w.block("block10");
    let nl = w.load(64, &s, X_SNI_LEN as i64);
    let after = w.val("u64", &format!("add {sni}, {nl}"));
    let lastc = w.val("u64", &format!("sub {after}, 1"));
    w.line(&format!("store.u64 [{s}+{X_CONV}], {lastc}"));
    w.line(&format!("store.u64 [{s}+{X_COUNT}], 0"));
    w.line(&format!("store.u64 [{s}+{X_RES}], 0"));
    let cb = w.val(
        &format!("fn({})", conv_name(filter)),
        &format!("funcref {}", conv_name(filter)),
    );
    let calls = w.val("u32", &format!("iconst {}", NAME_MAX + 1));
    w.val("i64", &format!("call loop({calls}, {cb}, {st}, {fl})"));
    let res = w.load(64, &s, X_RES as i64);
    w.line(&format!("br ne {res}, {ST_OK}, block31, block11"));
    w.block("block11");
    let tp = w.at(map, &s, &after, mask);
    w.line(&format!("store.u8 [{tp}+{S_RAW}], 0"));
    let n1 = w.val("u64", &format!("add {after}, 1"));
    w.line(&format!("store.u16 [{s}+{S_N}], {n1}"));
    let start = w.val("u64", &format!("sub {sni}, 1"));
    let res = dns::walk(&mut w, n, &s, &start);
    w.line(&format!("br ne {res}, {ST_OK}, block31, block12"));
    w.block("block12");
    dns::key(&mut w, n, &s);
    w.line(&format!("store.u8 [{s}+{X_HAS_NAME}], 1"));
    w.line("jump block20");
    w.block("block20");
    w.line(&format!("store.u8 [{s}+{S_TLS_STATUS}], {ST_OK}"));
    let ok = w.val("u64", &format!("iconst {ST_OK}"));
    w.line(&format!("return {ok}"));
    w.block("block30");
    w.line(&format!("store.u8 [{s}+{S_TLS_STATUS}], {ST_NONE}"));
    let none = w.val("u64", &format!("iconst {ST_NONE}"));
    w.line(&format!("return {none}"));
    w.block("block31");
    w.line(&format!("store.u8 [{s}+{S_TLS_STATUS}], {ST_INCOMPLETE}"));
    let bad = w.val("u64", &format!("iconst {ST_INCOMPLETE}"));
    w.line(&format!("return {bad}"));
    w.block("block32");
    let none = w.val("u64", &format!("iconst {ST_NONE}"));
    w.line(&format!("return {none}"));
    w.s.push_str("}\n");
    renumber(&w.s)
}

/// MIR text numbers blocks densely: renames `blockN` in order of first definition.
fn renumber(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("block") {
            let id: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            order.push(id);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("block") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 5..];
        let id: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        match order.iter().position(|o| *o == id) {
            Some(k) if !id.is_empty() => {
                let _ = write!(out, "block{k}");
                rest = &after[id.len()..];
            }
            _ => {
                out.push_str("block");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
