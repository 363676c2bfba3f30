//! Rule analysis at compile time: rules that can never match (W0539), rules whose kill
//! or deny an earlier rule already does on every event they match (W0540), and audited
//! rules whose events another rule enforces on (W0541), each a warning at the rule's
//! header; and files where none of that holds get no warning.

use pol_compiler::diag::Diagnostic;
use pol_compiler::driver;

fn warnings(src: &str) -> Vec<Diagnostic> {
    let (_, hir, diags) = driver::front(src);
    assert!(hir.is_some(), "{diags:#?}");
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    diags
}

/// The (code, text under the primary span, text under the secondary span) of each.
fn seen(src: &str) -> Vec<(&'static str, String, Option<String>)> {
    warnings(src)
        .iter()
        .map(|d| {
            let at = |i: usize| d.labels.get(i).map(|l| src[l.span.clone()].to_string());
            (d.code, at(0).unwrap_or_default(), at(1))
        })
        .collect()
}

fn list(n: usize) -> String {
    (0..n)
        .map(|i| format!("\"/opt/x{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn rules_that_can_never_match_are_w0539() {
    let cases = [
        "comm == \"a\" and comm == \"b\"",
        "port < 10 and port > 20",
        "uid == 0 and uid != 0",
        "(comm == \"a\" or comm == \"b\") and comm == \"c\"",
        "port in { 1, 2, 3 } and port == 4",
        "address == 10.0.0.1 and address == ::1",
        "starts_with(comm, \"py\") and comm == \"bash\"",
    ];
    for c in cases {
        let src = format!("rule r on connect {{\n    when {c}\n    action alert(\"x\")\n}}\n");
        assert_eq!(
            seen(&src),
            [("W0539", "rule r on connect".to_string(), None)],
            "{c}"
        );
    }
    let src = format!(
        "list l = {{ {} }}\nrule r on exec {{\n    when path in l and path == \"/opt/y\"\n    action alert(\"x\")\n}}\n",
        list(20)
    );
    assert_eq!(seen(&src)[0].0, "W0539", "a value outside a list");
    // Satisfiable ones: different fields, overlapping ranges, a value in the list.
    for c in [
        "comm == \"a\" and parent.comm == \"b\"",
        "port > 10 and port < 20",
        "uid == 0 or uid != 0",
        "comm == \"a\" or comm == \"b\"",
    ] {
        let src = format!("rule r on connect {{\n    when {c}\n    action alert(\"x\")\n}}\n");
        assert!(seen(&src).is_empty(), "{c}: {:?}", seen(&src));
    }
    let src = format!(
        "list l = {{ {} }}\nrule r on exec {{\n    when path in l and path == \"/opt/x3\"\n    action alert(\"x\")\n}}\n",
        list(20)
    );
    assert!(seen(&src).is_empty());
}

#[test]
fn a_kill_an_earlier_rule_always_does_is_w0540_at_the_later_rule() {
    let src = "rule shells on exec {\n    when comm in { \"sh\", \"bash\" }\n    action kill\n}\n\
               rule root_bash on exec {\n    when comm == \"bash\" and uid == 0\n    action kill, alert(\"root bash\")\n}\n\
               rule any_bash on exec {\n    when comm == \"bash\" or comm == \"zsh\"\n    action kill\n}\n";
    assert_eq!(
        seen(src),
        [(
            "W0540",
            "rule root_bash on exec".to_string(),
            Some("rule shells on exec".to_string())
        )],
        "any_bash also kills zsh: not shadowed"
    );
    let d = &warnings(src)[0];
    assert!(d.labels[1].message.starts_with("line 1: kills"), "{d:#?}");
    // An alert-only rule, or one on another kind, is not shadowed; nor is a deny under
    // a rule that only kills.
    let src = "rule a on connect {\n    when port == 22\n    action deny\n}\n\
               rule b on connect {\n    when port == 22 and uid == 0\n    action alert(\"root ssh\")\n}\n\
               rule c on bind {\n    when port == 22\n    action deny\n}\n";
    assert!(seen(src).is_empty(), "{:?}", seen(src));
    // Integer ranges imply wider ones.
    let src = "rule low on connect {\n    when port < 1024\n    action deny\n}\n\
               rule ssh on connect {\n    when port in { 22, 23 }\n    action deny\n}\n";
    assert_eq!(seen(src)[0].0, "W0540");
}

#[test]
fn an_audited_rule_whose_events_another_enforces_on_is_w0541() {
    let src =
        "rule trial on connect {\n    when port == 4444 and uid != 0\n    action audit, deny\n}\n\
               rule pool on connect {\n    when port in { 3333, 4444 }\n    action deny\n}\n";
    assert_eq!(
        seen(src),
        [(
            "W0541",
            "rule trial on connect".to_string(),
            Some("rule pool on connect".to_string())
        )]
    );
    // `audit` on a rule that only alerts does nothing.
    let src = "rule r on exec {\n    when comm == \"sh\"\n    action audit, alert(\"x\")\n}\n";
    assert_eq!(seen(src), [("W0538", "audit".to_string(), None)]);
}

#[test]
fn the_examples_have_no_warnings() {
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rules"))
        .expect("examples/rules")
    {
        let p = e.expect("entry").path();
        let src = std::fs::read_to_string(&p).expect("read");
        let w = warnings(&src);
        assert!(w.is_empty(), "{}: {w:#?}", p.display());
    }
}
