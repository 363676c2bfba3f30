//! Security rules at scale: a list tested with `in` is one hash map lookup per event and
//! field, so a rule over 1,000 paths is as long as one over 10, compiles at once, and
//! matches in the kernel exactly the execs, names and ports the list holds.

mod common;
mod rules_support;

use std::path::PathBuf;
use std::process::Command;

use common::{require_kernel, TempDir};
use pol_compiler::driver;
use pol_compiler::rule::{self, ktypes::TableTypes};
use rules_support::*;

/// `n` paths that no test runs.
fn paths(n: usize) -> String {
    (0..n)
        .map(|i| format!("\"/usr/local/sbin/never-{i:04}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn compiled(src: &str) -> rule::Output {
    let (_, hir, diags) = driver::front(src);
    assert!(diags.is_empty(), "{diags:#?}");
    rule::compile(&hir.expect("checks").security, src, &TableTypes::fixture()).expect("compiles")
}

fn insns(out: &rule::Output, program: &str) -> usize {
    out.probes
        .layout
        .probes
        .iter()
        .find(|p| p.program == program)
        .map(|p| p.insns)
        .unwrap_or_else(|| panic!("no program {program}"))
}

#[test]
fn a_list_of_a_thousand_values_is_one_map_lookup_not_a_thousand_compares() {
    let file = |n: usize| {
        format!(
            "list bad = {{ {} }}\nrule r on exec {{\n    when path in bad or parent.comm in {{ {} }}\n    action alert(warning, \"{{path}}\")\n}}\n",
            paths(n),
            (0..n.min(20))
                .map(|i| format!("\"p{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let ten = compiled(&file(10));
    let thousand = compiled(&file(1000));
    assert_eq!(
        insns(&ten, "rule_exec"),
        insns(&thousand, "rule_exec"),
        "the program does not grow with the list"
    );
    let sets = &thousand.rules.sets;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    assert_eq!(sets[0].map, "pol_rule_in_path");
    assert_eq!(sets[0].entries.len(), 1000);
    // "/usr/local/sbin/never-0000" and its NUL: 27 bytes, rounded up to 32.
    assert_eq!(sets[0].key_size, 32);
    assert_eq!(sets[1].map, "pol_rule_in_parent_comm");
    assert_eq!(sets[1].key_size, 8);
    let maps: Vec<(&str, u32)> = thousand
        .probes
        .layout
        .maps
        .iter()
        .filter(|m| m.name.starts_with("pol_rule_in_"))
        .map(|m| (m.name.as_str(), m.max_entries))
        .collect();
    assert_eq!(
        maps,
        [("pol_rule_in_path", 1000), ("pol_rule_in_parent_comm", 20)]
    );

    // A short list stays compares: hashing the key would cost more.
    let few = compiled(&file(3));
    assert!(few.rules.sets.is_empty(), "{:#?}", few.rules.sets);
    assert!(insns(&few, "rule_exec") < insns(&ten, "rule_exec") + 40);

    // Two lists of one field share its map, one bit each; integers too (ranges stay
    // compares beside the map).
    let ports: Vec<String> = (0..40).map(|p| (4000 + p).to_string()).collect();
    let src = format!(
        "list a = {{ {} }}\nlist b = {{ {}, \"/bin/sh\" }}\nrule one on exec {{ when path in a action alert(\"1\") }}\nrule two on exec {{ when path in b action alert(\"2\") }}\nrule three on connect {{ when port in {{ {}, 9000..9010 }} action deny }}\n",
        paths(10),
        paths(12),
        ports.join(", ")
    );
    let out = compiled(&src);
    let sets = &out.rules.sets;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    assert_eq!(sets[0].entries.len(), 13, "12 shared paths and /bin/sh");
    let bits = |key: &str| {
        sets[0]
            .entries
            .iter()
            .find(|(k, _)| *k == rule::SetKey::Str(key.into()))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(bits("/usr/local/sbin/never-0003"), Some(vec![0b11]));
    assert_eq!(bits("/usr/local/sbin/never-0011"), Some(vec![0b10]));
    assert_eq!(bits("/bin/sh"), Some(vec![0b10]));
    assert_eq!(sets[1].map, "pol_rule_in_port");
    assert_eq!(sets[1].key, "u64");
    assert_eq!(sets[1].entries.len(), 40);
    assert!(sets[1]
        .entries
        .iter()
        .all(|(k, _)| !matches!(k, rule::SetKey::Int(9000..=9010))));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_thousand_entry_list_matches_exactly_its_paths_names_and_ports_in_the_kernel() {
    require_kernel();
    common::require_tool("python3");
    let dir = TempDir::new("pol_rules_scale");
    let base = format!("psc{}", std::process::id() % 100_000);
    let listed = program(dir.path(), &format!("{base}a"));
    // Its name and path differ from a listed one only in the last byte.
    let unlisted = program(dir.path(), &format!("{base}b"));
    // A longer path that starts with a listed one.
    let longer = program(dir.path(), &format!("{base}ax"));
    let named = program(dir.path(), &format!("{base}n"));
    let cg = TestCgroup::new("pol_rules_scale");
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let free = open.local_addr().expect("addr").port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let denied = closed.local_addr().expect("addr").port();
    // 40 ports around the denied one, not the open one.
    let ports: Vec<String> = (0..40u16)
        .map(|i| denied.wrapping_add(i * 7).to_string())
        .filter(|p| *p != free.to_string())
        .collect();
    let names: Vec<String> = (0..30).map(|i| format!("\"{base}{i}\"")).collect();
    let src = format!(
        "list watched = {{ {}, \"{}\" }}\nlist names = {{ {}, \"{base}n\" }}\n\
         rule listed_path on exec {{\n    when path in watched\n    action alert(warning, \"{{path}}\")\n}}\n\
         rule listed_name on exec {{\n    when comm in names\n    action alert(info, \"{{comm}}\")\n}}\n\
         rule listed_port on connect {{\n    when port in {{ {} }}\n    action deny\n}}\n",
        paths(1000),
        listed.display(),
        names.join(", "),
        ports.join(", ")
    );
    let rules = dir.path().join("scale.pol");
    std::fs::write(&rules, &src).expect("write rules");
    let pol = start(&[
        "--json",
        "--cgroup",
        cg.path().to_str().expect("utf-8"),
        rules.to_str().expect("utf-8"),
    ]);
    for p in [&listed, &unlisted, &longer, &named] {
        assert!(Command::new(p).status().expect("run").success());
    }
    let refused = cg.sh(&socket_script("connect", false, "127.0.0.1", denied));
    let allowed = cg.sh(&socket_script("connect", false, "127.0.0.1", free));
    let out = stop(pol);
    assert_eq!(said(&refused), "EPERM", "a listed port: {refused:?}");
    assert_eq!(said(&allowed), "ok", "a port not in the list: {allowed:?}");
    let got: Vec<(String, String)> = alerts(&out)
        .iter()
        .filter(|a| {
            a["event"]["comm"]
                .as_str()
                .is_some_and(|c| c.starts_with(&base))
        })
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_string(),
                a["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let show = |p: &PathBuf| p.display().to_string();
    assert_eq!(
        got,
        [
            ("listed_path".to_string(), show(&listed)),
            ("listed_name".to_string(), format!("{base}n")),
        ],
        "only the listed path and the listed name:\n{out}"
    );
}

/// `n` rules on `open`, rule `i` testing `path == "{dir}/fI"` and printing fields no
/// rule tests (filled only once a rule matched).
fn separate_rules(n: usize, dir: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "rule r{i} on open {{\n    when path == \"{dir}/f{i}\"\n    action alert(info, \"{{comm}} {{parent.comm}} {{uid}} {{path}}\")\n}}\n"
            )
        })
        .collect()
}

#[test]
fn a_thousand_separate_equality_rules_compile_to_a_test_and_a_call_each() {
    let ten = compiled(&separate_rules(10, "/x"));
    let thousand = compiled(&separate_rules(1000, "/x"));
    let (a, b) = (
        insns(&ten, "rule_open_openat"),
        insns(&thousand, "rule_open_openat"),
    );
    // The path is looked up once (one-value sets in `pol_rule_in_path`); each rule is
    // a bit test and a call of the shared alert subprogram.
    assert!(
        b < a + 990 * 8,
        "10 rules: {a}, 1,000 rules: {b} instructions"
    );
    let sets = &thousand.rules.sets;
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert_eq!(sets[0].map, "pol_rule_in_path");
    assert_eq!(sets[0].entries.len(), 1000);
    let bits = |key: &str| {
        sets[0]
            .entries
            .iter()
            .find(|(k, _)| *k == rule::SetKey::Str(key.into()))
            .map(|(_, v)| v.clone())
    };
    // Rule 999's bit: word 15, bit 39.
    let mut want = vec![0u64; 16];
    want[15] = 1 << 39;
    assert_eq!(bits("/x/f999"), Some(want));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_thousand_separate_rules_load_and_each_reports_its_own_open_with_every_field() {
    require_kernel();
    let dir = TempDir::new("pol_rules_sep");
    let d = dir.path().display().to_string();
    for i in [7, 999, 1000] {
        std::fs::write(dir.path().join(format!("f{i}")), "x").expect("write");
    }
    let rules = dir.path().join("separate.pol");
    std::fs::write(&rules, separate_rules(1000, &d)).expect("write rules");
    let pol = start(&["--json", rules.to_str().expect("utf-8")]);
    // `cat` opens f7, f999 and f1000 (no rule names it); its parent is `sh`.
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("cat {d}/f7 {d}/f999 {d}/f1000 >/dev/null; true"))
        .status()
        .expect("run sh");
    assert!(st.success());
    let out = stop(pol);
    let got: Vec<(String, String)> = alerts(&out)
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("").to_string(),
                a["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // SAFETY: getuid(2) reads the caller's id and cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        got,
        [
            ("r7".to_string(), format!("cat sh {uid} {d}/f7")),
            ("r999".to_string(), format!("cat sh {uid} {d}/f999")),
        ],
        "exactly the rules naming the opened files, with the fields they print:\n{out}"
    );
}
