//! What hover says: the documentation of keywords, hooks and types, declarations' doc
//! comments, and the markdown for each kind of target.

use super::{Analysis, DefKind, Target};
use crate::hir::check::NameKind;
use crate::syntax::ast::{FileId, Span};
use crate::syntax::lexer::Tok;

/// Hooks and hook arguments, with their documentation.
pub const HOOKS: &[(&str, &str)] = &[
    (
        "xdp",
        "`xdp(\"IFACE\")`: runs on every frame the interface receives, before the kernel's \
         network stack (XDP). Fastest place to drop.",
    ),
    (
        "tc",
        "`tc(\"IFACE\", ingress|egress)`: runs in the traffic-control layer (TCX or clsact), \
         on received (`ingress`) or sent (`egress`) packets.",
    ),
    ("ingress", "Packets the interface receives."),
    ("egress", "Packets the interface sends."),
];

/// Hooks of probes, with their documentation.
pub const PROBE_HOOKS: &[(&str, &str)] = &[
    (
        "tracepoint",
        "`tracepoint(CATEGORY.NAME)`: a kernel tracepoint (`pol list 'syscalls:*'`); its \
         arguments are `args.NAME`, typed from its format file.",
    ),
    (
        "raw_tracepoint",
        "`raw_tracepoint(NAME)`: a raw tracepoint, arguments typed from the kernel's BTF.",
    ),
    (
        "tp_btf",
        "`tp_btf(NAME)`: a BTF-typed raw tracepoint, arguments typed from the kernel's BTF.",
    ),
    (
        "uprobe",
        "`uprobe(\"BINARY\", FUNCTION)`: entry of a function of a user-space binary.",
    ),
    (
        "uretprobe",
        "`uretprobe(\"BINARY\", FUNCTION)`: return of a function of a user-space binary.",
    ),
    (
        "profile",
        "`profile(HZ)`: samples every CPU HZ times a second (software cpu-clock).",
    ),
    (
        "interval",
        "`interval(1s)`: runs in `pol run` every period, to `print` or `clear` maps.",
    ),
    (
        "begin",
        "`begin`: once, when `pol run` has attached every probe.",
    ),
    (
        "end",
        "`end`: once, when `pol run` stops; chooses what is printed.",
    ),
    (
        "kprobe",
        "`kprobe(FUNCTION)`: a kernel function's entry. Needs a kernel with kprobes.",
    ),
    (
        "fentry",
        "`fentry(FUNCTION)`: a kernel function's entry through BTF. Needs a kernel with fentry.",
    ),
    (
        "lsm",
        "`lsm(HOOK)`: a Linux security module hook. Needs a kernel with BPF LSM.",
    ),
];

/// Statements and functions of a probe body, with their documentation.
pub const PROBE_WORDS: &[(&str, &str)] = &[
    (
        "where",
        "`where EXPR`: the statements after it run only when EXPR holds.",
    ),
    (
        "count",
        "`count by KEY, ... into MAP`: counts events per key.",
    ),
    ("sum", "`sum(EXPR) by KEY into MAP`: adds up EXPR per key."),
    (
        "min",
        "`min(EXPR) by KEY into MAP`: the smallest EXPR per key.",
    ),
    (
        "max",
        "`max(EXPR) by KEY into MAP`: the largest EXPR per key.",
    ),
    (
        "avg",
        "`avg(EXPR) by KEY into MAP`: the average of EXPR per key.",
    ),
    (
        "stats",
        "`stats(EXPR) by KEY into MAP`: count, average and total per key.",
    ),
    (
        "hist",
        "`hist(EXPR) by KEY into MAP`: a power-of-two histogram of EXPR.",
    ),
    (
        "lhist",
        "`lhist(EXPR, MIN, MAX, STEP) by KEY into MAP`: a linear histogram of EXPR.",
    ),
    (
        "emit",
        "`emit { field: EXPR, ... }`: sends a record to `pol run`, which prints it.",
    ),
    ("delete", "`delete MAP[KEY]`: removes a map entry."),
    (
        "str",
        "`str(PTR)`, `str(PTR, N)`: the string PTR points to, at most N bytes.",
    ),
    ("by", "`... by KEY, KEY`: the key of an aggregation."),
    ("into", "`... into MAP`: the map an aggregation fills."),
    ("and", "Both conditions."),
    ("or", "Either condition."),
    ("not", "The condition does not hold."),
];

