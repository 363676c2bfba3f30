//! Analysis queries on fixtures that mark the cursor with `$0`.

use super::{analyze, CompletionKind, DefKind, SemanticKind, SymbolKind};
use crate::syntax::ast::FileId;

/// The fixture without its `$0`, and the offset of the marker.
fn cursor(fixture: &str) -> (String, usize) {
    let at = fixture.find("$0").expect("fixture has a $0");
    (fixture.replacen("$0", "", 1), at)
}

fn hover(fixture: &str) -> String {
    let (src, at) = cursor(fixture);
    analyze(&src)
        .hover(at)
        .map(|h| h.markdown)
        .unwrap_or_default()
}

fn completions(fixture: &str) -> Vec<String> {
    let (src, at) = cursor(fixture);
    let mut labels: Vec<String> = analyze(&src)
        .completions(at)
        .into_iter()
        .map(|c| c.label)
        .collect();
    labels.sort();
    labels
}

const EDGE: &str = r#"import std.net
const ssh: port = 22
# Sources we never want.
set blocked: cidr = { 203.0.113.0/24 }
filter edge on xdp("eth0") {
    drop ip.src in blocked count hits[ip.src]
    pass tcp.dport == ssh and ip.src in std.net.rfc1918
    drop ip.src in net.bogons count hits[ip.src]
    default pass
}
test "t" on edge {
    packet tcp { src: 192.0.2.1, dport: 22 } => drop count hits[192.0.2.1]
}
"#;

fn at(src: &str, needle: &str, nth: usize) -> usize {
    src.match_indices(needle).nth(nth).expect("needle").0
}

#[test]
fn hover_field_shows_type_and_doc() {
    let h = hover("filter f on xdp(\"e\") { drop tcp.dp$0ort == 22 default pass }");
    assert_eq!(h, "```pol\ntcp.dport: port\n```\n\nTCP destination port");
}

#[test]
fn hover_set_shows_declaration_count_and_doc() {
    let src = EDGE.replacen("in blocked", "in bl$0ocked", 1);
    let h = hover(&src);
    assert_eq!(
        h,
        "```pol\nset blocked: cidr\n```\n\n1 element\n\nSources we never want."
    );
}

#[test]
fn hover_std_set_says_where_it_comes_from() {
    let src = EDGE.replacen("std.net.rfc1918", "std.net.rfc$01918", 1);
    let h = hover(&src);
    assert!(
        h.starts_with("```pol\nset rfc1918: cidr\n```\n\n3 elements\n\nfrom `std.net`"),
        "{h}"
    );
    assert!(h.contains("RFC 1918"), "{h}");
}

#[test]
fn hover_const_counter_hook_keyword() {
    assert!(hover(&EDGE.replacen("== ssh", "== s$0sh", 1)).contains("const ssh: port = 22"));
    assert!(
        hover(&EDGE.replacen("count hits", "count h$0its", 1)).contains("one entry per `ip.src`")
    );
    assert!(hover(&EDGE.replacen("xdp(", "x$0dp(", 1)).contains("XDP"));
    assert!(hover(&EDGE.replacen("default pass", "def$0ault pass", 1)).contains("no rule matches"));
}

#[test]
fn definition_into_std_net() {
    let a = analyze(EDGE);
    let (file, span) = a
        .definition(at(EDGE, "rfc1918", 0) + 2)
        .expect("definition");
    assert_eq!(file, FileId::Std("std.net"));
    let text = crate::hir::stdlib::module("std.net").expect("std.net");
    assert_eq!(&text[span], "rfc1918");
    // The short name and the import itself lead into the module too.
    let (file, _) = a
        .definition(at(EDGE, "net.bogons", 0) + 5)
        .expect("short name");
    assert_eq!(file, FileId::Std("std.net"));
    let (file, span) = a.definition(at(EDGE, "std.net", 0) + 1).expect("import");
    assert_eq!((file, span), (FileId::Std("std.net"), 0..0));
}

#[test]
fn definition_and_references_of_local_names() {
    let a = analyze(EDGE);
    let decl = at(EDGE, "blocked", 0);
    let (file, span) = a.definition(at(EDGE, "blocked", 1)).expect("definition");
    assert_eq!((file, span.start), (FileId::Main, decl));
    assert_eq!(a.references(decl, true).len(), 2);
    assert_eq!(a.references(decl, false).len(), 1);
    // Counters: declared at their first count, used in the filter and the test.
    let hits = a.references(at(EDGE, "hits", 2), true);
    assert_eq!(hits.len(), 3);
    // A test's target is a reference to the filter.
    let (_, span) = a.definition(at(EDGE, "on edge", 0) + 4).expect("filter");
    assert_eq!(&EDGE[span], "edge");
}

