//! The classifier's data path as MIR: the search [`super::maps::Maps::lookup`] mirrors.
//!
//! `classify(stack(48)) -> u64` takes the parsed header in the key layout of
//! [`super::maps`] on the caller's stack and returns the index of the first matching rule
//! (`NO_MATCH` when none). `bpf_loop` walks the table descriptors (`max_tables` calls of
//! `classify_table`, which stops the loop at the first table whose stop — the best rule of
//! it and the tables after it — cannot beat what was found); each call masks the header,
//! folds it into a fingerprint whose top bits pick the table's filter bit, makes one hash
//! lookup keyed by {fingerprint, table} when the bit is set, and a counted loop
//! (`bucket_max`) scans the bucket's entries (ascending rule index: the first that matches
//! is the bucket's best; an entry no better than the best found ends the scan).
//!
//! Why `bpf_loop` outside: unrolled, the verifier walks every table's every entry test on
//! one path and refused it ("The sequence of 8193 jumps is too complex", 64 tables × 16
//! entries); a callback is verified once, whatever the table count.

use std::fmt::Write as _;

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
    named_text(&Names::default(), cfg, sizes)
}

/// The maps and the classifier's two functions under `n`'s names, as MIR text.
pub fn named_text(n: &Names, cfg: &Config, sizes: Sizes) -> String {
    let mut s = String::new();
    s.push_str(&maps_text(n, cfg, sizes));
    s.push('\n');
    s.push_str(&function(n, cfg, true));
    s
}

