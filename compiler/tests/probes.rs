//! Probe files through the front end and the back end: what compiles (and its layout),
//! and each mistake as a diagnostic with its code on the exact text at fault.

use pol_compiler::driver;

/// The code and the source text under the primary span of each error.
fn errors(src: &str) -> Vec<(String, String)> {
    match driver::compile(src) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| (d.code.to_string(), src[d.primary_span()].to_string()))
            .collect(),
    }
}

fn one_error(src: &str) -> (String, String) {
    let e = errors(src);
    assert_eq!(e.len(), 1, "{e:?}");
    e[0].clone()
}

#[test]
fn a_probe_compiles_to_an_object_and_a_layout() {
    let c = driver::compile(
        "probe opens on tracepoint(syscalls.sys_enter_openat) {\n    where uid != 0 and comm == \"bash\"\n    count by comm into opens\n    hist(nsecs) by pid into h\n}\n",
    )
    .expect("compiles");
    let out = c.probes.expect("a probe object");
    assert!(out.object.starts_with(b"\x7fELF"));
    let j = serde_json::to_value(&out.layout).expect("json");
    assert_eq!(j["probes"][0]["program"], "probe_opens");
    assert_eq!(j["probes"][0]["attach"]["kind"], "tracepoint");
    assert_eq!(j["probes"][0]["attach"]["name"], "sys_enter_openat");
    assert_eq!(j["aggregations"][0]["display"], "@opens");
    assert_eq!(j["aggregations"][0]["key"][0]["type"], "string");
    assert_eq!(j["aggregations"][1]["function"]["kind"], "hist");
    assert_eq!(j["aggregations"][1]["key"][1]["type"], "bucket");
    assert_eq!(j["maps"][1]["kind"], "percpu_hash");
    // Entries allocated as keys appear (BPF_F_NO_PREALLOC): no start-up cost for 10,240.
    assert_eq!(j["maps"][1]["flags"], 1);
    assert!(j["probes"][0]["stack"]
        .as_u64()
        .is_some_and(|s| s > 0 && s <= 512));
}

#[test]
fn a_file_with_a_profile_probe_keeps_its_hash_maps_preallocated() {
    // perf_event programs run in NMI context, where the kernel wants preallocated maps.
    let c = driver::compile("probe profile(99) {\n    count by comm into on_cpu\n}\n")
        .expect("compiles");
    let j = serde_json::to_value(&c.probes.expect("probes").layout).expect("json");
    assert_eq!(j["maps"][0]["kind"], "percpu_hash");
    assert_eq!(j["maps"][0]["flags"], 0);
}

#[test]
fn every_aggregation_compiles() {
    for stmt in [
        "count",
        "count by pid, tid, uid, gid, cgroup, cpu",
        "sum(nsecs) by comm",
        "min(pid)",
        "max(pid) by cpu",
        "avg(tid)",
        "stats(uid) by comm, pid",
        "hist(nsecs)",
        "lhist(cpu, 0, 64, 4) by comm",
    ] {
        let src = format!("probe tracepoint(sched.sched_process_exec) {{\n    {stmt}\n}}\n");
        assert!(errors(&src).is_empty(), "{stmt}: {:?}", errors(&src));
    }
}

#[test]
fn an_unknown_builtin_is_named_with_a_suggestion() {
    let src = "probe p on tracepoint(syscalls.sys_enter_openat) {\n    count by comn into m\n}\n";
    assert_eq!(one_error(src), ("E0301".into(), "comn".into()));
    let d = driver::compile(src).expect_err("error");
    assert!(
        d[0].help.as_deref().is_some_and(|h| h.contains("`comm`")),
        "{:?}",
        d[0]
    );
}

#[test]
fn a_map_used_with_two_key_types_is_an_error_at_the_second_use() {
    let src = "probe a on tracepoint(syscalls.sys_enter_openat) {\n    count by comm into m\n}\nprobe b on tracepoint(syscalls.sys_enter_close) {\n    count by pid into m\n}\n";
    let (code, text) = one_error(src);
    assert_eq!(code, "E0511");
    assert_eq!(text, "m");
    let d = driver::compile(src).expect_err("error");
    assert!(d[0].message.contains("(integer)") && d[0].message.contains("(string)"));
}