#[test]
fn names_resolve_even_with_errors_elsewhere() {
    let src = "set s: port = { 22 }\nfilter f on xdp(\"e\") {\n    drop tcp.dport in s\n    drop tcp.dport == \n    default pass\n}\n";
    let a = analyze(src);
    assert!(a.diagnostics.iter().any(|d| d.code == "E0201"));
    let (_, span) = a
        .definition(at(src, "in s", 0) + 3)
        .expect("resolved despite the error");
    assert_eq!(span, 4..5);
    // The checker still ran: the HIR holds the set.
    assert_eq!(a.hir.sets.len(), 1);
}

#[test]
fn completes_fields_after_a_dot() {
    assert_eq!(
        completions("filter f on xdp(\"e\") { drop tcp.$0 }"),
        ["ack", "dport", "fin", "flags", "psh", "rst", "sport", "syn", "urg"]
    );
    assert_eq!(
        completions("filter f on xdp(\"e\") { drop udp.d$0 }"),
        ["dport", "sport"]
    );
}

#[test]
fn completes_std_names_modules_hooks_types() {
    let names = completions("import std.net\nfilter f on xdp(\"e\") { drop ip.src in std.net.$0 }");
    assert!(names.contains(&"rfc1918".to_string()) && names.contains(&"bogons".to_string()));
    assert_eq!(completions("import std.$0"), ["net", "ports"]);
    assert_eq!(completions("import $0"), ["std.net", "std.ports"]);
    assert_eq!(completions("filter f on $0"), ["tc", "xdp"]);
    assert!(completions("set s: $0").contains(&"cidr".to_string()));
    assert_eq!(
        completions("filter f on xdp(\"e\") { pass tcp => $0"),
        ["drop", "pass"]
    );
}

#[test]
fn completes_keywords_and_names_by_context() {
    let top = completions("const a = 1\n$0");
    assert!(top.contains(&"filter".to_string()) && !top.contains(&"pass".to_string()));
    let src = "const a: port = 1\nset s: port = { 1 }\nfilter f on xdp(\"e\") {\n    $0\n}";
    let (text, at) = cursor(src);
    let items = analyze(&text).completions(at);
    let kind = |l: &str| items.iter().find(|i| i.label == l).map(|i| i.kind);
    assert_eq!(kind("pass"), Some(CompletionKind::Keyword));
    assert_eq!(kind("s"), Some(CompletionKind::Set));
    assert_eq!(kind("a"), Some(CompletionKind::Const));
    assert_eq!(kind("tcp"), Some(CompletionKind::Field));
    assert_eq!(kind("filter"), None);
    let counters = completions("filter f on xdp(\"e\") { drop tcp count hits pass udp count $0 }");
    assert_eq!(counters, ["hits"]);
    assert!(completions("# a comment $0").is_empty());
}

#[test]
fn document_symbols_outline() {
    let a = analyze(EDGE);
    let syms = a.document_symbols();
    let kinds: Vec<(SymbolKind, &str)> = syms.iter().map(|s| (s.kind, s.name.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (SymbolKind::Module, "std.net"),
            (SymbolKind::Const, "ssh"),
            (SymbolKind::Set, "blocked"),
            (SymbolKind::Filter, "edge"),
            (SymbolKind::Test, "t"),
        ]
    );
    assert_eq!(syms[3].children.len(), 4);
    assert_eq!(
        syms[3].children[0].name,
        "drop ip.src in blocked count hits[ip.src]"
    );
}

#[test]
fn rename_set_everywhere_and_refuses_std_and_clashes() {
    let a = analyze(EDGE);
    let edits = a.rename(at(EDGE, "blocked", 1), "denied").expect("rename");
    let mut out = EDGE.to_string();
    for e in edits.iter().rev() {
        out.replace_range(e.span.clone(), &e.new_text);
    }
    assert!(!out.contains("blocked") && out.matches("denied").count() == 2);
    assert!(
        analyze(&out).diagnostics.is_empty(),
        "{:?}",
        analyze(&out).diagnostics
    );
    assert!(a.rename(at(EDGE, "rfc1918", 0), "x").is_err());
    assert!(a.rename(at(EDGE, "blocked", 0), "ssh").is_err());
    assert!(a.rename(at(EDGE, "blocked", 0), "filter").is_err());
    assert!(a.rename(at(EDGE, "blocked", 0), "two words").is_err());
    assert!(a.rename(at(EDGE, "ip.src", 0), "x").is_err());
}