/// The data path and the harness without the read of the `gen` map (one generation, ids
/// as they are): the benchmark measures what that read costs against [`module`].
pub fn module_without_gen(
    cfg: &Config,
    sizes: Sizes,
) -> Result<crate::mir::Module, crate::mir::ParseError> {
    let n = Names::default();
    let mut s = maps_text(&n, cfg, sizes);
    s.push('\n');
    s.push_str(&function(&n, cfg, false));
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

/// Bytes of the search state on `classify`'s stack: the header, the best rule (u64), the
/// first 8 bytes of its entry (rule and action: what `classify` returns), and the
/// generation's descriptor base and id shift (u32 each, from the `gen` map).
const STATE_BYTES: usize = KEY_BYTES + 24;
const STATE_BEST: usize = KEY_BYTES;
const STATE_FOUND: usize = KEY_BYTES + 8;
const STATE_BASE: usize = KEY_BYTES + 16;
const STATE_SHIFT: usize = KEY_BYTES + 20;

fn function(n: &Names, cfg: &Config, read_gen: bool) -> String {
    let (func, callback) = (&n.func, &n.callback);
    let mut s = table_callback(n, cfg);
    s.push('\n');
    // `classify`: the header and the best rule so far in one stack slot, which bpf_loop
    // hands to the callback once per table.
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
    if read_gen {
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
    } else {
        w.line("jump block1");
        w.block("block1");
    }
    w.line("jump block2");
    w.block("block2");
    let st2 = w.val("stack", "addr ss0");
    let cb = w.val(&format!("fn({callback})"), &format!("funcref {callback}"));
    let n = w.val("u32", &format!("iconst {tmax}"));
    let flags = w.val("u64", "iconst 0");
    w.val("i64", &format!("call loop({n}, {cb}, {st2}, {flags})"));
    // {id >> shift, action}: the rule the filter knows.
    let found = w.load(64, &st2, STATE_FOUND);
    let shift = w.load(32, &st2, STATE_SHIFT);
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

/// `classify_table(t, state) -> 0 (next table) | 1 (stop)`: the descriptor of table `t`,
/// the early stop, the masked key, one hash lookup, the bucket's scan.
fn table_callback(n: &Names, cfg: &Config) -> String {
    let (descs, buckets, entries, callback) = (&n.descs, &n.buckets, &n.entries, &n.callback);
    let bmax = cfg.bucket_max.max(1);
    // Blocks: 0 descriptor, 1 early stop, 2 key + filter bit, 3 bucket lookup, 4 bucket,
    // 5 entry loop header (k), 6 entry lookup, 7 entry's rule, 8 the tests, then the latch,
    // "next table", "stop" and "found (rule)".
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
    let first_test = 8;
    let latch = first_test + 1;
    let next = latch + 1;
    let stop = next + 1;
    let found = stop + 1;
    let probe = 3;

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

    // A table's stop is the best rule of it and every later table: once it cannot beat
    // the best found, no later table can either.
    w.block("block1");
    let tbest = w.load(32, &d, DESC_STOP);
    let best = w.load(64, "v1", STATE_BEST);
    w.line(&format!("br uge {tbest}, {best}, block{stop}, block2"));

    // The masked header's fingerprint (`maps::fingerprint`; it is never stored, only
    // hashed), and its filter bit (`maps::filter_bit`): a clear bit means the table has no
    // bucket for this header, and the hash lookup is skipped.
    w.block("block2");
    let mut masked = Vec::new();
    for off in (0..KEY_BYTES).step_by(8) {
        let h = w.load(64, "v1", off);
        let m = w.load(64, &d, off);
        masked.push(w.val("u64", &format!("and {h}, {m}")));
    }
    let first = w.val("u64", &format!("xor {}, {}", masked[0], masked[1]));
    let mut fold: Option<String> = None;
    for (x, m) in std::iter::once(&first).chain(&masked[2..]).zip(FINGER_MUL) {
        let k = w.val("u64", &format!("iconst {m}"));
        let p = w.val("u64", &format!("mul {x}, {k}"));
        fold = Some(match fold {
            None => p,
            Some(f) => w.val("u64", &format!("xor {f}, {p}")),
        });
    }
    let fold = fold.unwrap_or_default();
    let bit = w.val("u64", &format!("lshr {fold}, {}", 64 - FILTER_LOG2));
    let byte = w.val("u64", &format!("lshr {bit}, 3"));
    let shift = w.val("u64", &format!("and {bit}, 7"));
    let at = w.val(&format!("val({descs})"), &format!("ptradd {d}, {byte}"));
    let bits = w.load(8, &at, DESC_FILTER);
    let set = w.val("u64", &format!("lshr {bits}, {shift}"));
    let set = w.val("u64", &format!("and {set}, 1"));
    w.line(&format!("br eq {set}, 0, block{next}, block{probe}"));

    // The bucket key: {fingerprint, table slot}, 12 bytes for the kernel to hash.
    w.block(&format!("block{probe}"));
    let key = w.val("stack", "addr ss0");
    w.line(&format!("store.u64 [{key}+0], {fold}"));
    w.line(&format!("store.u32 [{key}+8], {tid}"));
    let bm = w.val(&format!("map({buckets})"), &format!("mapref {buckets}"));
    let b = w.val(
        &format!("val?({buckets})"),
        &format!("call map_lookup_elem({bm}, {key})"),
    );
    w.line(&format!("br eq {b}, 0, block{next}, block4"));

    w.block("block4");
    let start = w.load(32, &b, 0);
    let count = w.load(32, &b, 4);
    let k0 = w.val("u64", "iconst 0");
    w.line(&format!("jump block5({k0})"));

    let k = format!("v{}", w.next);
    w.next += 1;
    w.block(&format!("block5({k}: u64)"));
    w.line(&format!("br uge {k}, {count}, block{next}, block6"));

    w.block("block6");
    let i = w.val("u64", &format!("add {start}, {k}"));
    let slot = w.val("stack", "addr ss1");
    w.line(&format!("store.u32 [{slot}+0], {i}"));
    let em = w.val(&format!("map({entries})"), &format!("mapref {entries}"));
    let e = w.val(
        &format!("val?({entries})"),
        &format!("call map_lookup_elem({em}, {slot})"),
    );
    w.line(&format!("br eq {e}, 0, block{next}, block7"));

    // Entries are by ascending rule: one no better than the best found ends the scan.
    w.block("block7");
    let rule = w.load(32, &e, ENTRY_RULE);
    let best = w.load(64, "v1", STATE_BEST);
    w.line(&format!(
        "br uge {rule}, {best}, block{next}, block{first_test}"
    ));

    // All tests in one block without branches (a branch per test made the verifier's
    // states multiply across the scan's iterations): a range test fails when `h - lo`
    // or `hi - h` wraps (values are at most 16 bits, so bit 63 tells), an address word
    // when `h & mask ^ value` is not zero; the failures are or-ed.
    w.block(&format!("block{first_test}"));
    let mut acc: Option<String> = None;
    let or = |w: &mut W, x: String, acc: &mut Option<String>| {
        *acc = Some(match acc.take() {
            None => x,
            Some(a) => w.val("u64", &format!("or {a}, {x}")),
        });
    };
    for (hoff, bits, eoff) in ranges {
        let step = usize::from(bits / 8);
        let h = w.load(bits, "v1", hoff);
        let lo = w.load(bits, &e, eoff);
        let hi = w.load(bits, &e, eoff + step);
        let below = w.val("u64", &format!("sub {h}, {lo}"));
        let above = w.val("u64", &format!("sub {hi}, {h}"));
        let out = w.val("u64", &format!("or {below}, {above}"));
        let bit = w.val("u64", &format!("lshr {out}, 63"));
        or(&mut w, bit, &mut acc);
    }
    for (hoff, eoff) in words {
        let h = w.load(64, "v1", hoff);
        let m = w.load(64, &e, eoff + 16);
        let v = w.load(64, &e, eoff);
        let x = w.val("u64", &format!("and {h}, {m}"));
        let d = w.val("u64", &format!("xor {x}, {v}"));
        or(&mut w, d, &mut acc);
    }
    let acc = acc.unwrap_or_default();
    w.line(&format!("br ne {acc}, 0, block{latch}, block{found}"));

    w.block(&format!("block{latch}"));
    let k2 = w.val("u64", &format!("add {k}, 1"));
    w.line(&format!("br ult {k2}, {bmax}, block5({k2}), block{next}"));

    w.block(&format!("block{next}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));

    w.block(&format!("block{stop}"));
    let one = w.val("i64", "iconst 1");
    w.line(&format!("return {one}"));

    w.block(&format!("block{found}"));
    w.line(&format!("store.u64 [v1+{STATE_BEST}], {rule}"));
    let both = w.load(64, &e, ENTRY_RULE);
    w.line(&format!("store.u64 [v1+{STATE_FOUND}], {both}"));
    let zero = w.val("i64", "iconst 0");
    w.line(&format!("return {zero}"));
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
