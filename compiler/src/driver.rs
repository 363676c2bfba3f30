//! The pipeline in one place: source → AST → HIR → IR → instructions → ELF + layout.
//!
//! Each stage stops the pipeline when it reports an error, so later stages never see a
//! half-checked program and the user never sees an error caused by an earlier one.

use crate::bpf::disasm;
use crate::bpf::Insn;
use crate::catalog::{Catalog, NoCatalog};
use crate::check::{self, Resources};
use crate::codegen::CodegenError;
use crate::diag::{has_errors, Diagnostic};
use crate::hir::check::{FileReader, Names};
use crate::hir::{self, Hir, Hook};
use crate::ir::{self, cfg, lower::MapDef};
use crate::ir::{SRC_DECIDE, SRC_DEFAULT, SRC_MALFORMED, SRC_PARSER};
use crate::obj::{
    self, AttachSpec, MapReloc, ObjectSpec, ProgramSpec, RuleInfo, SourceLine, StatsInfo,
    TcDirection,
};
use crate::syntax::{self, ast};
use std::time::{Duration, Instant};

/// Everything the compiler produced for one source file.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub ast: ast::File,
    pub hir: Hir,
    pub programs: Vec<Program>,
    pub maps: Vec<MapDef>,
    pub spec: ObjectSpec,
    /// The ELF object.
    pub object: Vec<u8>,
    /// Warnings (errors stop the pipeline).
    pub warnings: Vec<Diagnostic>,
    /// A file of probes: its MIR, code and layout (`object` is its ELF; `programs`,
    /// `maps` and `spec` are empty).
    pub probes: Option<crate::probe::Output>,
    /// A file of security rules: what alerts need (its programs are in `probes`).
    pub rules: Option<crate::rule::RulesLayout>,
    /// How long each stage took, in pipeline order (`pol build` prints them).
    pub timings: Vec<(&'static str, Duration)>,
    /// Filters whose programs call subprograms (the classifier): the module the ELF
    /// object was written from, which the direct loader links with BTF func_info.
    pub module: Option<obj::ModuleSpec>,
}

#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub ir: ir::Function,
    pub insns: Vec<Insn>,
    pub map_relocs: Vec<(usize, String)>,
    pub marks: Vec<(usize, u32)>,
    pub resources: Resources,
}

/// The section of XDP programs.
pub const XDP_SECTION: &str = "xdp.frags";

/// The license the programs are under (GPL-compatible, so every helper is usable).
pub const LICENSE: &str = "GPL";

/// Parses and checks only (what an editor wants on every keystroke).
pub fn front(source: &str) -> (ast::File, Option<Hir>, Vec<Diagnostic>) {
    front_with(source, &hir::check::no_files)
}

/// `front`, with a reader for the files `file(..)` sets name.
pub fn front_with(
    source: &str,
    files: FileReader<'_>,
) -> (ast::File, Option<Hir>, Vec<Diagnostic>) {
    front_with_catalog(source, files, &NoCatalog)
}

/// `front_with`, checking probes against a catalog of the kernel's events (without one,
/// hooks are not looked up and `args.NAME` is an error).
pub fn front_with_catalog(
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn Catalog,
) -> (ast::File, Option<Hir>, Vec<Diagnostic>) {
    let (file, mut diags) = syntax::parse(source);
    if has_errors(&diags) {
        unknown_fields_beside_bad_literals(&file, source, files, catalog, &mut diags);
        return (file, None, diags);
    }
    let (hir, more, _) = hir::check::check_names_with(&file, source, files, catalog);
    diags.extend(more);
    let hir = (!has_errors(&diags)).then_some(hir);
    (file, hir, diags)
}

/// When every error is a literal that did not decode (`E01xx`), the tree around it is
/// sound: report the fields it names that do not exist too, in source order, so
/// `eth.sorc == 02:00:00:00:00:0g` says first that `eth.sorc` is unknown.
fn unknown_fields_beside_bad_literals(
    file: &ast::File,
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn Catalog,
    diags: &mut Vec<Diagnostic>,
) {
    if !diags
        .iter()
        .filter(|d| d.is_error())
        .all(|d| d.code.starts_with("E01"))
    {
        return;
    }
    let (_, more, _) = hir::check::check_names_with(file, source, files, catalog);
    diags.extend(more.into_iter().filter(|d| d.code == "E0302"));
    diags.sort_by_key(|d| {
        let s = d.primary_span();
        (s.start, s.end)
    });
}