#[test]
fn fixes_from_did_you_mean() {
    let src = "filter f on xdp(\"e\") {\n    drop ip.scr == 10.0.0.1\n    drop ip.src in net.rfc1918\n    default pass\n}\n";
    let a = analyze(src);
    let fixes = a.fixes();
    let titles: Vec<&str> = fixes.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(titles, ["Replace with `ip.src`", "Add `import std.net`"]);
    assert_eq!(&src[fixes[0].edits[0].span.clone()], "ip.scr");
    assert_eq!(fixes[1].edits[0].span, 0..0);
}

#[test]
fn semantic_tokens_classify_names() {
    let a = analyze(EDGE);
    let toks = a.semantic_tokens();
    let kind_at = |needle: &str| {
        let o = at(EDGE, needle, 0);
        toks.iter().find(|t| t.span.start == o).map(|t| t.kind)
    };
    assert_eq!(kind_at("import"), Some(SemanticKind::Keyword));
    assert_eq!(kind_at("# Sources"), Some(SemanticKind::Comment));
    assert_eq!(kind_at("blocked"), Some(SemanticKind::Variable));
    assert_eq!(kind_at("xdp"), Some(SemanticKind::Function));
    assert_eq!(kind_at("cidr"), Some(SemanticKind::Type));
    assert_eq!(kind_at("22"), Some(SemanticKind::Number));
    assert_eq!(kind_at("\"eth0\""), Some(SemanticKind::String));
    let dport = at(EDGE, "dport", 0);
    assert!(toks
        .iter()
        .any(|t| t.span.start == dport && t.kind == SemanticKind::Property));
    assert!(toks.windows(2).all(|w| w[0].span.start <= w[1].span.start));
}

#[test]
fn survives_garbage() {
    for src in [
        "",
        "filter",
        "filter f on xdp(\"e\") { drop tcp.",
        "\u{0}\u{1}\u{7f}ÿþ{{{{((((",
        "set s: cidr = { 10.0.0.0/8, ",
        "import std.net\nimport std.net\n",
        "test \"x\" on nothing { packet tcp { } => drop count nope }",
    ] {
        let a = analyze(src);
        for off in 0..=src.len() + 2 {
            let _ = a.hover(off);
            let _ = a.completions(off);
            let _ = a.definition(off);
            let _ = a.references(off, true);
            let _ = a.rename(off, "x");
        }
        let _ = a.document_symbols();
        let _ = a.semantic_tokens();
        let _ = a.fixes();
    }
    let a = analyze("set s: port = { 1 }");
    assert_eq!(a.defs.iter().filter(|d| d.kind == DefKind::Set).count(), 1);
}

/// A filter whose header does not parse keeps its body: the rules are checked (their own
/// errors reported, names resolved) and outlined, and later items are untouched.
#[test]
fn a_filter_with_a_broken_header_keeps_its_rules() {
    for header in [
        "filter on xdp(\"e\") {",
        "filter f xdp(\"e\") {",
        "filter f on {",
        "filter f on xdp(\"e\" {",
    ] {
        let src = format!(
            "set s: port = {{ 22 }}\n{header}\n    drop tcp.dport in s\n    drop tcp.dprt == 1\n    default pass\n}}\nconst after = 1\n"
        );
        let a = analyze(&src);
        let codes: Vec<&str> = a.diagnostics.iter().map(|d| d.code).collect();
        assert!(
            codes.contains(&"E0201"),
            "{header}: the header's syntax error: {codes:?}"
        );
        assert!(
            codes.contains(&"E0302"),
            "{header}: the misspelt field in its body is reported too: {codes:?}"
        );
        let (_, span) = a
            .definition(at(&src, "in s", 0) + 3)
            .unwrap_or_else(|| panic!("{header}: `s` in the body resolves"));
        assert_eq!(span, 4..5);
        let syms = a.document_symbols();
        let filter = syms
            .iter()
            .find(|s| s.kind == SymbolKind::Filter)
            .unwrap_or_else(|| panic!("{header}: the filter is outlined"));
        assert_eq!(filter.children.len(), 3, "{header}");
        assert!(
            syms.iter().any(|s| s.name == "after"),
            "{header}: the next item is kept"
        );
    }
}