/// Type names, with their documentation.
pub const TYPES: &[(&str, &str)] = &[
    ("bool", "`true` or `false`."),
    ("u8", "An unsigned 8-bit integer (0..255)."),
    ("u16", "An unsigned 16-bit integer (0..65535)."),
    ("u32", "An unsigned 32-bit integer."),
    ("u64", "An unsigned 64-bit integer."),
    ("port", "A TCP or UDP port: 0..65535."),
    ("ip4", "An IPv4 address: `192.0.2.1`."),
    ("ip6", "An IPv6 address: `2001:db8::1`."),
    ("ip", "An IPv4 or IPv6 address."),
    (
        "cidr",
        "An address prefix of either family: `10.0.0.0/8`, `2001:db8::/32` (a plain address is a full-length prefix).",
    ),
    ("str", "`str<N>`: a string of at most N bytes."),
    ("bytes", "`bytes<N>`: N bytes."),
];

/// Keywords, with their documentation.
pub const KEYWORDS: &[(&str, &str)] = &[
    ("import", "`import std.net`: makes a standard-library module's sets and constants usable as `std.net.NAME` or `net.NAME`."),
    ("const", "`const NAME: TYPE = VALUE`: a named value."),
    ("set", "`set NAME: TYPE = { ... }` or `= file(\"NAME\")`: a named set of values, prefixes or ranges. Large sets become kernel maps."),
    ("filter", "`filter NAME on HOOK { rules }`: first-match packet rules; the first rule whose condition holds decides."),
    ("probe", "`probe NAME on tracepoint(CATEGORY.NAME) { ... }`: a tracing probe; `pol run` attaches it and prints its maps (docs/probes.md)."),
    ("delete", "`delete NAME[KEYS]`: removes a variable's entry (probes)."),
    ("rule", "`rule NAME on HOOK { ... }`: a security rule (parsed; not compiled yet)."),
    ("test", "`test \"NAME\" on FILTER { packet ... => VERDICT }`: packets run through the filter by `pol test`."),
    ("on", "Names the hook (or, in a test, the filter)."),
    ("default", "`default pass|drop`: what happens to a packet no rule matches. Every filter has one."),
    ("malformed", "`malformed pass|drop`: what happens to truncated or inconsistent packets (default: drop)."),
    ("pass", "Lets the packet through."),
    ("drop", "Drops the packet."),
    ("count", "`count NAME` or `count NAME[FIELD]`: counts the packets the rule decides, in a kernel map (per field value when keyed)."),
    ("log", "`log` after a filter rule's counts: a flow event per packet the rule decides (5-tuple, interface, verdict, rule line, ct state), at most 1,000 a second; `pol run` prints them."),
    ("by", "`count by EXPR into NAME` (probes)."),
    ("into", "`count by EXPR into NAME` (probes)."),
    ("where", "`where EXPR`: a probe's condition."),
    ("when", "`when EXPR`: a security rule's condition."),
    ("unless", "`unless EXPR`: a security rule's exception: the rule does not match when it holds."),
    ("list", "`list NAME = { \"sh\", \"bash\" }`: a named list security rules test with `in` (as Falco's lists)."),
    ("macro", "`macro NAME = CONDITION`: a named condition security rules use by name (as Falco's macros)."),
    ("emit", "`emit { ... }`: sends a record to user space (probes)."),
    ("action", "`action kill, alert(\"...\")`: what a security rule does."),
    ("packet", "`packet LAYERS { field: value, ... } => VERDICT`: a test packet."),
    ("and", "Both conditions hold."),
    ("or", "Either condition holds."),
    ("not", "The condition does not hold."),
    ("in", "`FIELD in SET`: membership in a set, a set literal, a prefix or a range."),
    ("true", "The boolean true."),
    ("false", "The boolean false."),
];

pub(super) fn keyword(tok: &Tok) -> Option<&'static str> {
    let word = keyword_word(tok)?;
    KEYWORDS.iter().find(|(k, _)| *k == word).map(|(_, d)| *d)
}