/// What the front end knows of a file, errors or not: what editors work from.
#[derive(Debug, Clone)]
pub struct Front {
    pub ast: ast::File,
    /// The HIR of everything that checked; items with errors are left out of it.
    pub hir: Hir,
    /// Every declared name: its kind, type and defining file and span.
    pub names: Names,
    /// Syntax and check diagnostics, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and checks without stopping at errors: the checker runs on the recovered tree
/// (error nodes are skipped without new errors), and the HIR and name table are kept. The
/// CLI uses `front_with`, which stops at syntax errors so the user sees no echo of them.
pub fn front_full(source: &str, files: FileReader<'_>) -> Front {
    let (ast, mut diagnostics) = syntax::parse(source);
    // Editors run on the host whose kernel the probes are for.
    let (hir, more, names) =
        hir::check::check_names_with(&ast, source, files, &crate::catalog::HostCatalog);
    diagnostics.extend(more);
    diagnostics.sort_by_key(|d| {
        let s = d.primary_span();
        (s.start, s.end)
    });
    Front {
        ast,
        hir,
        names,
        diagnostics,
    }
}

/// Runs the whole pipeline. On failure, returns every diagnostic of the failing stage
/// (and the warnings before it).
pub fn compile(source: &str) -> Result<Compiled, Vec<Diagnostic>> {
    compile_with(source, &hir::check::no_files)
}

/// `compile`, with a reader for the files `file(..)` sets name (the CLI reads them
/// relative to the .pol file; the compiler does no IO of its own).
pub fn compile_with(source: &str, files: FileReader<'_>) -> Result<Compiled, Vec<Diagnostic>> {
    compile_with_catalog(source, files, &NoCatalog)
}

/// `compile_with`, checking probes against `catalog` (the CLI passes the running
/// kernel's, `catalog::HostCatalog`).
pub fn compile_with_catalog(
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn Catalog,
) -> Result<Compiled, Vec<Diagnostic>> {
    compile_file("", source, files, catalog)
}

/// `compile_with_catalog` of the file named `file` (as the user gave it): the object's
/// line_info names it, so `bpftool prog dump xlated ... linum` shows `file:line`.
pub fn compile_file(
    file_name: &str,
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn Catalog,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut c = compile_source(file_name, source, files, catalog)?;
    // Probes and security rules wrote their object from their own spec: name the file in
    // it and write it again (small files; filters name it as they write).
    if let (false, Some(out)) = (file_name.is_empty(), c.probes.as_mut()) {
        out.spec.source_file = file_name.to_owned();
        let o = obj::write_module(&out.spec).map_err(|e| vec![object_error(e, 0..0)])?;
        out.object = o.clone();
        c.object = o;
    }
    Ok(c)
}

fn object_error(e: obj::ObjError, span: std::ops::Range<usize>) -> Diagnostic {
    Diagnostic::error(
        "I0003",
        format!("internal error: cannot write the object: {e}"),
        span,
    )
}

/// A file of probes or security rules: compiled through `probe::Output` (MIR, code,
/// object and layout); a filter's own fields stay empty.
fn probe_file(
    ast: ast::File,
    hir: Hir,
    out: crate::probe::Output,
    rules: Option<crate::rule::RulesLayout>,
    warnings: Vec<Diagnostic>,
    timings: Vec<(&'static str, Duration)>,
) -> Compiled {
    Compiled {
        ast,
        hir,
        programs: Vec::new(),
        maps: Vec::new(),
        spec: ObjectSpec {
            license: LICENSE.into(),
            programs: Vec::new(),
            maps: Vec::new(),
        },
        object: out.object.clone(),
        warnings,
        probes: Some(out),
        rules,
        timings,
        module: None,
    }
}

fn compile_source(
    file_name: &str,
    source: &str,
    files: FileReader<'_>,
    catalog: &dyn Catalog,
) -> Result<Compiled, Vec<Diagnostic>> {
    let start = Instant::now();
    let (file, hir, mut diags) = front_with_catalog(source, files, catalog);
    let Some(hir) = hir else { return Err(diags) };
    let mut timings = vec![("front end", start.elapsed())];
    if !hir.probes.is_empty() {
        return match crate::probe::compile(&hir.probes, source) {
            Ok(out) => Ok(probe_file(file, hir, out, None, diags, timings)),
            Err(more) => {
                diags.extend(more);
                Err(diags)
            }
        };
    }
    if !hir.security.is_empty() {
        return match crate::rule::compile(&hir.security, source, catalog.kernel_types()) {
            Ok(out) => Ok(probe_file(
                file,
                hir,
                out.probes,
                Some(out.rules),
                diags,
                timings,
            )),
            Err(more) => {
                diags.extend(more);
                Err(diags)
            }
        };
    }

    let at = Instant::now();
    let (funcs, maps) = ir::lower::lower(&hir);
    timings.push(("rule IR", at.elapsed()));
    let (programs, module) = mir_programs(source, &hir, &funcs, &maps, &mut diags, &mut timings);
    if has_errors(&diags) {
        return Err(diags);
    }

    let at = Instant::now();
    let spec = object_spec(source, &hir, &programs, &maps);
    // Subprograms (a filter's classifier): the ELF keeps them in `.text` with call
    // relocations, which aya links; `Program::insns` holds the linked stream, and the
    // direct loader links `module` itself.
    let module = module.map(|mut m| {
        m.license = spec.license.clone();
        m.maps = spec.maps.clone();
        for f in m.funcs.iter_mut().filter(|f| f.section.is_some()) {
            f.section = spec
                .programs
                .iter()
                .find(|p| p.name == f.name)
                .map(|p| p.section.clone());
        }
        m
    });
    let module = module.map(|mut m| {
        m.source_file = file_name.to_owned();
        m
    });
    let written = match &module {
        Some(m) => obj::write_module(m),
        None => obj::module_of(&spec).and_then(|mut m| {
            m.source_file = file_name.to_owned();
            obj::write_module(&m)
        }),
    };
    let object = match written {
        Ok(o) => o,
        Err(e) => {
            let span = hir.filters.first().map(|f| f.span.clone()).unwrap_or(0..0);
            diags.push(object_error(e, span));
            return Err(diags);
        }
    };
    timings.push(("object", at.elapsed()));
    Ok(Compiled {
        ast: file,
        hir,
        programs,
        maps,
        spec,
        object,
        warnings: diags,
        probes: None,
        rules: None,
        timings,
        module,
    })
}

/// The back end: every filter's rule IR lowered onto MIR (`ir::to_mir`), optimised,
/// compiled by `codegen`, measured and limited.
fn mir_programs(
    source: &str,
    hir: &Hir,
    funcs: &[ir::Function],
    maps: &[MapDef],
    diags: &mut Vec<Diagnostic>,
    timings: &mut Vec<(&'static str, Duration)>,
) -> (Vec<Program>, Option<obj::ModuleSpec>) {
    let span = || hir.filters.first().map(|f| f.span.clone()).unwrap_or(0..0);
    for (filter, func) in hir.filters.iter().zip(funcs) {
        if let Err(e) = cfg::verify(func) {
            diags.push(Diagnostic::error(
                "I0002",
                format!("internal error: invalid IR for `{}`: {e}", filter.name),
                filter.span.clone(),
            ));
            return (Vec::new(), None);
        }
    }
    let filters: Vec<&hir::Filter> = hir.filters.iter().collect();
    let at = Instant::now();
    let needs: Vec<_> = hir
        .filters
        .iter()
        .map(|f| hir::needs::needs(hir, f))
        .collect();
    timings.push(("parser needs", at.elapsed()));
    // Small filters may keep fields in registers (`to_mir::REGISTER_RULES`): each is
    // compiled both ways and keeps the shorter code (constant fields passed on every edge
    // into the rules can cost more than the loads they save; a frame may overflow).
    let small = hir
        .filters
        .iter()
        .any(|f| f.rules.len() <= ir::to_mir::REGISTER_RULES);
    let mut variants = Vec::new();
    for registers in [false, true] {
        if registers && !small {
            break;
        }
        let at = Instant::now();
        let mut fm = match ir::to_mir::lower(&filters, funcs, maps, &needs, registers) {
            Ok(m) => m,
            Err(e) => {
                diags.push(Diagnostic::error(
                    "I0004",
                    format!("internal error: lowering onto MIR: {e}"),
                    span(),
                ));
                return (Vec::new(), None);
            }
        };
        timings.push((
            if registers {
                "MIR lowering (registers)"
            } else {
                "MIR lowering"
            },
            at.elapsed(),
        ));
        let at = Instant::now();
        let mut each = [Duration::ZERO; crate::mir::opt::PASSES.len()];
        let moved = crate::mir::opt::optimize_timed(&mut fm.module, &mut each);
        if !registers {
            for ((name, _), t) in crate::mir::opt::PASSES.iter().zip(each) {
                timings.push((name, t));
            }
        }
        timings.push((
            if registers {
                "MIR passes (registers)"
            } else {
                "MIR passes"
            },
            at.elapsed(),
        ));
        let at = Instant::now();
        let compiled = crate::codegen::compile(&fm.module);
        timings.push((
            if registers {
                "codegen (registers)"
            } else {
                "codegen"
            },
            at.elapsed(),
        ));
        variants.push((fm, moved, compiled));
    }
    let mut variants = variants.into_iter();
    let Some((mut fm, mut moved, mut compiled)) = variants.next() else {
        return (Vec::new(), None);
    };
    if let (Ok(c), Some((rfm, rmoved, Ok(rc)))) = (&mut compiled, variants.next()) {
        // Per filter (the first functions; classifiers after them are alike).
        let mine = fm
            .module
            .funcs
            .iter_mut()
            .zip(fm.tags.iter_mut())
            .zip(moved.iter_mut())
            .zip(c.funcs.iter_mut())
            .zip(c.chain_stack.iter_mut());
        let theirs = rfm
            .module
            .funcs
            .into_iter()
            .zip(rfm.tags)
            .zip(rmoved)
            .zip(rc.funcs)
            .zip(rc.chain_stack);
        for (((((f, t), m), cf), cs), ((((rf, rt), rm), rcf), rcs)) in
            mine.zip(theirs).take(hir.filters.len())
        {
            if rcf.code.insns.len() < cf.code.insns.len() {
                (*f, *t, *m, *cf, *cs) = (rf, rt, rm, rcf, rcs);
            }
        }
    }
    for (tags, map) in fm.tags.iter_mut().zip(moved) {
        let mut new = vec![SRC_PARSER; map.iter().flatten().count()];
        for (old, b) in map.iter().enumerate() {
            if let Some(b) = b {
                if let Some(slot) = new.get_mut(b.index()) {
                    *slot = tags.0.get(old).copied().unwrap_or(SRC_PARSER);
                }
            }
        }
        tags.0 = new;
    }
    let compiled = match compiled {
        Ok(c) => c,
        Err(CodegenError::JumpOutOfRange { func, from, to }) => {
            // A filter whose code spans more than a 16-bit jump: the user's to fix.
            let filter = hir.filters.iter().find(|f| f.name == func);
            let span = filter.map_or_else(span, |f| header_span(source, &f.span));
            diags.push(
                Diagnostic::error(
                    "L0601",
                    format!("filter `{func}` cannot be encoded: a jump from instruction {from} to {to} is longer than eBPF's 16-bit jump offsets reach"),
                    span,
                )
                .with_label("this filter is too long for eBPF's 16-bit jumps")
                .with_help("rules that stay code make it long: put their values in named sets (more than 8 elements become a map), or split the filter; `pol build --explain` shows which rules stay code"),
            );
            return (Vec::new(), None);
        }
        Err(e) => {
            diags.push(Diagnostic::error(
                "I0005",
                format!("internal error: MIR code generation: {e}"),
                span(),
            ));
            return (Vec::new(), None);
        }
    };
    let mut programs = Vec::new();
    // Subprograms (a filter's classifier): the module spec links each program with its
    // callees, as the kernel loads it, and later becomes the ELF's `.text`.
    let module = compiled
        .funcs
        .iter()
        .any(|cf| !cf.code.calls.is_empty() || !cf.code.func_addrs.is_empty())
        .then(|| crate::codegen::object::module_spec(&fm.module, &compiled));
    for ((((filter, func), (index, cf)), tags), chain) in hir
        .filters
        .iter()
        .zip(funcs)
        .zip(compiled.funcs.iter().enumerate())
        .zip(&fm.tags)
        .zip(&compiled.chain_stack)
    {
        // A mark where the source changes, at the first slot of each block (an edge
        // block's source is that of the MIR block it leaves).
        let mut starts: Vec<(usize, u32)> = cf
            .code
            .block_starts
            .iter()
            .zip(&cf.code.block_mir)
            .map(|(&s, &m)| (s, tags.0.get(m as usize).copied().unwrap_or(SRC_PARSER)))
            .collect();
        starts.sort_by_key(|&(s, _)| s);
        let mut marks: Vec<(usize, u32)> = Vec::new();
        for (s, t) in starts {
            if s >= cf.code.insns.len() {
                continue;
            }
            match marks.last_mut() {
                Some(last) if last.0 == s => last.1 = t,
                Some(last) if last.1 == t => {}
                _ => marks.push((s, t)),
            }
        }
        let (insns, map_relocs) = match &module {
            None => (cf.code.insns.clone(), cf.code.map_relocs.clone()),
            Some(m) => match obj::link::link(m, index) {
                Ok(l) => (
                    l.insns,
                    l.map_relocs
                        .into_iter()
                        .map(|r| (r.insn_index, r.map))
                        .collect(),
                ),
                Err(e) => {
                    diags.push(Diagnostic::error(
                        "I0005",
                        format!("internal error: linking `{}`: {e}", filter.name),
                        filter.span.clone(),
                    ));
                    continue;
                }
            },
        };
        let stack = (*chain).max(cf.frame.size) as usize;
        let resources = check::measure(&insns, &marks, stack);
        if let Some(d) = over_limits(&resources, filter, source) {
            diags.push(d);
            continue;
        }
        programs.push(Program {
            name: filter.name.clone(),
            ir: func.clone(),
            insns,
            map_relocs,
            marks,
            resources,
        });
    }
    (programs, module)
}

fn object_spec(source: &str, hir: &Hir, programs: &[Program], maps: &[MapDef]) -> ObjectSpec {
    let programs = hir
        .filters
        .iter()
        .zip(programs)
        .map(|(f, p)| {
            let (section, attach) = match &f.hook {
                // Multi-buffer aware (the parser measures frames with
                // `bpf_xdp_get_buff_len`), so it attaches natively to devices whose MTU
                // exceeds a page; libbpf, aya and iproute2 set the load flag for it.
                Hook::Xdp { iface } => (
                    XDP_SECTION,
                    AttachSpec::Xdp {
                        iface: iface.clone(),
                    },
                ),
                // aya 0.13 rejects a `tc` section; libbpf and aya both take `classifier`.
                Hook::Tc { iface, ingress } => (
                    "classifier",
                    AttachSpec::Tc {
                        iface: iface.clone(),
                        direction: if *ingress {
                            TcDirection::Ingress
                        } else {
                            TcDirection::Egress
                        },
                    },
                ),
            };
            ProgramSpec {
                name: p.name.clone(),
                section: section.into(),
                insns: p.insns.clone(),
                map_relocs: p
                    .map_relocs
                    .iter()
                    .map(|(i, m)| MapReloc {
                        insn_index: *i,
                        map: m.clone(),
                    })
                    .collect(),
                attach,
                rules: f
                    .rules
                    .iter()
                    .map(|r| RuleInfo {
                        index: r.index,
                        line: r.line,
                        text: r.text.clone(),
                        verdict: verdict_word(r.action.verdict).into(),
                    })
                    .collect(),
                stats: Some(StatsInfo {
                    map: ir::lower::stats_map_name(&f.name),
                    default_index: f.rules.len() as u32,
                    malformed_index: f.rules.len() as u32 + 1,
                }),
                lines: source_lines(source, f, &p.marks),
            }
        })
        .collect();
    ObjectSpec {
        license: LICENSE.into(),
        programs,
        maps: maps.iter().map(|m| m.spec.clone()).collect(),
    }
}

/// The source line of every run of instructions (`.BTF.ext` line_info): a rule's own line;
/// `default` and `malformed` their line in the filter when written, else the header's; the
/// parser and the shared tail the filter's header.
fn source_lines(source: &str, filter: &hir::Filter, marks: &[(usize, u32)]) -> Vec<SourceLine> {
    let line_of = |at: usize| source.get(..at).map_or(0, |s| s.matches('\n').count()) + 1;
    let text_of = |line: usize| {
        source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim()
            .replace('\0', "")
    };
    let header = line_of(filter.span.start);
    // The line of `default ...` / `malformed ...` inside the filter, if written.
    let keyword_line = |word: &str| {
        let body = source.get(filter.span.clone()).unwrap_or("");
        let mut off = 0;
        for l in body.split_inclusive('\n') {
            if l.trim_start().starts_with(word) {
                return line_of(filter.span.start + off);
            }
            off += l.len();
        }
        header
    };
    let mut out: Vec<SourceLine> = Vec::new();
    for &(insn, src) in marks {
        let line = match src {
            SRC_DEFAULT => keyword_line("default"),
            SRC_MALFORMED => keyword_line("malformed"),
            r => match filter.rules.iter().find(|x| x.index == r) {
                Some(rule) => rule.line as usize,
                None => header,
            },
        };
        if out.last().is_some_and(|l| l.line as usize == line) {
            continue;
        }
        out.push(SourceLine {
            insn,
            line: line as u32,
            col: 0,
            text: text_of(line),
        });
    }
    if let Some(first) = out.first_mut() {
        // The kernel wants a line for the program's first instruction.
        first.insn = 0;
    }
    out
}

/// `filter NAME on HOOK`: the part of a filter before its `{`, for diagnostics about the
/// whole filter.
fn header_span(source: &str, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let body = source
        .get(span.clone())
        .and_then(|s| s.find('{'))
        .unwrap_or(0);
    span.start..span.start + body.max(1)
}

pub fn verdict_word(v: ast::Verdict) -> &'static str {
    match v {
        ast::Verdict::Pass => "pass",
        ast::Verdict::Drop => "drop",
    }
}

impl Compiled {
    /// The disassembly of every program, each run of instructions under the rule it came from.
    pub fn disassembly(&self) -> String {
        if let Some(p) = &self.probes {
            return crate::probe::disassembly(p);
        }
        let mut out = String::new();
        for (p, f) in self.programs.iter().zip(&self.hir.filters) {
            let section = match f.hook {
                Hook::Xdp { .. } => XDP_SECTION,
                Hook::Tc { .. } => "classifier",
            };
            out.push_str(&format!(
                "program {} (section {section}, {} instructions)\n",
                p.name,
                p.insns.len()
            ));
            let text = |src: u32| match src {
                SRC_PARSER => "packet parser".to_string(),
                SRC_DEFAULT => "default".to_string(),
                SRC_MALFORMED => "malformed packet".to_string(),
                SRC_DECIDE => {
                    "count the decision in the statistics map, return the verdict".to_string()
                }
                ir::groups::RULE_MAPS => {
                    "rule maps: one lookup per key space, the first matching rule wins".to_string()
                }
                r => f
                    .rules
                    .get(r as usize)
                    .map(|rule| format!("line {}: {}", rule.line, rule.text))
                    .unwrap_or_default(),
            };
            out.push_str(&disasm::disassemble(
                &p.insns,
                &p.map_relocs,
                &p.marks,
                &text,
            ));
            out.push('\n');
        }
        out
    }
}

/// L0602 when a filter's program is beyond what the verifier accepts: at the rule when one
/// rule is the cause, else at the filter's header.
fn over_limits(resources: &Resources, filter: &hir::Filter, source: &str) -> Option<Diagnostic> {
    let limit = check::check(resources).err()?;
    let span = match filter.rules.get(resources.most_jumps.0 as usize) {
        Some(rule) if limit.message.starts_with("this rule") => rule.span.clone(),
        _ => header_span(source, &filter.span),
    };
    Some(
        Diagnostic::error("L0602", limit.message, span)
            .with_label("beyond what the kernel verifier accepts")
            .with_help(limit.help),
    )
}
