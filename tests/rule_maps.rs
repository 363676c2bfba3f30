//! Rule lists lowered into maps keep first-match order: overlapping prefixes, rules that
//! stay code between map rules, counts and statistics, and 100,000 rules in one filter.

mod common;

use pol_compiler::driver;
use pol_runtime::direct::Object as _;
use pol_runtime::packet::Packet;
use pol_runtime::testrun;

/// `src` compiled, or the test fails with the rendered diagnostics.
fn compiled(src: &str) -> driver::Compiled {
    driver::compile(src)
        .unwrap_or_else(|d| panic!("{}", pol_compiler::diag::render_all(&d, "t.pol", src)))
}

fn verdict(c: &driver::Compiled, l: &pol_runtime::load::Loaded, p: Packet) -> &'static str {
    let run = l
        .test_run(&c.programs[0].name, &p.build().expect("packet"), 1)
        .expect("test run");
    match testrun::verdict_of(&c.hir.filters[0].hook, run.retval) {
        Some(v) => driver::verdict_word(v),
        None => "?",
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn first_match_survives_maps() {
    common::require_kernel();
    let mut src = String::from("set admin: cidr = { 10.20.0.0/16 }\nfilter g on xdp(\"eth0\") {\n");
    // Rule 0..: a run of exact addresses, a code rule in the middle, overlapping prefixes.
    for i in 1..=20 {
        src.push_str(&format!(
            "    drop ip.src == 192.0.2.{i} count exact_drops\n"
        ));
    }
    src.push_str("    pass tcp.dport == 22 and ip.src in admin\n"); // rule 20: code
    src.push_str("    drop ip.src == 10.20.0.0/16\n"); // 21: shadowed for ssh by rule 20
    src.push_str("    pass ip.src == 10.0.0.0/8\n"); // 22
    src.push_str("    drop ip.src == 10.1.0.0/16\n"); // 23: shadowed by 22 entirely
    src.push_str("    drop ip.src == 2001:db8::/32\n"); // 24: a v6 key space of its own (code: 1 key)
    src.push_str("    drop tcp.dport == 23\n"); // 25: code
    src.push_str("    default pass\n}\n");
    let c = compiled(&src);
    assert!(
        c.maps.iter().any(|m| m.spec.name == "g_ip_src_v4"),
        "the v4 rules share one map"
    );
    let l = testrun::load(&c).expect("load");
    let cases = [
        ("exact hit", Packet::tcp().src("192.0.2.7"), "drop"),
        (
            "exact miss",
            Packet::tcp().src("192.0.2.99").dport(80),
            "pass",
        ),
        (
            "ssh from admin beats the later /16 drop",
            Packet::tcp().src("10.20.1.1").dport(22),
            "pass",
        ),
        (
            "admin, not ssh: the /16 drop",
            Packet::tcp().src("10.20.1.1").dport(80),
            "drop",
        ),
        (
            "the /8 pass shadows the later /16 drop",
            Packet::tcp().src("10.1.2.3").dport(80),
            "pass",
        ),
        (
            "telnet from the /8: the /8 pass comes first",
            Packet::tcp().src("10.3.2.1").dport(23),
            "pass",
        ),
        (
            "telnet from elsewhere",
            Packet::tcp().src("11.3.2.1").dport(23),
            "drop",
        ),
        (
            "v6 prefix",
            Packet::tcp().src("2001:db8::9").dport(80),
            "drop",
        ),
        (
            "UDP from a blocked address",
            Packet::udp().src("192.0.2.20"),
            "drop",
        ),
    ];
    for (what, p, want) in cases {
        assert_eq!(verdict(&c, &l, p), want, "{what}");
    }
    let stats = l.map_entries("g_stats").expect("stats");
    let slot = |i: usize| u64::from_le_bytes(stats[i].1.clone().try_into().expect("u64"));
    assert_eq!(
        (slot(6), slot(19), slot(20), slot(21), slot(22), slot(25)),
        (1, 1, 1, 1, 2, 1)
    );
    assert_eq!(slot(26), 1, "one packet fell to the default");
    let drops = l.map_entries("exact_drops").expect("count map");
    assert_eq!(
        drops[0].1,
        2u64.to_le_bytes().to_vec(),
        "two exact-address drops counted"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_hundred_thousand_rules_load_and_decide() {
    common::require_kernel();
    let addr = |i: u32| {
        let a = (10u32 << 24) | (i * 7 + 1);
        format!(
            "{}.{}.{}.{}",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        )
    };
    let mut src = String::from("filter big on xdp(\"eth0\") {\n");
    for i in 0..100_000 {
        src.push_str(&format!("    drop ip.src == {}\n", addr(i)));
    }
    src.push_str("    drop tcp.dport == 23\n    default pass\n}\n");
    let c = compiled(&src);
    assert!(
        c.programs[0].insns.len() < 1000,
        "rules are map entries, not code"
    );
    let l = testrun::load(&c).expect("load");
    assert_eq!(
        verdict(&c, &l, Packet::tcp().src(addr(99_999).as_str()).dport(80)),
        "drop"
    );
    assert_eq!(
        verdict(&c, &l, Packet::tcp().src(addr(50_000).as_str()).dport(80)),
        "drop"
    );
    assert_eq!(
        verdict(&c, &l, Packet::tcp().src("192.0.2.1").dport(80)),
        "pass"
    );
    assert_eq!(
        verdict(&c, &l, Packet::tcp().src("192.0.2.1").dport(23)),
        "drop"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn long_lists_of_code_rules_pass_the_verifier() {
    common::require_kernel();
    // Rules that combine two fields stay code. 1,400 of them used to exhaust the verifier
    // (a rule's `==` pinned the record slot for every later rule) or overflow 16-bit jumps
    // once the kernel inlined the map lookups.
    let dst = |i: u32| format!("10.{}.{}.1", i / 250, i % 250);
    let mut src = String::from("filter f on xdp(\"eth0\") {\n");
    for i in 0..1400 {
        src.push_str(&format!(
            "    drop ip.dst == {} and tcp.dport == 80\n",
            dst(i)
        ));
    }
    src.push_str("    default pass\n}\n");
    let c = compiled(&src);
    let l = testrun::load(&c).expect("the verifier accepts 1,400 code rules");
    assert_eq!(
        verdict(&c, &l, Packet::tcp().dst(dst(1399).as_str()).dport(80)),
        "drop"
    );
    assert_eq!(
        verdict(&c, &l, Packet::tcp().dst(dst(1399).as_str()).dport(81)),
        "pass"
    );
    assert_eq!(
        verdict(&c, &l, Packet::tcp().dst(dst(3).as_str()).dport(80)),
        "drop"
    );
}