#[test]
fn type_mismatches_and_unknown_hooks_point_at_the_culprit() {
    let p = |body: &str| {
        format!("probe p on tracepoint(syscalls.sys_enter_openat) {{\n    {body}\n}}\n")
    };
    assert_eq!(
        one_error(&p("where comm == 3")),
        ("E0401".into(), "3".into())
    );
    assert_eq!(one_error(&p("where pid")), ("E0401".into(), "pid".into()));
    assert_eq!(
        one_error(&p("where comm < \"a\"")),
        ("E0403".into(), "comm < \"a\"".into())
    );
    assert_eq!(one_error(&p("sum(comm)")), ("E0401".into(), "comm".into()));
    assert_eq!(
        one_error(&p("lhist(pid, 10, 5, 1)")),
        ("E0512".into(), "10, 5, 1".into())
    );
    assert_eq!(
        one_error(&p("total(pid)")),
        ("E0512".into(), "total".into())
    );
    assert_eq!(
        one_error("probe p on tracepont(syscalls.sys_enter_openat) {\n    count\n}\n"),
        ("E0501".into(), "tracepont".into())
    );
    assert_eq!(
        one_error("probe p on tracepoint(\"x\") {\n    count\n}\n"),
        ("E0502".into(), "\"x\"".into())
    );
}

#[test]
fn a_probe_whose_stack_exceeds_512_bytes_is_refused_at_the_probe() {
    // Each string-keyed aggregation takes its own key and value slots.
    let stmts: String = (0..12)
        .map(|i| format!("    stats(pid) by comm, comm, comm into m{i}\n"))
        .collect();
    let src = format!("probe big on tracepoint(syscalls.sys_enter_openat) {{\n{stmts}}}\n");
    let (code, text) = one_error(&src);
    assert_eq!(code, "L0603");
    assert!(text.starts_with("probe big on tracepoint"), "{text}");
}

#[test]
fn variables_are_set_before_they_are_read_with_one_key_type() {
    let p = |body: &str| format!("probe p on tracepoint(syscalls.sys_enter_read) {{\n{body}\n}}\n");
    assert_eq!(
        one_error(&p("    hist(nsecs - start[tid])")),
        ("E0301".into(), "start".into())
    );
    assert_eq!(
        one_error(&p("    start[comm] = nsecs\n    delete start[tid]")),
        ("E0511".into(), "start".into())
    );
    assert_eq!(
        one_error(&p("    start[tid] = comm")),
        ("E0401".into(), "comm".into())
    );
    assert_eq!(
        one_error(&p("    count by comm into seen\n    seen[tid] = 1")),
        ("E0511".into(), "seen".into())
    );
    assert!(errors(&p("    start[tid] = nsecs\n    sum(nsecs - start[tid] * 2 / 3 + 1) by comm\n    delete start[tid]")).is_empty());
}

/// Errors compiling `src` against the fixture catalog in tests/catalog.
fn errors_with_catalog(src: &str) -> Vec<(String, String, Option<String>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/catalog");
    let cat = pol_compiler::catalog::DirCatalog::new(dir).expect("fixture catalog");
    let files = pol_compiler::hir::check::no_files;
    match driver::compile_with_catalog(src, &files, &cat) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .iter()
            .filter(|d| d.is_error())
            .map(|d| {
                (
                    d.code.to_string(),
                    src[d.primary_span()].to_string(),
                    d.help.clone(),
                )
            })
            .collect(),
    }
}

#[test]
fn tracepoint_arguments_are_typed_from_the_catalog() {
    let p = |body: &str| {
        format!("probe p on tracepoint(syscalls.sys_enter_openat) {{\n    {body}\n}}\n")
    };
    // What works: integers, pointers read as strings, bounded.
    assert!(errors_with_catalog(&p("where args.flags > 0 and str(args.filename) == \"/etc/passwd\"\n    emit { file: str(args.filename, 200), mode: args.mode }")).is_empty());
    let one = |body: &str| {
        let e = errors_with_catalog(&p(body));
        assert_eq!(e.len(), 1, "{body}: {e:?}");
        e[0].clone()
    };
    // A misspelt argument: at the name, with the nearest.
    let (code, text, help) = one("count by args.filname");
    assert_eq!((code.as_str(), text.as_str()), ("E0302", "filname"));
    assert_eq!(help.as_deref(), Some("did you mean `args.filename`?"));
    // A pointer compared with an integer, or used as a number or a key.
    assert_eq!(one("where args.filename == 0").0, "E0401");
    assert_eq!(one("where args.filename == 0").1, "args.filename");
    assert_eq!(one("sum(args.filename)").1, "args.filename");
    assert_eq!(one("count by args.filename").1, "args.filename");
    // A string used as a number.
    assert_eq!(one("sum(str(args.filename))").1, "str(args.filename)");
    // An integer read as a string; a string read without a bound the stack can hold.
    assert_eq!(one("count by str(args.flags)").1, "args.flags");
    let (code, text, _) = one("count by str(args.filename, 4096)");
    assert_eq!((code.as_str(), text.as_str()), ("E0514", "4096"));
    assert_eq!(one("count by str(args.filename, n)").0, "E0514");
}

