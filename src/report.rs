//! Human-readable reports: per-program resources, and listings of compiled objects.

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind};
use pol_compiler::bpf::{disasm, Insn};
use pol_compiler::driver::Compiled;
use pol_compiler::obj::{MapKind, MapSpec};
use std::fmt::Write as _;

/// Instructions, stack and maps of every program, and what the maps will cost the kernel.
pub fn resources(c: &Compiled) -> String {
    let mut s = String::new();
    let stages: Vec<String> = c
        .timings
        .iter()
        .map(|(stage, d)| format!("{stage} {:.1} ms", d.as_secs_f64() * 1000.0))
        .collect();
    let _ = writeln!(s, "compiled in {}", stages.join(", "));
    for p in &c.programs {
        let _ = writeln!(
            s,
            "program {:<16} {:>6} instructions  {:>4} conditional jumps  {:>3} B stack",
            p.name, p.resources.insns, p.resources.conditional_jumps, p.resources.stack_bytes
        );
    }
    // Maps created with BPF_F_NO_PREALLOC (LPM tries, keyed counters) take memory as
    // entries arrive: their figure is a ceiling, the others are taken at load.
    let (mut at_load, mut ceiling) = (0u64, 0u64);
    for m in &c.maps {
        let mem = map_memory(&m.spec);
        let lazy = m.spec.effective_flags() & 1 != 0;
        if lazy {
            ceiling += mem;
        } else {
            at_load += mem;
        }
        let _ = writeln!(
            s,
            "map     {:<16} {:<9} key {:>2} B  value {:>2} B  max {:>6}  {:>4} entries  {}{}",
            m.spec.name,
            kind_name(&m.spec.kind),
            m.spec.key.size(),
            m.spec.value.size(),
            m.spec.max_entries,
            m.entries.len(),
            if lazy { "up to " } else { "~" },
            human(mem)
        );
    }
    if !c.maps.is_empty() {
        let _ = writeln!(
            s,
            "maps take ~{} of kernel memory at load, and up to {} more as entries arrive",
            human(at_load),
            human(ceiling)
        );
    }
    s
}

/// Instructions and stack of every probe program, and its aggregation maps.
pub fn probes(out: &pol_compiler::probe::Output) -> String {
    let mut s = String::new();
    for p in &out.layout.probes {
        use pol_compiler::obj::ProbeAttach as A;
        let hook = match &p.attach {
            A::Tracepoint { category, name } => format!("tracepoint {category}:{name}"),
            A::RawTracepoint { name } => format!("raw_tracepoint {name}"),
            A::BtfTracepoint { name } => format!("tp_btf {name}"),
            A::Uprobe {
                binary,
                function,
                ret,
            } => format!(
                "{} {binary}:{function}",
                if *ret { "uretprobe" } else { "uprobe" }
            ),
            A::Profile { hz } => format!("profile {hz} Hz"),
        };
        let _ = writeln!(
            s,
            "probe {:<16} {:>6} instructions  {:>3} B stack of 512  ({hook})",
            if p.name.is_empty() {
                &p.program
            } else {
                &p.name
            },
            p.insns,
            p.stack,
        );
    }
    for (a, m) in out.layout.aggregations.iter().zip(&out.layout.maps) {
        let keys: Vec<&str> = a.key.iter().map(|k| k.name.as_str()).collect();
        let _ = writeln!(
            s,
            "map   {:<16} {:<13} key {:>2} B  value {:>2} B  max {:>6}  {} {}{}",
            m.name,
            match m.kind {
                MapKind::PercpuArray => "per-CPU array",
                _ => "per-CPU hash",
            },
            m.key_size,
            m.value_size,
            m.max_entries,
            a.display,
            serde_json::to_value(a.function)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(String::from))
                .unwrap_or_default(),
            if keys.is_empty() {
                String::new()
            } else {
                format!(" by {}", keys.join(", "))
            }
        );
    }
    s
}

fn kind_name(k: &MapKind) -> &'static str {
    match k {
        MapKind::Hash => "hash",
        MapKind::Array => "array",
        MapKind::PercpuArray => "percpu_array",
        MapKind::PercpuHash => "percpu_hash",
        MapKind::LruHash => "lru_hash",
        MapKind::LpmTrie => "lpm_trie",
        MapKind::RingBuf => "ringbuf",
        MapKind::StackTrace => "stack_trace",
    }
}

/// A rough estimate of a map's kernel memory, from the kernel's element layouts:
/// hash elements carry a ~48-byte header, LPM nodes ~40 bytes, values are 8-byte aligned.
fn map_memory(m: &MapSpec) -> u64 {
    let round8 = |n: u64| n.div_ceil(8) * 8;
    let (k, v, n) = (
        m.key.size() as u64,
        m.value.size() as u64,
        m.max_entries as u64,
    );
    match m.kind {
        MapKind::Array => round8(v) * n,
        MapKind::PercpuArray => round8(v) * n * cpus(),
        MapKind::Hash | MapKind::LruHash => (48 + round8(k) + round8(v)) * n,
        MapKind::PercpuHash => (48 + round8(k) + 8) * n + round8(v) * n * cpus(),
        MapKind::LpmTrie => (40 + k + v) * n,
        MapKind::RingBuf => n,
        // A bucket pointer per entry, plus each stored trace.
        MapKind::StackTrace => (8 + 16 + round8(v)) * n,
    }
}

