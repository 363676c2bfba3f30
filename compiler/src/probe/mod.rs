//! Tracing probes (issue 9): `probe NAME on HOOK { .. }` blocks checked into their own
//! HIR ([`hir`], [`check`]), lowered onto MIR ([`lower`]), compiled by `codegen` into one
//! object, and described in layout.json (attach points, aggregation schemas) so the
//! runtime reads and prints the maps without the compiler's types.

pub mod check;
pub mod hir;
pub mod lower;
pub mod ring;

use crate::codegen::{self, CodegenError, MAX_STACK};
use crate::diag::Diagnostic;
use crate::mir::Module;
use crate::obj::{
    self, AggFunction, AggregationLayout, EventsLayout, KeyFieldLayout, Layout, MapActionLayout,
    ProbeAttach, ProbeLayout, RecordLayout, ScheduleLayout, ValueWordLayout,
};
use hir::{AggFunc, Merge, ProbeHook, Probes, Ty};

/// A compiled probe file: its MIR, code, object and layout.
#[derive(Debug, Clone)]
pub struct Output {
    pub module: Module,
    pub code: codegen::Compiled,
    pub object: Vec<u8>,
    /// What the object holds, as data: the runtime loads probes from this directly
    /// (`pol_runtime::trace::load`), without parsing the ELF.
    pub spec: obj::ModuleSpec,
    pub layout: Layout,
}

/// Lowers, compiles and describes the probes; a program that does not fit the kernel's
/// limits is an error at its probe.
pub fn compile(probes: &Probes, source: &str) -> Result<Output, Vec<Diagnostic>> {
    let (module, tags) = lower::lower_tagged(probes);
    let code = codegen::compile(&module).map_err(|e| vec![diagnostic(probes, source, e)])?;
    let layout = layout(probes, &module, &code);
    let mut spec = codegen::object::module_spec(&module, &code);
    // Each statement's line over its code: `.BTF.ext` line_info (`bpftool prog dump
    // xlated` shows the .pol lines) and `pol disasm`'s comments.
    for ((p, tags), cf) in probes.probes.iter().zip(&tags).zip(&code.funcs) {
        if let Some(f) = spec.funcs.iter_mut().find(|f| f.name == p.symbol) {
            f.lines = lines(source, p, tags, cf);
        }
    }
    let object = obj::write_module(&spec).map_err(|e| {
        vec![Diagnostic::error(
            "I0003",
            format!("internal error: cannot write the object: {e}"),
            probes
                .probes
                .first()
                .map_or(0..0, |p| header(source, &p.span)),
        )]
    })?;
    Ok(Output {
        module,
        code,
        object,
        spec,
        layout,
    })
}

/// The source lines of `p`'s code: a line where a block's statement differs from the
/// one before (a block of no statement, the exit, under the probe's header), the first
/// at instruction 0 as the kernel wants.
fn lines(
    source: &str,
    p: &hir::Probe,
    tags: &[u32],
    cf: &codegen::CompiledFunc,
) -> Vec<obj::SourceLine> {
    let line_of = |at: usize| source.get(..at).map_or(0, |s| s.matches('\n').count()) + 1;
    let text_of = |line: usize| {
        source
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim()
            .replace('\0', "")
    };
    let header = line_of(p.span.start);
    let mut starts: Vec<(usize, usize)> = cf
        .code
        .block_starts
        .iter()
        .zip(&cf.code.block_mir)
        .filter(|&(&s, _)| s < cf.code.insns.len())
        .map(|(&s, &m)| {
            let step = tags.get(m as usize).copied().unwrap_or(0) as usize;
            let line = match step.checked_sub(1).and_then(|i| p.step_spans.get(i)) {
                Some(span) => line_of(span.start),
                None => header,
            };
            (s, line)
        })
        .collect();
    starts.sort_by_key(|&(s, _)| s);
    let mut out: Vec<obj::SourceLine> = Vec::new();
    for (insn, line) in starts {
        match out.last_mut() {
            Some(last) if last.insn == insn => {
                last.line = line as u32;
                last.text = text_of(line);
            }
            Some(last) if last.line as usize == line => {}
            _ => out.push(obj::SourceLine {
                insn,
                line: line as u32,
                col: 0,
                text: text_of(line),
            }),
        }
    }
    if let Some(first) = out.first_mut() {
        first.insn = 0;
    }
    out
}

fn header(source: &str, span: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let body = source
        .get(span.clone())
        .and_then(|s| s.find('{'))
        .unwrap_or(1);
    span.start..span.start + body.max(1)
}

