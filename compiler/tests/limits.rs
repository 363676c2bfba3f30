//! Filters beyond what the kernel accepts are refused at compile time, with a span, instead
//! of at load time with a verifier log.

use pol_compiler::diag::render_all;
use pol_compiler::driver;

/// `n` rules that stay code: a flag test (`tcp.syn`) is nothing a rule map or the
/// classifier holds (`ip.dst == A and tcp.dport == 80` goes to the classifier).
fn code_rules(n: u32) -> String {
    let mut src = String::from("filter f on xdp(\"eth0\") {\n");
    for i in 0..n {
        src.push_str(&format!(
            "    drop ip.dst == 10.{}.{}.1 and tcp.syn\n",
            i / 250,
            i % 250
        ));
    }
    src.push_str("    default pass\n}\n");
    src
}

#[test]
fn too_many_code_rules_is_a_compile_error_at_the_filter() {
    let src = code_rules(4000);
    let diags = driver::compile(&src).expect_err("refused");
    let text = render_all(&diags, "f.pol", &src);
    assert!(text.contains("[L0601]"), "{text}");
    assert!(text.contains("16-bit"), "{text}");
    assert!(
        text.contains("filter f on xdp(\"eth0\")"),
        "the label is on the filter's header: {text}"
    );
}

#[test]
fn one_rule_with_too_many_jumps_is_a_compile_error_at_the_rule() {
    let set: Vec<String> = (0..8100).map(|i| format!("{}", i % 65000)).collect();
    let src = format!(
        "filter f on xdp(\"eth0\") {{\n    pass tcp.dport == 1 and tcp.sport in {{ {} }}\n    default drop\n}}\n",
        set.join(", ")
    );
    let diags = driver::compile(&src).expect_err("refused");
    let text = render_all(&diags, "f.pol", &src);
    assert!(
        text.contains("[L0601]") || text.contains("[L0602]"),
        "{text}"
    );
}

#[test]
fn many_code_rules_within_the_limits_compile() {
    assert!(driver::compile(&code_rules(2000)).is_ok());
}

#[test]
fn conjunctions_past_the_code_limit_compile_into_the_classifier() {
    let src = code_rules(4000).replace("and tcp.syn", "and tcp.dport == 80");
    let c = driver::compile(&src).unwrap_or_else(|d| panic!("{}", render_all(&d, "f.pol", &src)));
    assert!(c.maps.iter().any(|m| m.spec.name == "f_cls_rules"));
}