#[test]
fn an_unknown_tracepoint_is_named_with_the_nearest() {
    let e =
        errors_with_catalog("probe p on tracepoint(syscalls.sys_enter_opnat) {\n    count\n}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "E0513");
    assert_eq!(e[0].1, "syscalls.sys_enter_opnat");
    assert_eq!(
        e[0].2.as_deref(),
        Some("did you mean `syscalls.sys_enter_openat`?")
    );
    // Raw tracepoints come from BTF.
    let e = errors_with_catalog("probe p on raw_tracepoint(sys_entr) {\n    count\n}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0.as_str(), e[0].1.as_str()), ("E0513", "sys_entr"));
    // Without a catalog, `args` cannot be typed: said, not guessed.
    let (code, text) = one_error(
        "probe p on tracepoint(syscalls.sys_enter_openat) {\n    count by args.flags\n}\n",
    );
    assert_eq!((code.as_str(), text.as_str()), ("E0513", "args.flags"));
}

#[test]
fn the_editor_analysis_answers_on_every_probe_example() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/probes");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("examples/probes") {
        let path = e.expect("entry").path();
        let src = std::fs::read_to_string(&path).expect("read");
        let a = pol_compiler::analysis::analyze(&src);
        // Every position: hover, completion, definition, references, rename; none panics.
        for offset in (0..=src.len()).filter(|&i| src.is_char_boundary(i)) {
            let _ = a.hover(offset);
            let _ = a.completions(offset);
            let _ = a.definition(offset);
            let _ = a.references(offset, true);
            let _ = a.prepare_rename(offset);
        }
        let symbols = a.document_symbols();
        assert!(!symbols.is_empty(), "{}: no outline", path.display());
        assert!(!a.semantic_tokens().is_empty());
        let _ = a.fixes();
        n += 1;
    }
    assert!(n >= 7, "{n} probe examples");
}

#[test]
fn kstack_is_a_key_only() {
    let p = |body: &str| format!("probe p on profile(99) {{\n    {body}\n}}\n");
    let c = driver::compile(&p("count by kstack, comm into s")).expect("compiles");
    let j = serde_json::to_value(&c.probes.expect("probes").layout).expect("json");
    assert_eq!(j["stacks"], "pol_stacks");
    assert_eq!(j["aggregations"][0]["key"][0]["type"], "kstack");
    assert_eq!(
        one_error(&p("emit { kstack }")),
        ("E0401".into(), "kstack".into())
    );
    assert_eq!(
        one_error(&p("sum(kstack)")),
        ("E0401".into(), "kstack".into())
    );
}

/// layout.json reads back into the compiler's own layout types: every probe example the
/// fixture catalog can type (and a probe of every aggregation) round-trips, so a reader
/// needs no mirror of them.
#[test]
fn probe_layouts_read_back_as_the_same_layout() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/catalog");
    let cat = pol_compiler::catalog::DirCatalog::new(dir).expect("fixture catalog");
    let files = pol_compiler::hir::check::no_files;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/probes");
    let mut n = 0;
    for e in std::fs::read_dir(examples).expect("examples/probes") {
        let src = std::fs::read_to_string(e.expect("entry").path()).expect("read");
        let Ok(c) = driver::compile_with_catalog(&src, &files, &cat) else {
            continue;
        };
        let layout = c.probes.expect("probes").layout;
        let json = layout.to_json().expect("json");
        let back: pol_compiler::obj::Layout = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, layout, "{json}");
        n += 1;
    }
    assert!(
        n >= 3,
        "only {n} probe examples compiled against the fixture catalog"
    );
}
