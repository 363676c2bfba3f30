//! Conjunctive rules go to the classifier (issue 11): ClassBench-shaped rule sets written
//! as `.pol` filters compile with their rules in the classifier, load (through aya, which
//! links the classifier's subprograms from `.text`, and through pol's direct loader, which
//! links them itself with BTF func_info), and give a plain first-match reference's verdict
//! for every trace header on both.

mod common;

use pol_compiler::classify::gen::{self, Shape};
use pol_compiler::classify::{self, Header, Rule};
use pol_compiler::driver;
use pol_compiler::ir::groups::{self, Placement};
use pol_runtime::direct::Object as _;
use pol_runtime::packet::Packet;
use pol_runtime::testrun;

fn addr(a: &[u8; 16]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// The rule as pol text: `ip4 and PROTO and ip.src in P and ... and PORT in LO..HI`.
fn pol_rule(r: &Rule) -> String {
    let mut tests = vec!["ip4".to_string()];
    let proto = (r.proto.lo == r.proto.hi).then_some(r.proto.lo);
    let l4 = match proto {
        Some(6) => Some("tcp"),
        Some(17) => Some("udp"),
        Some(1) => Some("icmp"),
        Some(p) => {
            tests.push(format!("ip.proto == {p}"));
            None
        }
        None => None,
    };
    if let Some(l) = l4 {
        tests.push(l.to_string());
    }
    for (name, p) in [("ip.src", r.src), ("ip.dst", r.dst)] {
        if p.len > 0 {
            tests.push(format!("{name} in {}/{}", addr(&p.addr), p.len));
        }
    }
    for (name, rg) in [("sport", r.sport), ("dport", r.dport)] {
        let Some(l) = l4.filter(|l| *l != "icmp") else {
            continue;
        };
        if rg.lo == rg.hi {
            tests.push(format!("{l}.{name} == {}", rg.lo));
        } else if (rg.lo, rg.hi) != (0, u16::MAX) {
            tests.push(format!("{l}.{name} in {}..{}", rg.lo, rg.hi));
        }
    }
    let verdict = if r.action == 0 { "drop" } else { "pass" };
    format!("    {verdict} {}\n", tests.join(" and "))
}

fn source(rules: &[Rule]) -> String {
    let mut s = String::from("filter cls on xdp(\"eth0\") {\n");
    for r in rules {
        s.push_str(&pol_rule(r));
    }
    s.push_str("    default pass\n}\n");
    s
}

fn packet(h: &Header) -> Option<Packet> {
    let p = match h.proto {
        6 => Packet::tcp().sport(h.sport).dport(h.dport),
        17 => Packet::udp().sport(h.sport).dport(h.dport),
        1 => Packet::icmp(),
        _ => return None,
    };
    Some(p.src(addr(&h.src).as_str()).dst(addr(&h.dst).as_str()))
}

/// The reference verdict: the generated rules are all IPv4 (family `V4`), ports only on
/// TCP and UDP rules, as `pol_rule` writes them.
fn expected(rules: &[Rule], h: &Header) -> &'static str {
    let mut h = *h;
    h.family = classify::V4;
    if h.proto == 1 {
        (h.sport, h.dport) = (0, 0);
    }
    match classify::reference(rules, &h) {
        Some(i) if rules[i].action == 0 => "drop",
        _ => "pass",
    }
}

#[test]
fn classbench_sets_compile_into_the_classifier() {
    for shape in Shape::ALL {
        let rules = gen::rules(shape, 300, 11);
        let src = source(&rules);
        let c = driver::compile(&src)
            .unwrap_or_else(|d| panic!("{}", pol_compiler::diag::render_all(&d, "t.pol", &src)));
        let plan = groups::plan(&c.hir.filters[0]);
        let code: Vec<_> = plan
            .placement
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Placement::Code(why) => Some((i, why.clone())),
                _ => None,
            })
            .collect();
        assert!(
            code.is_empty(),
            "{}: rules left as code: {code:?}",
            shape.name()
        );
        assert!(c.maps.iter().any(|m| m.spec.name == "cls_cls_rules"));
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn classified_filters_give_the_first_match_verdict() {
    common::require_kernel();
    for (k, shape) in Shape::ALL.into_iter().enumerate() {
        let rules = gen::rules(shape, 400, 20 + k as u64);
        let src = source(&rules);
        let c = driver::compile(&src)
            .unwrap_or_else(|d| panic!("{}", pol_compiler::diag::render_all(&d, "t.pol", &src)));
        let aya = testrun::load(&c).unwrap_or_else(|e| panic!("{}: aya load: {e}", shape.name()));
        // The direct path links the classifier's subprograms itself, with func_info.
        let direct = testrun::load_direct(&c)
            .unwrap_or_else(|e| panic!("{}: direct load: {e}", shape.name()));
        let hook = &c.hir.filters[0].hook;
        let mut checked = 0;
        for h in gen::trace(&rules, 600, 7 + k as u64) {
            let Some(p) = packet(&h) else { continue };
            let bytes = p.build().expect("packet");
            let want = expected(&rules, &h);
            let run = aya.test_run("cls", &bytes, 1).expect("test run");
            let got = testrun::verdict_of(hook, run.retval).map(driver::verdict_word);
            let direct_run = direct.test_run("cls", &bytes, 1).expect("test run");
            assert_eq!(direct_run.retval, run.retval, "{}: {h:?}", shape.name());
            let first = classify::reference(
                &rules,
                &Header {
                    family: classify::V4,
                    ..h
                },
            );
            assert_eq!(
                got,
                Some(want),
                "{}: header {h:?}, reference rule {first:?}",
                shape.name()
            );
            checked += 1;
        }
        assert!(
            checked > 500,
            "{}: only {checked} headers checked",
            shape.name()
        );
    }
}