fn cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Where each rule of each filter went: into a rule map (one lookup for all its keys), into
/// the classifier (conjunctions, searched table by table), or into code (tested in
/// order), with the reason.
pub fn explain(c: &Compiled) -> String {
    use pol_compiler::ir::groups::{self, Placement};
    let mut s = String::new();
    for f in &c.hir.filters {
        let plan = groups::plan(f);
        let in_maps = plan
            .placement
            .iter()
            .filter(|p| matches!(p, Placement::Map(_)))
            .count();
        let in_cls = plan
            .placement
            .iter()
            .filter(|p| matches!(p, Placement::Classifier(_)))
            .count();
        let _ = writeln!(
            s,
            "filter {}: {} rule{} in {} map{} (one lookup each), {} as code",
            f.name,
            in_maps,
            if in_maps == 1 { "" } else { "s" },
            plan.groups.len(),
            if plan.groups.len() == 1 { "" } else { "s" },
            f.rules.len() - in_maps - in_cls
        );
        if let Some(c) = &plan.classifier {
            let names = pol_compiler::classify::datapath::Names::of_filter(&f.name);
            let _ = writeln!(
                s,
                "  classifier ({}, {}, {}): {in_cls} rules in {} tables, {} buckets; a \
                 packet probes the tables in order of their first rule",
                names.descs,
                names.buckets,
                names.entries,
                c.classifier.tables.len(),
                c.classifier.buckets.len()
            );
        }
        for g in &plan.groups {
            let kind = if g.exact() { "hash" } else { "lpm_trie" };
            let _ = writeln!(
                s,
                "  map {} ({kind}): {} keys of `{}`",
                groups::map_name(&f.name, g),
                g.keys.len(),
                g.field.name
            );
        }
        // The rules the classifier's code tests ahead of its tables (its head).
        let head: Vec<u32> = plan
            .classifier
            .as_ref()
            .map(|c| c.ids[..c.classifier.head.min(c.ids.len())].to_vec())
            .unwrap_or_default();
        for (r, p) in f.rules.iter().zip(&plan.placement) {
            let place = match p {
                Placement::Classifier(_) if head.contains(&r.index) => format!(
                    "classifier: code ahead of its tables (its first {} rules: headers drawn \
                     inside the rules match there often)",
                    head.len()
                ),
                Placement::Map(gs) => {
                    let names: Vec<String> = gs
                        .iter()
                        .map(|&g| groups::map_name(&f.name, &plan.groups[g]))
                        .collect();
                    format!("map {}", names.join(", "))
                }
                Placement::Classifier(ts) if ts.is_empty() => {
                    "classifier: left out, an earlier rule in its bucket covers it".into()
                }
                Placement::Classifier(ts) => {
                    let ts: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
                    format!(
                        "classifier: table{} {}",
                        if ts.len() == 1 { "" } else { "s" },
                        ts.join(", ")
                    )
                }
                Placement::Code(why) => format!("code: {why}"),
            };
            let _ = writeln!(s, "  line {:>4}: {:<48} -> {place}", r.line, r.text);
        }
    }
    s
}

/// Lists every program of a compiled object, with map relocations by name.
pub fn disasm_object(bytes: &[u8]) -> Result<String, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
    if file.architecture() != object::Architecture::Bpf {
        return Err("not an eBPF object".into());
    }
    let mut out = String::new();
    for sym in file.symbols() {
        if sym.kind() != object::SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let section = file.section_by_index(idx).map_err(|e| e.to_string())?;
        if section.kind() != SectionKind::Text {
            continue;
        }
        let data = section.data().map_err(|e| e.to_string())?;
        let (start, len) = (sym.address() as usize, sym.size() as usize);
        let Some(code) = data.get(start..start + len) else {
            return Err(format!(
                "symbol {} lies outside its section",
                sym.name().unwrap_or("?")
            ));
        };
        let insns: Vec<Insn> = code
            .chunks_exact(8)
            .map(|c| Insn::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let mut relocs = Vec::new();
        for (off, rel) in section.relocations() {
            let off = off as usize;
            if off < start || off >= start + len {
                continue;
            }
            if let RelocationTarget::Symbol(si) = rel.target() {
                if let Ok(target) = file.symbol_by_index(si) {
                    relocs.push(((off - start) / 8, target.name().unwrap_or("?").to_string()));
                }
            }
        }
        let _ = writeln!(
            out,
            "program {} (section {}, {} instructions)",
            sym.name().unwrap_or("?"),
            section.name().unwrap_or("?"),
            insns.len()
        );
        out.push_str(&disasm::disassemble(&insns, &relocs, &[], &|_| {
            String::new()
        }));
        out.push('\n');
    }
    Ok(out)
}
