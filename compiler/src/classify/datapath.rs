//! The classifier's data path as MIR: the search [`super::maps::Maps::lookup`] mirrors.
//!
//! `classify(stack(48)) -> u64` takes the parsed header in the key layout of
//! [`super::maps`] on the caller's stack and returns the index of the first matching rule
//! (`NO_MATCH` when none). It walks the table descriptors unrolled, in its own body
//! ([`Walk::Unrolled`]): for each of the `max_tables` slots, the descriptor (an array lookup
//! the kernel inlines), the early stop (the first table whose stop — the best rule of it
//! and the tables after it — cannot beat what was found ends the walk), the masked
//! header folded into a fingerprint whose top bits pick the table's filter bit, and only
//! when that bit is set a call of `classify_table`: one hash lookup keyed by
//! {fingerprint, table} and a counted loop (`bucket_max`) over the bucket's entries
//! (ascending rule index: the first that matches is the bucket's best; an entry no better
//! than the best found ends the scan). Two copies of the walk: IPv4 headers (low address
//! words zero) fold two words fewer.
//!
//! Why the entry scan is a call: unrolled into the walk, the verifier walks every table's
//! every entry test on one path and refused it ("The sequence of 8193 jumps is too
//! complex", 64 tables × 16 entries); as a subprogram it is verified once per call site
//! (about 1,500 instructions each). Until session 8 `bpf_loop` called one callback per
//! table ([`Walk::Loop`], kept for the benchmark): verified once (3,041 instructions), but a
//! call, a frame and the state reloaded for each table, 6-10 tables a header with their
//! filter bit clear.

use std::fmt::Write as _;

use super::maps::{u16_at, u32_at, GEN_HEAD_OFF};
use super::maps::{
    BUCKET_KEY_BYTES, DESC_BYTES, DESC_FILTER, DESC_STOP, ENTRY_BYTES, ENTRY_DPORT, ENTRY_DST,
    ENTRY_FAMILY, ENTRY_PROTO, ENTRY_RULE, ENTRY_SPORT, ENTRY_SRC, ENTRY_VLAN, FILTER_LOG2,
    FINGER_MUL, KEY_BYTES,
};
use super::tuplemerge::Config;
use super::NO_MATCH;

/// Map names in the module.
pub const DESCS: &str = "cls_descs";
pub const BUCKETS: &str = "cls_buckets";
pub const ENTRIES: &str = "cls_entries";
pub const GEN: &str = "cls_gen";
/// The function's name.
pub const FUNC: &str = "classify";
/// The callback's name: one table per call.
pub const CALLBACK: &str = "classify_table";
/// The names of the maps and functions of one classifier (a filter's, in a module that
/// may hold several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub descs: String,
    pub buckets: String,
    pub entries: String,
    /// One u64: the generation's first descriptor slot and its ids' shift (u32 each).
    pub gen: String,
    pub func: String,
    pub callback: String,
}

impl Default for Names {
    /// The names of the kernel test and the benchmark.
    fn default() -> Names {
        Names {
            descs: DESCS.into(),
            buckets: BUCKETS.into(),
            entries: ENTRIES.into(),
            gen: GEN.into(),
            func: FUNC.into(),
            callback: CALLBACK.into(),
        }
    }
}

impl Names {
    /// The names of filter `filter`'s classifier.
    pub fn of_filter(filter: &str) -> Names {
        Names {
            descs: format!("{filter}_cls_tables"),
            buckets: format!("{filter}_cls_buckets"),
            entries: format!("{filter}_cls_rules"),
            gen: format!("{filter}_cls_gen"),
            func: format!("{filter}_classify"),
            callback: format!("{filter}_classify_table"),
        }
    }
}

/// Sizes of the maps a module is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub buckets: usize,
    pub entries: usize,
}

/// The maps and the `classify` subprogram, as MIR text.
pub fn text(cfg: &Config, sizes: Sizes) -> String {
    named_text(&Names::default(), cfg, sizes, &[])
}

