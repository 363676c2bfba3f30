//! `.BTF.ext` line_info points at the `.pol` source: once the kernel has a filter,
//! `bpftool prog dump xlated` prints each rule's source line above its instructions, and
//! libbpf loads the object without a word about BTF.

mod common;

use pol_compiler::driver;

const SRC: &str = "filter lines on xdp(\"eth0\") {
    drop tcp.dport == 23
    pass udp.dport == 53 and ip.ttl > 1
    malformed pass
    default drop
}
";

#[test]
#[cfg_attr(
    pol_no_bpftool,
    ignore = "kernel test: needs root, bpf() and bpftool, unavailable at build time (CI=true runs it)"
)]
fn bpftool_shows_the_pol_lines_of_a_loaded_filter() {
    common::require_kernel();
    common::require_tool("bpftool");
    let c = compile_named();
    let dir = common::TempDir::new("pol_line_info");
    let obj = dir.path().join("lines.o");
    std::fs::write(&obj, &c.object).expect("write object");
    let pin = common::BpffsDir::new("pol_line_info");
    let out = std::process::Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(&obj)
        .arg(pin.path())
        .output()
        .expect("run bpftool");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bpftool prog loadall: {log}");
    assert!(
        !log.contains("line info") && !log.contains("func_info"),
        "libbpf complained about .BTF.ext: {log}"
    );
    let out = std::process::Command::new("bpftool")
        .args(["prog", "dump", "xlated", "pinned"])
        .arg(pin.path().join("lines"))
        .arg("linum")
        .output()
        .expect("run bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dump xlated: {text}");
    // With `linum` each line ends in `[file:lines.pol line_num:N line_col:0]`.
    assert!(
        text.contains("; drop tcp.dport == 23 [file:lines.pol line_num:2 "),
        "no file:line for rule 1 in {text}"
    );
    let shown: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("; "))
        .map(|l| l.split(" [file:").next().unwrap_or(l).to_string())
        .collect();
    for want in [
        "; filter lines on xdp(\"eth0\") {",
        "; drop tcp.dport == 23",
        "; pass udp.dport == 53 and ip.ttl > 1",
        "; malformed pass",
        "; default drop",
    ] {
        assert!(
            shown.iter().any(|l| l == want),
            "{want:?} not among {shown:#?}"
        );
    }
    // The first instruction has a line (the kernel insists), and it is the filter's.
    let first = text.lines().nth(1).unwrap_or("");
    assert!(
        first.starts_with("; filter lines on xdp(\"eth0\") { [file:lines.pol line_num:1 "),
        "{text}"
    );
}

/// `SRC` compiled as the file `lines.pol`, as `pol build lines.pol` does.
fn compile_named() -> driver::Compiled {
    let no_files = pol_compiler::hir::check::no_files;
    driver::compile_file(
        "lines.pol",
        SRC,
        &no_files,
        &pol_compiler::catalog::NoCatalog,
    )
    .expect("compiles")
}

/// The file name is in the object's strings only when the compiler was given one.
#[test]
fn line_info_names_the_pol_file() {
    let has = |o: &[u8]| o.windows(10).any(|w| w == b"lines.pol\0");
    assert!(has(&compile_named().object));
    assert!(!has(&driver::compile(SRC).expect("compiles").object));
}

/// The object records where each run of instructions comes from without a kernel:
/// one line_info record per change of source, the first at instruction 0.
#[test]
fn line_info_follows_the_rules() {
    let c = driver::compile(SRC).expect("compiles");
    let lines = &c.spec.programs[0].lines;
    assert_eq!(lines.first().map(|l| (l.insn, l.line)), Some((0, 1)));
    assert!(lines.windows(2).all(|w| w[0].insn < w[1].insn));
    for (line, text) in [(2, "drop tcp.dport == 23"), (5, "default drop")] {
        assert!(
            lines.iter().any(|l| l.line == line && l.text == text),
            "line {line} missing: {lines:#?}"
        );
    }
}
