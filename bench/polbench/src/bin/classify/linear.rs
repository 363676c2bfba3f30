//! The linear peer of the classifier benchmark: the same rules as one straight chain of
//! tests in a BPF program, first match wins, on the same 48-byte headers.
//!
//! Each rule tests only the fields it fixes, with its bounds as immediates and without a
//! branch per test (an exact value: `h ^ v`; a range: bit 63 of `(h - lo) | (hi - h)`; an
//! address word: `h & mask ^ value`), then one branch: the match path falls through to a
//! `return`, so the verifier finishes it before it looks at the next rule. This is the
//! cheapest form a chain of these rules takes in BPF; pol compiles rules it keeps as code
//! into a similar chain.

use std::fmt::Write as _;

use pol_compiler::classify::{mask16, Rule, NO_MATCH};

/// The XDP program `linear_xdp`: the packet is one header in the classifier's key layout;
/// the index of the first matching rule (or `NO_MATCH`) overwrites its first 4 bytes.
pub fn text(rules: &[Rule]) -> String {
    let mut s = String::from(
        "func linear_xdp(ctx) -> i64 xdp {\nblock0(v0: ctx):\n    v1: pkt = load [v0+0]\n    \
         v2: pkt_end = load [v0+4]\n    v3: pkt = ptradd v1, 48\n    br ugt v3, v2, block1, block2\n\
         block1:\n    v4: i64 = iconst 2\n    return v4\nblock2:\n",
    );
    let _ = writeln!(s, "    jump block3");
    let mut next = 5u32;
    let mut block = 3u32;
    let mut val = |s: &mut String, ty: &str, rhs: String| {
        let v = format!("v{next}");
        next += 1;
        let _ = writeln!(s, "    {v}: {ty} = {rhs}");
        v
    };
    // Each rule loads the fields it tests from the packet (L1 hits): values live only
    // within their rule, so the chain needs a handful of registers whatever its length.
    let field = |val: &mut dyn FnMut(&mut String, &str, String) -> String,
                 s: &mut String,
                 bits: u8,
                 off: usize| {
        let x = val(s, &format!("u{bits}"), format!("load [v1+{off}]"));
        if bits == 64 {
            x
        } else {
            val(s, "u64", format!("zext {x}"))
        }
    };
    for (i, r) in rules.iter().enumerate() {
        let (test, found, after) = (block, block + 1, block + 2);
        block += 2;
        let _ = writeln!(s, "block{test}:");
        let mut fails: Vec<String> = Vec::new();
        let ranges = [
            (8, 4, u64::from(r.family.lo), u64::from(r.family.hi)),
            (8, 5, u64::from(r.proto.lo), u64::from(r.proto.hi)),
            (16, 6, u64::from(r.vlan.lo), u64::from(r.vlan.hi)),
            (16, 8, u64::from(r.sport.lo), u64::from(r.sport.hi)),
            (16, 10, u64::from(r.dport.lo), u64::from(r.dport.hi)),
        ];
        for (bits, off, lo, hi) in ranges {
            if lo == 0 && hi == (1u64 << bits) - 1 {
                continue;
            }
            let h = field(&mut val, &mut s, bits, off);
            if lo == hi {
                fails.push(val(&mut s, "u64", format!("xor {h}, {lo}")));
            } else {
                let below = val(&mut s, "u64", format!("sub {h}, {lo}"));
                let top = val(&mut s, "u64", format!("iconst {hi}"));
                let above = val(&mut s, "u64", format!("sub {top}, {h}"));
                let out = val(&mut s, "u64", format!("or {below}, {above}"));
                fails.push(val(&mut s, "u64", format!("lshr {out}, 63")));
            }
        }
        for (k, p) in [r.src, r.src, r.dst, r.dst].iter().enumerate() {
            let half = (k % 2) * 8;
            let m = mask16(p.len);
            let a = p.canonical().addr;
            let word = |b: &[u8; 16]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[half..half + 8]);
                u64::from_le_bytes(w)
            };
            let (mw, aw) = (word(&m), word(&a));
            if mw == 0 {
                continue;
            }
            let h = field(&mut val, &mut s, 64, 16 + 8 * k);
            let mv = val(&mut s, "u64", format!("iconst {mw}"));
            let x = val(&mut s, "u64", format!("and {h}, {mv}"));
            let av = val(&mut s, "u64", format!("iconst {aw}"));
            fails.push(val(&mut s, "u64", format!("xor {x}, {av}")));
        }
        let mut acc: Option<String> = None;
        for f in fails {
            acc = Some(match acc {
                None => f,
                Some(a) => val(&mut s, "u64", format!("or {a}, {f}")),
            });
        }
        match acc {
            Some(a) => {
                let _ = writeln!(s, "    br ne {a}, 0, block{after}, block{found}");
            }
            None => {
                let _ = writeln!(s, "    jump block{found}");
            }
        }
        let _ = writeln!(s, "block{found}:");
        let idx = val(&mut s, "u64", format!("iconst {i}"));
        let _ = writeln!(s, "    store.u32 [v1+0], {idx}");
        let two = val(&mut s, "i64", "iconst 2".into());
        let _ = writeln!(s, "    return {two}");
    }
    let _ = writeln!(s, "block{block}:");
    let none = val(&mut s, "u64", format!("iconst {NO_MATCH}"));
    let _ = writeln!(s, "    store.u32 [v1+0], {none}");
    let two = val(&mut s, "i64", "iconst 2".into());
    let _ = writeln!(s, "    return {two}");
    s.push_str("}\n");
    s
}