fn diagnostic(probes: &Probes, source: &str, e: CodegenError) -> Diagnostic {
    let at = |func: &str| {
        probes
            .probes
            .iter()
            .find(|p| p.symbol == func)
            .map_or(0..0, |p| header(source, &p.span))
    };
    match e {
        CodegenError::StackTooLarge { func, bytes } => Diagnostic::error(
            "L0603",
            format!("this probe needs {bytes} bytes of stack, more than the kernel's {MAX_STACK}"),
            at(&func),
        )
        .with_label("its keys and values do not fit the stack")
        .with_help("each aggregation takes its key and value on the stack (strings 16 bytes each): split the probe or use fewer string keys"),
        CodegenError::CallChainStack { chain, bytes } => Diagnostic::error(
            "L0603",
            format!("call chain {chain} needs {bytes} bytes of stack, more than the kernel's {MAX_STACK}"),
            probes.probes.first().map_or(0..0, |p| header(source, &p.span)),
        ),
        other => {
            let func = match &other {
                CodegenError::Internal { func, .. } => func.clone(),
                _ => String::new(),
            };
            Diagnostic::error(
                "I0004",
                format!("internal error compiling probes: {other}"),
                probes
                    .probes
                    .iter()
                    .find(|p| p.symbol == func)
                    .or(probes.probes.first())
                    .map_or(0..0, |p| header(source, &p.span)),
            )
        }
    }
}

/// layout.json of a probe object.
pub fn layout(probes: &Probes, m: &Module, code: &codegen::Compiled) -> Layout {
    let spec = codegen::object::module_spec(m, code);
    let programs = probes
        .probes
        .iter()
        .map(|p| {
            let i = m.func_by_name(&p.symbol).map_or(0, |f| f.index());
            let (insns, stack) = code
                .funcs
                .get(i)
                .map_or((0, 0), |f| (f.code.insns.len(), f.frame.size));
            ProbeLayout {
                name: p.name.clone(),
                program: p.symbol.clone(),
                section: lower::mir_hook(&p.hook).section(),
                attach: match &p.hook {
                    ProbeHook::Tracepoint { category, name } => ProbeAttach::Tracepoint {
                        category: category.clone(),
                        name: name.clone(),
                    },
                    ProbeHook::RawTracepoint { name } => {
                        ProbeAttach::RawTracepoint { name: name.clone() }
                    }
                    ProbeHook::BtfTracepoint { name } => {
                        ProbeAttach::BtfTracepoint { name: name.clone() }
                    }
                    ProbeHook::Uprobe {
                        binary,
                        function,
                        ret,
                    } => ProbeAttach::Uprobe {
                        binary: binary.clone(),
                        function: function.clone(),
                        ret: *ret,
                    },
                    ProbeHook::Profile { hz } => ProbeAttach::Profile { hz: *hz },
                },
                insns,
                stack,
            }
        })
        .collect();
    let aggregations = probes
        .maps
        .iter()
        .map(|a| {
            let (offs, _) = a.key_layout();
            let mut key: Vec<KeyFieldLayout> = a
                .keys
                .iter()
                .zip(&offs)
                .map(|(k, &offset)| KeyFieldLayout {
                    name: k.name.clone(),
                    ty: match k.ty {
                        Ty::Str(_) if k.joined => "strings",
                        Ty::Str(_) => "string",
                        Ty::Stack { user: false } => "kstack",
                        Ty::Stack { user: true } => "ustack",
                        _ if k.cgroup => "cgroup",
                        _ if k.signed => "i64",
                        _ => "u64",
                    }
                    .into(),
                    offset,
                    size: k.size(),
                })
                .collect();
            if a.func.bucketed() {
                key.push(KeyFieldLayout {
                    name: "bucket".into(),
                    ty: "bucket".into(),
                    offset: offs.last().copied().unwrap_or(0),
                    size: 8,
                });
            }
            let value = a
                .func
                .value_words()
                .iter()
                .enumerate()
                .map(|(i, (name, merge))| ValueWordLayout {
                    name: (*name).into(),
                    offset: i as u32 * 8,
                    merge: match merge {
                        Merge::Sum => "sum",
                        Merge::Min => "min",
                        Merge::Max => "max",
                    }
                    .into(),
                })
                .collect();
            AggregationLayout {
                map: a.symbol.clone(),
                display: a.display.clone(),
                function: match a.func {
                    AggFunc::Count => AggFunction::Count,
                    AggFunc::Sum => AggFunction::Sum,
                    AggFunc::Min => AggFunction::Min,
                    AggFunc::Max => AggFunction::Max,
                    AggFunc::Avg => AggFunction::Avg,
                    AggFunc::Stats => AggFunction::Stats,
                    AggFunc::Hist => AggFunction::Hist,
                    AggFunc::Lhist { min, max, step } => AggFunction::Lhist { min, max, step },
                },
                per_cpu: true,
                key,
                value,
            }
        })
        .collect();
    let events = (!probes.events.is_empty()).then(|| EventsLayout {
        ring: lower::EVENTS_MAP.into(),
        lost: lower::LOST_MAP.into(),
        records: probes
            .events
            .iter()
            .map(|e| {
                let (offs, size) = e.layout();
                RecordLayout {
                    probe: e.probe.clone(),
                    size,
                    fields: e
                        .fields
                        .iter()
                        .zip(offs)
                        .map(|(f, offset)| KeyFieldLayout {
                            name: f.name.clone(),
                            ty: match f.ty {
                                Ty::Str(_) if f.joined => "strings",
                                Ty::Str(_) => "string",
                                _ if f.cgroup => "cgroup",
                                _ if f.signed => "i64",
                                _ => "u64",
                            }
                            .into(),
                            offset,
                            size: f.size(),
                        })
                        .collect(),
                    format: e.format.clone(),
                }
            })
            .collect(),
    });
    let stacks = m
        .map_by_name(lower::STACKS_MAP)
        .map(|_| lower::STACKS_MAP.to_string());
    Layout {
        schema: obj::SCHEMA,
        license: spec.license.clone(),
        stacks,
        programs: Vec::new(),
        maps: spec.maps.iter().map(obj::map_layout).collect(),
        probes: programs,
        aggregations,
        schedule: probes
            .schedule
            .iter()
            .map(|s| ScheduleLayout {
                when: match s.when {
                    hir::When::Begin => "begin",
                    hir::When::End => "end",
                    hir::When::Interval(_) => "interval",
                }
                .into(),
                every_ns: match s.when {
                    hir::When::Interval(ns) => Some(ns),
                    _ => None,
                },
                actions: s
                    .actions
                    .iter()
                    .map(|(a, m)| MapActionLayout {
                        op: match a {
                            hir::MapAction::Print => "print",
                            hir::MapAction::Clear => "clear",
                            hir::MapAction::Text => "text",
                        }
                        .into(),
                        map: match a {
                            hir::MapAction::Text => String::new(),
                            _ => probes
                                .maps
                                .get(*m)
                                .map_or(String::new(), |d| d.symbol.clone()),
                        },
                        text: match a {
                            hir::MapAction::Text => s.texts.get(*m).cloned(),
                            _ => None,
                        },
                    })
                    .collect(),
            })
            .collect(),
        events,
    }
}

