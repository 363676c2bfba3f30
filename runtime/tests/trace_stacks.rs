//! Kernel tests of stacks: `get_stackid` programs (compiler/tests/mir/proof/stack_count.mir)
//! attached as a cpu-clock profile and as a uprobe on a function of this binary; their
//! stack trace maps read back, symbolised (kallsyms, blazesym) and drawn as a flame graph.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, Map, MapData, StackTraceMap};
use common::require_kernel;
use pol_compiler::codegen::compile;
use pol_compiler::codegen::object::module_spec;
use pol_compiler::mir;
use pol_runtime::trace::attach::{attach, ProbeAttach};
use pol_runtime::trace::load::ProbeObject;
use pol_runtime::trace::symbols::{folded, write_flamegraph, KernelSymbols, Stack, UserSymbols};

fn open_proof() -> ProbeObject {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../compiler/tests/mir/proof/stack_count.mir");
    let text = std::fs::read_to_string(path).expect("proof program");
    let m = mir::parse_module(&text).expect("parse");
    let code = compile(&m).expect("compile");
    ProbeObject::load(&module_spec(&m, &code)).expect("pol loads the programs")
}

/// aya's view of map `name` (pol created it; aya reads it).
fn map(bpf: &ProbeObject, name: &str) -> MapData {
    let fd = bpf
        .map_fd(name)
        .expect(name)
        .try_clone_to_owned()
        .expect("dup");
    MapData::from_fd(fd).expect("map info")
}

/// (stack id, count) of every counted stack.
fn counted(bpf: &ProbeObject) -> Vec<(u32, u64)> {
    let counts: HashMap<_, u32, u64> =
        HashMap::try_from(Map::HashMap(map(bpf, "counts"))).expect("hash");
    counts.iter().filter_map(Result::ok).collect()
}

fn frames(bpf: &ProbeObject, id: u32) -> Vec<u64> {
    let stacks = StackTraceMap::try_from(Map::StackTraceMap(map(bpf, "stacks"))).expect("stacks");
    let trace = stacks.get(&id, 0).expect("stack of a counted id");
    trace.frames().iter().map(|f| f.ip).collect()
}

/// The target of the uprobe: not inlined, with an unmangled symbol in this binary.
#[no_mangle]
#[inline(never)]
pub extern "C" fn pol_stack_target(x: u64) -> u64 {
    std::hint::black_box(x ^ 0x5a)
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn a_known_kernel_address_and_a_function_of_this_binary_are_named() {
    require_kernel();
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").expect("kallsyms");
    let addr = kallsyms
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"do_sys_openat2")).then(|| u64::from_str_radix(f[0], 16).ok())
        })
        .flatten()
        .expect("do_sys_openat2 in kallsyms");
    let k = KernelSymbols::load().expect("kernel symbols");
    assert_eq!(k.name(addr + 0x10), "do_sys_openat2+0x10");
    let user = UserSymbols::new();
    let f = pol_stack_target as *const () as u64;
    let names = user.names(std::process::id(), &[f, f + 1]);
    assert_eq!(names, vec!["pol_stack_target", "pol_stack_target"]);
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn profile_kernel_stacks_are_counted_and_symbolised() {
    require_kernel();
    let bpf = open_proof();
    let attached = attach(&bpf, "stack_count", &ProbeAttach::Profile { hz: 199 }).expect("profile");
    // Kernel work to be sampled in: opens of a missing file.
    let path = std::env::temp_dir().join(format!("pol-stacks-{}", std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted(&bpf).iter().map(|c| c.1).sum::<u64>() < 20 && Instant::now() < deadline {
        for _ in 0..200 {
            let _ = std::fs::File::open(&path);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(attached);
    let k = KernelSymbols::load().expect("kernel symbols");
    let mut stacks = Vec::new();
    let (mut named, mut all) = (0, 0);
    for (id, count) in counted(&bpf) {
        let names: Vec<String> = frames(&bpf, id).iter().map(|&ip| k.name(ip)).collect();
        all += names.len();
        named += names.iter().filter(|n| !n.starts_with("0x")).count();
        stacks.push(Stack {
            frames: names,
            count,
        });
    }
    let samples: u64 = stacks.iter().map(|s| s.count).sum();
    assert!(samples >= 20, "kernel-mode samples: {samples}");
    assert!(named * 10 >= all * 9, "{named} of {all} frames named");
    let text = folded(&stacks);
    eprintln!("{}", text.lines().take(5).collect::<Vec<_>>().join("\n"));
    let svg = std::env::temp_dir().join(format!("pol-stacks-{}.svg", std::process::id()));
    write_flamegraph(
        &stacks,
        "profile",
        std::fs::File::create(&svg).expect("svg file"),
    )
    .expect("flame graph");
    let drawn = std::fs::read_to_string(&svg).expect("svg");
    let _ = std::fs::remove_file(&svg);
    let leaf = stacks[0]
        .frames
        .first()
        .map(|f| f.split('+').next().unwrap_or(f));
    assert!(drawn.contains("<svg") && leaf.is_some_and(|l| drawn.contains(l)));
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn uprobe_user_stacks_name_the_probed_function() {
    require_kernel();
    let bpf = open_proof();
    let how = ProbeAttach::Uprobe {
        binary: std::env::current_exe().expect("test binary"),
        function: "pol_stack_target".into(),
        offset: 0,
        ret: false,
        pid: Some(std::process::id() as i32),
    };
    let attached = attach(&bpf, "ustack_count", &how).expect("uprobe");
    for i in 0..5 {
        pol_stack_target(i);
    }
    drop(attached);
    let counts = counted(&bpf);
    assert_eq!(counts.len(), 1, "one call site, one stack: {counts:?}");
    let (id, count) = counts[0];
    assert_eq!(count, 5);
    let names = UserSymbols::new().names(std::process::id(), &frames(&bpf, id));
    assert_eq!(
        names.first().map(String::as_str),
        Some("pol_stack_target"),
        "{names:?}"
    );
}