/// The maps and the classifier's two functions under `n`'s names, as MIR text, with the
/// rules of `head` ([`super::maps::Maps::head`]) tested as code ahead of the walk.
pub fn named_text(n: &Names, cfg: &Config, sizes: Sizes, head: &[[u8; ENTRY_BYTES]]) -> String {
    let mut s = String::new();
    s.push_str(&maps_text(n, cfg, sizes));
    s.push('\n');
    s.push_str(&function(n, cfg, Walk::Unrolled, head));
    s
}

/// The data path walking its tables as `walk` says, and the harness: the benchmark
/// measures [`Walk::Loop`] (the walk before session 8) beside [`module`].
pub fn module_walking(
    cfg: &Config,
    sizes: Sizes,
    walk: Walk,
) -> Result<crate::mir::Module, crate::mir::ParseError> {
    let n = Names::default();
    let mut s = maps_text(&n, cfg, sizes);
    s.push('\n');
    s.push_str(&function(&n, cfg, walk, &[]));
    crate::mir::parse_module(&format!("{s}\n{}", harness()))
}

/// The three map definitions, as MIR text.
pub fn maps_text(n: &Names, cfg: &Config, sizes: Sizes) -> String {
    let (descs, buckets, entries) = (&n.descs, &n.buckets, &n.entries);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "map {descs}: array, key 4, value {DESC_BYTES}, max {}",
        generations(cfg)
    );
    let _ = writeln!(s, "map {}: array, key 4, value 8, max 1", n.gen);
    let _ = writeln!(
        s,
        "map {buckets}: hash, key {BUCKET_KEY_BYTES}, value 8, max {}",
        sizes.buckets.max(1)
    );
    let _ = writeln!(
        s,
        "map {entries}: array, key 4, value {ENTRY_BYTES}, max {}",
        sizes.entries.max(1)
    );
    s
}

/// Descriptor slots: two generations of `max_tables` tables and a meta slot each.
pub fn generations(cfg: &Config) -> usize {
    2 * (cfg.max_tables.max(1) + 1)
}

/// Value numbering for the text.
struct W {
    s: String,
    next: u32,
}

impl W {
    fn val(&mut self, ty: &str, rhs: &str) -> String {
        let v = format!("v{}", self.next);
        self.next += 1;
        let _ = writeln!(self.s, "    {v}: {ty} = {rhs}");
        v
    }
    fn line(&mut self, l: &str) {
        let _ = writeln!(self.s, "    {l}");
    }
    fn block(&mut self, header: &str) {
        let _ = writeln!(self.s, "{header}:");
    }
    /// A zero-extended load of `bits` from `ptr + off`.
    fn load(&mut self, bits: u8, ptr: &str, off: usize) -> String {
        let x = self.val(&format!("u{bits}"), &format!("load [{ptr}+{off}]"));
        if bits == 64 {
            x
        } else {
            self.val("u64", &format!("zext {x}"))
        }
    }
}

/// How `classify` walks the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Unrolled over the `max_tables` slots in `classify` itself: no call for a table
    /// whose filter bit is clear, one call of the probe (hash lookup and entry scan) for
    /// a table whose bit is set.
    Unrolled,
    /// `bpf_loop` calls one callback per table (sessions 5-7): the benchmark's "before".
    Loop,
}

/// The 64-bit header words that [`super::maps::fingerprint`] folds, as (header offset,
/// multiplier index); word 0 and word 1 are xor-ed first and share multiplier 0.
const FOLDED: [(usize, usize); 4] = [(16, 1), (24, 2), (32, 3), (40, 4)];

/// The fingerprint of the header masked by descriptor `d` (`maps::fingerprint`), skipping
/// the address words at the offsets in `zero` (the caller knows the header's are zero
/// there, so their masked product is zero too).
fn fold(w: &mut W, st: &str, d: &str, zero: &[usize]) -> String {
    let mut masked = Vec::new();
    for off in [0, 8] {
        let h = w.load(64, st, off);
        let m = w.load(64, d, off);
        masked.push(w.val("u64", &format!("and {h}, {m}")));
    }
    let mut parts = vec![(
        w.val("u64", &format!("xor {}, {}", masked[0], masked[1])),
        0,
    )];
    for (off, mul) in FOLDED {
        if zero.contains(&off) {
            continue;
        }
        let h = w.load(64, st, off);
        let m = w.load(64, d, off);
        parts.push((w.val("u64", &format!("and {h}, {m}")), mul));
    }
    let mut acc: Option<String> = None;
    for (x, mul) in parts {
        let k = w.val("u64", &format!("iconst {}", FINGER_MUL[mul]));
        let p = w.val("u64", &format!("mul {x}, {k}"));
        acc = Some(match acc {
            None => p,
            Some(f) => w.val("u64", &format!("xor {f}, {p}")),
        });
    }
    acc.unwrap_or_default()
}