/// `pol disasm` of a probe (or rule) file: each program under a heading naming its probe,
/// section and attach point, then its instructions (map loads show the map's name).
pub fn disassembly(out: &Output) -> String {
    let mut text = String::new();
    for f in &out.spec.funcs {
        let probe = out.layout.probes.iter().find(|p| p.program == f.name);
        let heading = match probe {
            Some(p) if !p.name.is_empty() => format!("probe {}", p.name),
            Some(_) => "probe (anonymous)".to_string(),
            None => "subprogram".to_string(),
        };
        text.push_str(&format!(
            "{heading}: program {} (section {}, {} instructions)\n",
            f.name,
            f.section.as_deref().unwrap_or(".text"),
            f.insns.len()
        ));
        let relocs: Vec<(usize, String)> = f
            .map_relocs
            .iter()
            .map(|r| (r.insn_index, r.map.clone()))
            .chain(f.calls.iter().map(|(s, g)| (*s, format!("call {g}"))))
            .chain(f.func_addrs.iter().map(|(s, g)| (*s, format!("&{g}"))))
            .collect();
        let marks: Vec<(usize, u32)> = f.lines.iter().map(|l| (l.insn, l.line)).collect();
        let text_of = |line: u32| {
            f.lines
                .iter()
                .find(|l| l.line == line)
                .map(|l| format!("line {line}: {}", l.text))
                .unwrap_or_default()
        };
        text.push_str(&crate::bpf::disasm::disassemble(
            &f.insns, &relocs, &marks, &text_of,
        ));
        text.push('\n');
    }
    text
}