/// The text of a keyword token.
pub(super) fn keyword_word(tok: &Tok) -> Option<&'static str> {
    Some(match tok {
        Tok::Import => "import",
        Tok::Const => "const",
        Tok::Set => "set",
        Tok::Filter => "filter",
        Tok::Probe => "probe",
        Tok::Rule => "rule",
        Tok::Test => "test",
        Tok::On => "on",
        Tok::Default => "default",
        Tok::Malformed => "malformed",
        Tok::Pass => "pass",
        Tok::Drop => "drop",
        Tok::Count => "count",
        Tok::By => "by",
        Tok::Into => "into",
        Tok::Where => "where",
        Tok::When => "when",
        Tok::Unless => "unless",
        Tok::List => "list",
        Tok::Macro => "macro",
        Tok::Emit => "emit",
        Tok::Delete => "delete",
        Tok::Log => "log",
        Tok::Action => "action",
        Tok::Packet => "packet",
        Tok::And => "and",
        Tok::Or => "or",
        Tok::Not => "not",
        Tok::In => "in",
        Tok::True => "true",
        Tok::False => "false",
        _ => return None,
    })
}

/// The comment lines right above the line holding `start` (no blank line between).
pub(super) fn doc_comment(source: &str, comments: &[Span], start: usize) -> Option<String> {
    let line_start = source.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    let mut next = line_start;
    let before = comments.partition_point(|c| c.end <= line_start);
    for c in comments.get(..before).unwrap_or(&[]).iter().rev() {
        // The comment must fill its line and end right before `next`.
        let own_line = source.get(..c.start)?.rfind('\n').map_or(0, |i| i + 1);
        let before = source.get(own_line..c.start)?;
        if c.end + 1 != next || !before.trim().is_empty() {
            break;
        }
        let text = source.get(c.clone())?;
        let text = text
            .strip_prefix('#')
            .or_else(|| text.strip_prefix("//"))
            .unwrap_or(text);
        lines.push(text.trim().to_string());
        next = own_line;
    }
    lines.reverse();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn code(text: &str) -> String {
    format!("```pol\n{text}\n```")
}

pub(super) fn hover_target(a: &Analysis, t: Target) -> String {
    match t {
        Target::Field(f) => format!("{}\n\n{}", code(&format!("{}: {}", f.name, f.ty)), f.doc),
        Target::Hook(h) => HOOKS
            .iter()
            .find(|(n, _)| *n == h)
            .map_or(String::new(), |(_, d)| d.to_string()),
        Target::Type(ty) => format!(
            "{}\n\n{}",
            code(&format!("type {ty}")),
            TYPES.iter().find(|(n, _)| *n == ty).map_or("", |(_, d)| d)
        ),
        Target::Def(i) => {
            let Some(d) = a.defs.get(i) else {
                return String::new();
            };
            let mut parts = vec![code(&d.detail)];
            match d.kind {
                DefKind::Set => {
                    let n = match d.file {
                        FileId::Main => a.hir.sets.iter().find(|s| s.span == d.full),
                        FileId::Std(m) => {
                            let short = m.rsplit('.').next().unwrap_or(m);
                            let name = format!("{short}_{}", d.name);
                            a.hir.sets.iter().find(|s| s.name == name)
                        }
                    }
                    .map(|s| s.values.len());
                    if let Some(n) = n {
                        parts.push(format!("{n} element{}", if n == 1 { "" } else { "s" }));
                    }
                }
                DefKind::Const => {
                    let typed = a
                        .names
                        .values()
                        .find(|n| n.file == d.file && n.span == d.span)
                        .and_then(|n| match n.kind {
                            NameKind::Const(ty) => Some(ty),
                            _ => None,
                        });
                    if let Some(ty) = typed {
                        parts.push(format!("of type `{ty}`"));
                    }
                }
                DefKind::Counter => {
                    if let Some(c) = a.hir.counters.iter().find(|c| c.name == d.name) {
                        parts.push(match c.key {
                            Some(f) => {
                                format!("a counter map with one entry per `{}` ({})", f.name, f.ty)
                            }
                            None => "a counter".to_string(),
                        });
                    }
                }
                DefKind::Filter => {
                    let rules = a
                        .hir
                        .filters
                        .iter()
                        .find(|f| f.name == d.name)
                        .map(|f| f.rules.len());
                    if let Some(n) = rules {
                        parts.push(format!(
                            "{n} rule{} and a default",
                            if n == 1 { "" } else { "s" }
                        ));
                    }
                }
                _ => {}
            }
            if let FileId::Std(m) = d.file {
                if d.kind != DefKind::Module {
                    parts.push(format!("from `{m}`"));
                }
            }
            if let Some(doc) = &d.doc {
                parts.push(doc.clone());
            }
            parts.join("\n\n")
        }
    }
}