/// Probes, security rules and test blocks whose header does not parse keep their body as
/// filters do: outlined with their statements or cases, names in them resolved, and the
/// items after them untouched.
#[test]
fn probes_rules_and_tests_with_a_broken_header_keep_their_body() {
    for (header, kind, children) in [
        (
            "probe on tracepoint(syscalls.sys_enter_openat {",
            SymbolKind::Probe,
            2,
        ),
        (
            "probe p tracepoint(syscalls.sys_enter_openat) {",
            SymbolKind::Probe,
            2,
        ),
        ("probe p on {", SymbolKind::Probe, 2),
        ("rule r exec {", SymbolKind::SecurityRule, 2),
        ("rule on exec( {", SymbolKind::SecurityRule, 2),
        ("test on f {", SymbolKind::Test, 1),
        ("test \"t\" f {", SymbolKind::Test, 1),
    ] {
        let body = if kind == SymbolKind::Test {
            "    packet tcp { dport: 22 } => drop count hits\n"
        } else {
            "    where pid == k\n    count by comm\n"
        };
        let src = format!(
            "const k = 1\nfilter f on xdp(\"e\") {{\n    drop tcp.dport == k count hits\n    default pass\n}}\n{header}\n{body}}}\nconst after = 1\n"
        );
        let a = analyze(&src);
        let codes: Vec<&str> = a.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == "E0201").count(),
            1,
            "{header}: one syntax error, for the header: {codes:?}"
        );
        assert!(
            !codes.contains(&"E0509") && !codes.contains(&"E0501"),
            "{header}: no error about the missing target or hook: {codes:?}"
        );
        let syms = a.document_symbols();
        let item = syms
            .iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("{header}: the item is outlined: {syms:?}"));
        assert!(
            item.name.contains("does not parse"),
            "{header}: {}",
            item.name
        );
        assert_eq!(item.children.len(), children, "{header}");
        assert!(
            syms.iter().any(|s| s.name == "after"),
            "{header}: the next item is kept"
        );
        if kind != SymbolKind::Test {
            let (_, span) = a
                .definition(at(&src, "== k\n    count", 0) + 3)
                .unwrap_or_else(|| panic!("{header}: `k` in the body resolves"));
            assert_eq!(span, 6..7);
        }
    }
}

fn probe_completions(fixture: &str) -> Vec<String> {
    let (src, at) = cursor(fixture);
    let catalog = crate::catalog::DirCatalog::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/catalog"),
    )
    .expect("fixture catalog");
    let mut labels: Vec<String> = analyze(&src)
        .completions_in(at, &catalog)
        .into_iter()
        .map(|c| c.label)
        .collect();
    labels.sort();
    labels
}

/// Probes complete from the catalog: hooks, tracepoint categories and names, the typed
/// arguments of the probe's own tracepoint, and the words of a probe body.
#[test]
fn completes_probe_hooks_tracepoints_and_arguments() {
    let hooks = probe_completions("probe p on $0");
    assert!(
        hooks.contains(&"tracepoint".to_string()) && !hooks.contains(&"xdp".to_string()),
        "{hooks:?}"
    );
    assert!(probe_completions("probe $0").contains(&"uprobe".to_string()));
    let cats = probe_completions("probe p on tracepoint($0");
    assert!(
        cats.contains(&"syscalls".to_string()) && cats.contains(&"sched".to_string()),
        "{cats:?}"
    );
    let names = probe_completions("probe p on tracepoint(syscalls.sys_enter_$0");
    assert!(
        names.contains(&"sys_enter_openat".to_string())
            && names.contains(&"sys_exit_read".to_string())
            && !names.contains(&"sched_switch".to_string()),
        "{names:?}"
    );
    let raw = probe_completions("probe p on raw_tracepoint($0");
    assert!(raw.contains(&"inet_sock_set_state".to_string()), "{raw:?}");
    // `args.` of the probe's tracepoint, also while the body does not parse yet.
    let args = probe_completions(
        "probe p on tracepoint(syscalls.sys_enter_openat) {\n    where args.$0\n}",
    );
    assert!(
        args.contains(&"filename".to_string()) && args.contains(&"flags".to_string()),
        "{args:?}"
    );
    let args =
        probe_completions("probe p on tracepoint(syscalls.sys_enter_read) {\n    sum(args.$0");
    assert!(args.contains(&"count".to_string()), "{args:?}");
    let body = probe_completions("probe p on tracepoint(syscalls.sys_enter_read) {\n    $0\n}");
    for w in ["count", "hist", "where", "comm", "pid", "args"] {
        assert!(body.contains(&w.to_string()), "{w}: {body:?}");
    }
    assert!(!body.contains(&"drop".to_string()), "{body:?}");
    // A filter after a probe completes as a filter again.
    let rule = completions(
        "probe p on tracepoint(syscalls.sys_enter_read) { count }\nfilter f on xdp(\"e\") { $0 }",
    );
    assert!(rule.contains(&"drop".to_string()), "{rule:?}");
}