/// Whether descriptor `d`'s filter bit of fingerprint `fp` is set (a u64 0 or 1).
fn filter_set(w: &mut W, descs: &str, d: &str, fp: &str) -> String {
    let bit = w.val("u64", &format!("lshr {fp}, {}", 64 - FILTER_LOG2));
    let byte = w.val("u64", &format!("lshr {bit}, 3"));
    let shift = w.val("u64", &format!("and {bit}, 7"));
    let at = w.val(&format!("val({descs})"), &format!("ptradd {d}, {byte}"));
    let bits = w.load(8, &at, DESC_FILTER);
    let set = w.val("u64", &format!("lshr {bits}, {shift}"));
    w.val("u64", &format!("and {set}, 1"))
}

fn function(n: &Names, cfg: &Config, walk: Walk, head: &[[u8; ENTRY_BYTES]]) -> String {
    let func = &n.func;
    let mut s = match walk {
        Walk::Unrolled => probe_function(n, cfg),
        Walk::Loop => table_callback(n, cfg),
    };
    s.push('\n');
    // `classify`: the header and the search state in one stack slot, which the probe
    // (or bpf_loop's callback) gets a pointer to.
    let tmax = cfg.max_tables.max(1);
    let mut w = W {
        s: String::new(),
        next: 1,
    };
    let gen = &n.gen;
    let _ = writeln!(w.s, "func {func}(stack({KEY_BYTES})) -> u64 {{");
    w.line(&format!("ss0 = slot {STATE_BYTES}, align 8"));
    w.line("ss1 = slot 4, align 4");
    w.block(&format!("block0(v0: stack({KEY_BYTES}))"));
    let st = w.val("stack", "addr ss0");
    for off in (0..KEY_BYTES).step_by(8) {
        let x = w.load(64, "v0", off);
        w.line(&format!("store.u64 [{st}+{off}], {x}"));
    }
    let none = w.val("u64", &format!("iconst {NO_MATCH}"));
    w.line(&format!("store.u64 [{st}+{STATE_BEST}], {none}"));
    w.line(&format!("store.u64 [{st}+{STATE_FOUND}], {none}"));
    // The generation: its descriptors' first slot and its ids' shift (zero when the map
    // was never written: one generation, ids as they are).
    let zero = w.val("u64", "iconst 0");
    w.line(&format!("store.u64 [{st}+{STATE_BASE}], {zero}"));
    let k = w.val("stack", "addr ss1");
    w.line(&format!("store.u32 [{k}+0], {zero}"));
    let gm = w.val(&format!("map({gen})"), &format!("mapref {gen}"));
    let g = w.val(
        &format!("val?({gen})"),
        &format!("call map_lookup_elem({gm}, {k})"),
    );
    w.line(&format!("br eq {g}, 0, block2, block1"));
    w.block("block1");
    let both = w.load(64, &g, 0);
    w.line(&format!("store.u64 [{st}+{STATE_BASE}], {both}"));
    w.line("jump block2");
    w.block("block2");
    let st2 = w.val("stack", "addr ss0");
    let mut start = 3;
    if walk == Walk::Unrolled && !head.is_empty() {
        start = head_chain(&mut w, &st2, head);
    }
    let done = match walk {
        Walk::Loop => {
            let callback = &n.callback;
            let cb = w.val(&format!("fn({callback})"), &format!("funcref {callback}"));
            let n = w.val("u32", &format!("iconst {tmax}"));
            let flags = w.val("u64", "iconst 0");
            w.val("i64", &format!("call loop({n}, {cb}, {st2}, {flags})"));
            w.line("jump block3");
            3
        }
        Walk::Unrolled => unrolled(&mut w, n, tmax, &st2, start),
    };
    // {id >> shift, action}: the rule the filter knows.
    w.block(&format!("block{done}"));
    let st3 = w.val("stack", "addr ss0");
    let found = w.load(64, &st3, STATE_FOUND);
    let shift = w.load(32, &st3, STATE_SHIFT);
    let shift = w.val("u64", &format!("and {shift}, 31"));
    let lo = w.val("u64", &format!("shl {found}, 32"));
    let lo = w.val("u64", &format!("lshr {lo}, 32"));
    let rule = w.val("u64", &format!("lshr {lo}, {shift}"));
    let hi = w.val("u64", &format!("lshr {found}, 32"));
    let hi = w.val("u64", &format!("shl {hi}, 32"));
    let res = w.val("u64", &format!("or {hi}, {rule}"));
    w.line(&format!("return {res}"));
    w.s.push_str("}\n");
    s.push_str(&w.s);
    s
}

/// The head ([`super::head`]): its rules in order from block 3, each testing only the
/// fields it fixes, without a branch per test (as `bench/polbench`'s linear chain); a match
/// sets the best found and goes on to the walk, whose early stop then ends at the first
/// table. Skipped when the `gen` map says a swapped set runs ([`GEN_HEAD_OFF`]). Leaves
/// the walk's first block current and returns the next free block number.
fn head_chain(w: &mut W, st: &str, head: &[[u8; ENTRY_BYTES]]) -> usize {
    let walk = 3 + 2 * head.len();
    let word = w.load(32, st, STATE_SHIFT);
    let off = w.val(
        "u64",
        &format!("lshr {word}, {}", GEN_HEAD_OFF.trailing_zeros()),
    );
    w.line(&format!("br ne {off}, 0, block{walk}, block3"));
    for (j, e) in head.iter().enumerate() {
        let (test, found) = (3 + 2 * j, 4 + 2 * j);
        w.block(&format!("block{test}"));
        let mut fails: Vec<String> = Vec::new();
        let ranges: [(usize, u8, usize); 5] = [
            (4, 8, ENTRY_FAMILY),
            (5, 8, ENTRY_PROTO),
            (6, 16, ENTRY_VLAN),
            (8, 16, ENTRY_SPORT),
            (10, 16, ENTRY_DPORT),
        ];
        for (hoff, bits, eoff) in ranges {
            let (lo, hi) = if bits == 8 {
                (u64::from(e[eoff]), u64::from(e[eoff + 1]))
            } else {
                (u64::from(u16_at(e, eoff)), u64::from(u16_at(e, eoff + 2)))
            };
            if lo == 0 && hi == (1u64 << bits) - 1 {
                continue;
            }
            let h = w.load(bits, st, hoff);
            if lo == hi {
                fails.push(w.val("u64", &format!("xor {h}, {lo}")));
            } else {
                let below = w.val("u64", &format!("sub {h}, {lo}"));
                let top = w.val("u64", &format!("iconst {hi}"));
                let above = w.val("u64", &format!("sub {top}, {h}"));
                let out = w.val("u64", &format!("or {below}, {above}"));
                fails.push(w.val("u64", &format!("lshr {out}, 63")));
            }
        }
        for (k, eoff) in [ENTRY_SRC, ENTRY_SRC + 8, ENTRY_DST, ENTRY_DST + 8]
            .into_iter()
            .enumerate()
        {
            let (v, m) = (u64_at(e, eoff), u64_at(e, eoff + 16));
            if m == 0 {
                continue;
            }
            let h = w.load(64, st, 16 + 8 * k);
            let mv = w.val("u64", &format!("iconst {m}"));
            let x = w.val("u64", &format!("and {h}, {mv}"));
            fails.push(w.val("u64", &format!("xor {x}, {v}")));
        }
        let mut acc: Option<String> = None;
        for f in fails {
            acc = Some(match acc {
                None => f,
                Some(a) => w.val("u64", &format!("or {a}, {f}")),
            });
        }
        match acc {
            Some(a) => w.line(&format!("br ne {a}, 0, block{}, block{found}", test + 2)),
            None => w.line(&format!("jump block{found}")),
        }
        w.block(&format!("block{found}"));
        let rule = w.val("u64", &format!("iconst {}", u32_at(e, ENTRY_RULE)));
        w.line(&format!("store.u64 [{st}+{STATE_BEST}], {rule}"));
        let both = w.val("u64", &format!("iconst {}", u64_at(e, ENTRY_RULE)));
        w.line(&format!("store.u64 [{st}+{STATE_FOUND}], {both}"));
        w.line(&format!("jump block{walk}"));
    }
    w.block(&format!("block{walk}"));
    walk + 1
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// The call-free walk (ends in the block it returns): for each table slot, its descriptor (an array
/// lookup the kernel inlines), the early stop, the fingerprint and the filter bit, and
/// a call of the probe only when the bit is set. Two copies: when the header's low
/// address words are zero (every IPv4 header: its addresses sit in the first 4 bytes),
/// the copy that skips them folds two words fewer and gives the same fingerprint.
fn unrolled(w: &mut W, n: &Names, tmax: usize, st: &str, start: usize) -> usize {
    let (descs, probe) = (&n.descs, &n.callback);
    let lo_src = w.load(64, st, 24);
    let lo_dst = w.load(64, st, 40);
    let lows = w.val("u64", &format!("or {lo_src}, {lo_dst}"));
    // Blocks from `start` on: per table, 4 blocks (descriptor, stop, fingerprint, probe)
    // in each copy; then the end.
    let base = w.load(32, st, STATE_BASE);
    let first = |copy: usize, t: usize| start + 4 * (copy * tmax + t);
    let done = first(2, 0);
    w.line(&format!(
        "br eq {lows}, 0, block{}, block{}",
        first(1, 0),
        first(0, 0)
    ));
    for (copy, zero) in [(0usize, &[][..]), (1, &[24usize, 40][..])] {
        for t in 0..tmax {
            let b = first(copy, t);
            let next = if t + 1 < tmax {
                first(copy, t + 1)
            } else {
                done
            };
            w.block(&format!("block{b}"));
            let sp = w.val("stack", "addr ss0");
            let tid = w.val("u64", &format!("add {base}, {t}"));
            let idx = w.val("stack", "addr ss1");
            w.line(&format!("store.u32 [{idx}+0], {tid}"));
            let dm = w.val(&format!("map({descs})"), &format!("mapref {descs}"));
            let d = w.val(
                &format!("val?({descs})"),
                &format!("call map_lookup_elem({dm}, {idx})"),
            );
            w.line(&format!("br eq {d}, 0, block{done}, block{}", b + 1));
            // A table's stop is the best rule of it and every later table: once it
            // cannot beat the best found, no later table can either.
            w.block(&format!("block{}", b + 1));
            let tbest = w.load(32, &d, DESC_STOP);
            let best = w.load(64, &sp, STATE_BEST);
            w.line(&format!(
                "br uge {tbest}, {best}, block{done}, block{}",
                b + 2
            ));
            w.block(&format!("block{}", b + 2));
            let fp = fold(w, &sp, &d, zero);
            let set = filter_set(w, descs, &d, &fp);
            w.line(&format!("br eq {set}, 0, block{next}, block{}", b + 3));
            w.block(&format!("block{}", b + 3));
            w.val("i64", &format!("callfn {probe}({fp}, {tid}, {sp})"));
            w.line(&format!("jump block{next}"));
        }
    }
    done
}

/// Bytes of the search state on `classify`'s stack: the header, the best rule (u64), the
/// first 8 bytes of its entry (rule and action: what `classify` returns), and the
/// generation's descriptor base and id shift (u32 each, from the `gen` map).
const STATE_BYTES: usize = KEY_BYTES + 24;
const STATE_BEST: usize = KEY_BYTES;
const STATE_FOUND: usize = KEY_BYTES + 8;
const STATE_BASE: usize = KEY_BYTES + 16;
const STATE_SHIFT: usize = KEY_BYTES + 20;

/// `classify_table(fingerprint, table slot, state) -> 0`: one hash lookup and the
/// bucket's scan (the probe of the unrolled walk).
fn probe_function(n: &Names, cfg: &Config) -> String {
    let mut w = W {
        s: String::new(),
        next: 3,
    };
    let _ = writeln!(
        w.s,
        "func {}(u64, u64, stack({STATE_BYTES})) -> i64 {{",
        n.callback
    );
    w.line("ss0 = slot 16, align 8");
    w.line("ss1 = slot 4, align 4");
    w.block(&format!(
        "block0(v0: u64, v1: u64, v2: stack({STATE_BYTES}))"
    ));
    w.line("jump block1");
    let l = Labels::from(1);
    scan(&mut w, n, cfg, "v0", "v1", "v2", &l);
    w.block(&format!("block{}", l.next));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.s.push_str("}\n");
    w.s
}

/// Block numbers of [`scan`]: it starts at `probe` and uses the blocks up to `found`;
/// `next` (the table is done) is the caller's.
struct Labels {
    probe: usize,
    next: usize,
    found: usize,
}

impl Labels {
    fn from(probe: usize) -> Labels {
        Labels {
            probe,
            found: probe + 7,
            next: probe + 8,
        }
    }
}

/// The bucket lookup `{fp, tid}` and the scan of its entries, updating the state at `st`;
/// ends in `l.next`.
fn scan(w: &mut W, n: &Names, cfg: &Config, fp: &str, tid: &str, st: &str, l: &Labels) {
    let (buckets, entries) = (&n.buckets, &n.entries);
    let bmax = cfg.bucket_max.max(1);
    let ranges: [(usize, u8, usize); 5] = [
        (4, 8, ENTRY_FAMILY),
        (5, 8, ENTRY_PROTO),
        (6, 16, ENTRY_VLAN),
        (8, 16, ENTRY_SPORT),
        (10, 16, ENTRY_DPORT),
    ];
    // (header offset, entry value offset) of each 8-byte address word; the mask follows
    // the value at +16.
    let words: [(usize, usize); 4] = [
        (16, ENTRY_SRC),
        (24, ENTRY_SRC + 8),
        (32, ENTRY_DST),
        (40, ENTRY_DST + 8),
    ];
    let p = l.probe;
    let (bucket, head, lookup, rule_b, test, latch) = (p + 1, p + 2, p + 3, p + 4, p + 5, p + 6);
    let (next, found) = (l.next, l.found);

    // The bucket key: {fingerprint, table slot}, 12 bytes for the kernel to hash.
    w.block(&format!("block{p}"));
    let key = w.val("stack", "addr ss0");
    w.line(&format!("store.u64 [{key}+0], {fp}"));
    w.line(&format!("store.u32 [{key}+8], {tid}"));
    let bm = w.val(&format!("map({buckets})"), &format!("mapref {buckets}"));
    let b = w.val(
        &format!("val?({buckets})"),
        &format!("call map_lookup_elem({bm}, {key})"),
    );
    w.line(&format!("br eq {b}, 0, block{next}, block{bucket}"));

    w.block(&format!("block{bucket}"));
    let start = w.load(32, &b, 0);
    let count = w.load(32, &b, 4);
    let k0 = w.val("u64", "iconst 0");
    w.line(&format!("jump block{head}({k0})"));

    let k = format!("v{}", w.next);
    w.next += 1;
    w.block(&format!("block{head}({k}: u64)"));
    w.line(&format!("br uge {k}, {count}, block{next}, block{lookup}"));

    w.block(&format!("block{lookup}"));
    let i = w.val("u64", &format!("add {start}, {k}"));
    let slot = w.val("stack", "addr ss1");
    w.line(&format!("store.u32 [{slot}+0], {i}"));
    let em = w.val(&format!("map({entries})"), &format!("mapref {entries}"));
    let e = w.val(
        &format!("val?({entries})"),
        &format!("call map_lookup_elem({em}, {slot})"),
    );
    w.line(&format!("br eq {e}, 0, block{next}, block{rule_b}"));

    // Entries are by ascending rule: one no better than the best found ends the scan.
    w.block(&format!("block{rule_b}"));
    let rule = w.load(32, &e, ENTRY_RULE);
    let best = w.load(64, st, STATE_BEST);
    w.line(&format!("br uge {rule}, {best}, block{next}, block{test}"));

    // All tests in one block without branches (a branch per test made the verifier's
    // states multiply across the scan's iterations): a range test fails when `h - lo`
    // or `hi - h` wraps (values are at most 16 bits, so bit 63 tells), an address word
    // when `h & mask ^ value` is not zero; the failures are or-ed.
    w.block(&format!("block{test}"));
    let mut acc: Option<String> = None;
    let or = |w: &mut W, x: String, acc: &mut Option<String>| {
        *acc = Some(match acc.take() {
            None => x,
            Some(a) => w.val("u64", &format!("or {a}, {x}")),
        });
    };
    for (hoff, bits, eoff) in ranges {
        let step = usize::from(bits / 8);
        let h = w.load(bits, st, hoff);
        let lo = w.load(bits, &e, eoff);
        let hi = w.load(bits, &e, eoff + step);
        let below = w.val("u64", &format!("sub {h}, {lo}"));
        let above = w.val("u64", &format!("sub {hi}, {h}"));
        let out = w.val("u64", &format!("or {below}, {above}"));
        let bit = w.val("u64", &format!("lshr {out}, 63"));
        or(w, bit, &mut acc);
    }
    for (hoff, eoff) in words {
        let h = w.load(64, st, hoff);
        let m = w.load(64, &e, eoff + 16);
        let v = w.load(64, &e, eoff);
        let x = w.val("u64", &format!("and {h}, {m}"));
        let d = w.val("u64", &format!("xor {x}, {v}"));
        or(w, d, &mut acc);
    }
    let acc = acc.unwrap_or_default();
    w.line(&format!("br ne {acc}, 0, block{latch}, block{found}"));

    w.block(&format!("block{latch}"));
    let k2 = w.val("u64", &format!("add {k}, 1"));
    w.line(&format!(
        "br ult {k2}, {bmax}, block{head}({k2}), block{next}"
    ));

    w.block(&format!("block{found}"));
    w.line(&format!("store.u64 [{st}+{STATE_BEST}], {rule}"));
    let both = w.load(64, &e, ENTRY_RULE);
    w.line(&format!("store.u64 [{st}+{STATE_FOUND}], {both}"));
    w.line(&format!("jump block{next}"));
}

/// `classify_table(t, state) -> 0 (next table) | 1 (stop)`, `bpf_loop`'s callback of
/// [`Walk::Loop`]: the descriptor of table `t`, the early stop, the fingerprint, the
/// filter bit, then the probe.
fn table_callback(n: &Names, cfg: &Config) -> String {
    let (descs, callback) = (&n.descs, &n.callback);
    let l = Labels::from(3);
    let stop = l.next + 1;
    let mut w = W {
        s: String::new(),
        next: 2,
    };
    let _ = writeln!(w.s, "func {callback}(u64, stack({STATE_BYTES})) -> i64 {{");
    w.line("ss0 = slot 16, align 8");
    w.line("ss1 = slot 4, align 4");
    w.block(&format!("block0(v0: u64, v1: stack({STATE_BYTES}))"));
    // The descriptor's slot (and the table id in bucket keys): the generation's base + t.
    let base = w.load(32, "v1", STATE_BASE);
    let tid = w.val("u64", &format!("add v0, {base}"));
    let idx = w.val("stack", "addr ss1");
    w.line(&format!("store.u32 [{idx}+0], {tid}"));
    let dm = w.val(&format!("map({descs})"), &format!("mapref {descs}"));
    let d = w.val(
        &format!("val?({descs})"),
        &format!("call map_lookup_elem({dm}, {idx})"),
    );
    w.line(&format!("br eq {d}, 0, block{stop}, block1"));
    w.block("block1");
    let tbest = w.load(32, &d, DESC_STOP);
    let best = w.load(64, "v1", STATE_BEST);
    w.line(&format!("br uge {tbest}, {best}, block{stop}, block2"));
    w.block("block2");
    let fp = fold(&mut w, "v1", &d, &[]);
    let set = filter_set(&mut w, descs, &d, &fp);
    w.line(&format!(
        "br eq {set}, 0, block{}, block{}",
        l.next, l.probe
    ));
    scan(&mut w, n, cfg, &fp, &tid, "v1", &l);
    w.block(&format!("block{}", l.next));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
    w.block(&format!("block{stop}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));
    w.s.push_str("}\n");
    w.s
}

/// The XDP program of the kernel test and the benchmark: the packet is one header in the
/// key layout; `classify`'s result overwrites its first 4 bytes (test-run data out) and
/// the verdict is XDP_PASS.
pub fn harness() -> String {
    let mut s = format!(
        "func classify_xdp(ctx) -> i64 xdp {{\n    ss0 = slot {KEY_BYTES}, align 8\n\
         block0(v0: ctx):\n    v1: pkt = load [v0+0]\n    v2: pkt_end = load [v0+4]\n    \
         v3: pkt = ptradd v1, {KEY_BYTES}\n    br ugt v3, v2, block2, block1\nblock1:\n    \
         v4: stack = addr ss0\n"
    );
    let mut v = 5;
    for off in (0..KEY_BYTES).step_by(8) {
        let _ = writeln!(s, "    v{v}: u64 = load [v1+{off}]");
        let _ = writeln!(s, "    store.u64 [v4+{off}], v{v}");
        v += 1;
    }
    let _ = write!(
        s,
        "    v{v}: u64 = callfn {FUNC}(v4)\n    store.u32 [v1+0], v{v}\n    jump block2\n\
         block2:\n    v{}: i64 = iconst 2\n    return v{}\n}}\n",
        v + 1,
        v + 1
    );
    s
}

/// The data path and the test harness as a module.
pub fn module(cfg: &Config, sizes: Sizes) -> Result<crate::mir::Module, crate::mir::ParseError> {
    crate::mir::parse_module(&format!("{}\n{}", text(cfg, sizes), harness()))
}

/// The data path with `head`'s rules as code ahead of the walk, and the test harness.
pub fn module_with_head(
    cfg: &Config,
    sizes: Sizes,
    head: &[[u8; ENTRY_BYTES]],
) -> Result<crate::mir::Module, crate::mir::ParseError> {
    let text = named_text(&Names::default(), cfg, sizes, head);
    crate::mir::parse_module(&format!("{text}\n{}", harness()))
}

/// Adds the functions of `part` (a classifier's, from [`named_text`] parsed) to `module`,
/// after its own: map references are resolved by name in `module` (maps it lacks are
/// added), function references shifted by the functions already there. Returns the id of
/// `func` in `module`.
pub fn import(
    module: &mut crate::mir::Module,
    part: crate::mir::Module,
    func: &str,
) -> Result<crate::mir::FuncId, String> {
    use crate::mir::{FuncId, MapId, Op, PtrKind, Type};
    let mut maps = Vec::new();
    for m in &part.maps {
        let id = match module.map_by_name(&m.name) {
            Some(id) if module.map(id) == Some(m) => id,
            Some(_) => return Err(format!("map {} differs from the classifier's", m.name)),
            None => module.add_map(m.clone()),
        };
        maps.push(id);
    }
    let base = module.funcs.len();
    let map = |id: MapId| maps.get(id.index()).copied().ok_or("unknown map");
    let fid = |id: FuncId| FuncId::from_index(base + id.index());
    let ty = |t: Type| -> Result<Type, &str> {
        Ok(match t {
            Type::Ptr(PtrKind::Map(m)) => Type::Ptr(PtrKind::Map(map(m)?)),
            Type::Ptr(PtrKind::MapValue(m)) => Type::Ptr(PtrKind::MapValue(map(m)?)),
            Type::Ptr(PtrKind::MapValueOrNull(m)) => Type::Ptr(PtrKind::MapValueOrNull(map(m)?)),
            Type::Ptr(PtrKind::Func(f)) => Type::Ptr(PtrKind::Func(fid(f))),
            t => t,
        })
    };
    let want = part.func_by_name(func).map(fid);
    for mut f in part.funcs {
        for p in f.params.iter_mut() {
            *p = ty(*p)?;
        }
        for v in f.values.iter_mut() {
            v.ty = ty(v.ty)?;
        }
        for i in f.insts.iter_mut() {
            i.op = match std::mem::replace(&mut i.op, Op::Iconst(0)) {
                Op::MapRef(m) => Op::MapRef(map(m)?),
                Op::FuncRef(g) => Op::FuncRef(fid(g)),
                Op::CallFn(g, args) => Op::CallFn(fid(g), args),
                op => op,
            };
        }
        module.add_func(f);
    }
    want.ok_or_else(|| format!("the classifier has no function {func}"))
}
