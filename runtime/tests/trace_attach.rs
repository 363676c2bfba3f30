//! Kernel tests of `pol_runtime::trace::attach`: small MIR programs compiled in the test,
//! attached as every probe kind this kernel has (tracepoint, raw and BTF tracepoint,
//! uprobe and uretprobe on a function of this test binary, cpu-clock profile), counting
//! in an array; the kinds it lacks refused in one sentence; `attach_all` all or nothing.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData};
use common::require_kernel;
use pol_compiler::codegen::compile;
use pol_compiler::codegen::object::module_spec;
use pol_compiler::mir;
use pol_runtime::trace::attach::{attach, attach_all, supported, AttachError, ProbeAttach};
use pol_runtime::trace::load::ProbeObject;

/// A program `name` on `hook` (MIR text form) that adds 1 to `hits[0].count` and stores
/// the context word at `ctx_off` in `hits[0].last`.
fn counter(name: &str, hook: &str, ctx_off: u32) -> String {
    format!(
        "func {name}(ctx) -> i64 {hook} {{
    ss0 = slot 4, align 4
block0(v0: ctx):
    v1: stack = addr ss0
    store.u32 [v1+0], 0
    v2: map(hits) = mapref hits
    v3: val?(hits) = call map_lookup_elem(v2, v1)
    br eq v3, 0, block1, block2
block1:
    v4: i64 = iconst 0
    return v4
block2:
    v5: u64 = iconst 1
    atomic_add.u64 [v3+0], v5
    v6: u64 = load [v0+{ctx_off}]
    store.u64 [v3+8], v6
    jump block1
}}
"
    )
}

/// Compiles programs (each from [`counter`]) sharing one `hits` array and loads them
/// with pol's own loader (not attached).
fn open(programs: &[String]) -> ProbeObject {
    let text = format!(
        "map hits: array, key 4, value 16, max 1\n\n{}",
        programs.join("\n")
    );
    let m = mir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let code = compile(&m).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ProbeObject::load(&module_spec(&m, &code)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `hits[0]`: (count, last context word).
fn hits(bpf: &ProbeObject) -> (u64, u64) {
    let fd = bpf
        .map_fd("hits")
        .expect("hits")
        .try_clone_to_owned()
        .expect("dup");
    let map = Map::Array(MapData::from_fd(fd).expect("map info"));
    let a: Array<_, [u64; 2]> = Array::try_from(map).expect("array");
    let v = a.get(&0, 0).expect("hits[0]");
    (v[0], v[1])
}

/// Opens a missing file until the counter moves (or 5 s pass).
fn open_until_counted(bpf: &ProbeObject) -> u64 {
    let path = std::env::temp_dir().join(format!("pol-trace-attach-{}", std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while hits(bpf).0 == 0 && Instant::now() < deadline {
        let _ = std::fs::File::open(&path);
        std::thread::sleep(Duration::from_millis(5));
    }
    hits(bpf).0
}

fn tracepoint(category: &str, name: &str) -> ProbeAttach {
    ProbeAttach::Tracepoint {
        category: category.into(),
        name: name.into(),
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn tracepoint_raw_tracepoint_and_btf_tracepoint_count_openat() {
    require_kernel();
    // Tracepoint record: the syscall number at offset 8; raw and BTF: args[1].
    for (hook, how, nr_off) in [
        (
            "tracepoint syscalls/sys_enter_openat",
            tracepoint("syscalls", "sys_enter_openat"),
            8,
        ),
        (
            "raw_tp sys_enter",
            ProbeAttach::RawTracepoint {
                name: "sys_enter".into(),
            },
            8,
        ),
        (
            "tp_btf sys_enter",
            ProbeAttach::BtfTracepoint {
                name: "sys_enter".into(),
            },
            8,
        ),
    ] {
        let bpf = open(&[counter("prog", hook, nr_off)]);
        let attached = attach(&bpf, "prog", &how).unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(attached.links(), 1, "{how}");
        assert!(attached.prog_id() > 0, "{how}: program id");
        assert!(open_until_counted(&bpf) > 0, "{how}: nothing counted");
        if matches!(how, ProbeAttach::Tracepoint { .. }) {
            // openat is syscall 257 on x86_64.
            assert_eq!(hits(&bpf).1, 257, "{how}: __syscall_nr");
        }
        attached.detach().expect("detach");
    }
}

/// The target of the uprobe tests: not inlined, with an unmangled symbol in this binary.
#[no_mangle]
#[inline(never)]
pub extern "C" fn pol_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(3).wrapping_add(1))
}

fn this_binary() -> PathBuf {
    std::env::current_exe().expect("the test binary's path")
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn uprobe_and_uretprobe_on_a_function_of_this_binary() {
    require_kernel();
    // struct pt_regs on x86_64: rdi (first argument) at 112, rax (return value) at 80.
    for (ret, hook, off, want_last) in [
        (false, "uprobe", 112, 41),
        (true, "uretprobe", 80, 41 * 3 + 1),
    ] {
        let bpf = open(&[counter("prog", hook, off)]);
        let how = ProbeAttach::Uprobe {
            binary: this_binary(),
            function: "pol_uprobe_target".into(),
            offset: 0,
            ret,
            pid: Some(std::process::id() as i32),
        };
        let attached = attach(&bpf, "prog", &how).unwrap_or_else(|e| panic!("{how}: {e}"));
        for i in 0..9 {
            pol_uprobe_target(std::hint::black_box(i + 33));
        }
        assert_eq!(hits(&bpf), (9, want_last), "{how}: (calls, last value)");
        drop(attached);
        pol_uprobe_target(1);
        assert_eq!(hits(&bpf).0, 9, "{how}: counted after detaching");
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn uprobe_on_a_missing_binary_or_symbol_is_one_sentence() {
    require_kernel();
    let bpf = open(&[counter("prog", "uprobe", 112)]);
    let mut how = ProbeAttach::Uprobe {
        binary: "/nonexistent/pol-test-bin".into(),
        function: "main".into(),
        offset: 0,
        ret: false,
        pid: None,
    };
    let e = attach(&bpf, "prog", &how).expect_err("missing binary");
    assert_eq!(
        e.to_string(),
        "uprobe target /nonexistent/pol-test-bin does not exist"
    );
    if let ProbeAttach::Uprobe {
        binary, function, ..
    } = &mut how
    {
        *binary = this_binary();
        *function = "pol_no_such_function".into();
    }
    let e = attach(&bpf, "prog", &how).expect_err("missing symbol");
    assert_eq!(
        e.to_string(),
        format!(
            "{} has no symbol `pol_no_such_function`",
            this_binary().display()
        )
    );
    // A uretprobe asked of a uprobe program.
    if let ProbeAttach::Uprobe { function, ret, .. } = &mut how {
        *function = "pol_uprobe_target".into();
        *ret = true;
    }
    let e = attach(&bpf, "prog", &how).expect_err("wrong kind");
    assert!(
        matches!(
            e,
            AttachError::WrongProgramType {
                found: "uprobe",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn profile_samples_on_every_online_cpu() {
    require_kernel();
    let bpf = open(&[counter("prog", "perf_event", 0)]);
    let attached = attach(&bpf, "prog", &ProbeAttach::Profile { hz: 99 }).expect("profile");
    let cpus = aya::util::online_cpus().expect("online cpus").len();
    assert_eq!(attached.links(), cpus, "one perf event per online CPU");
    // cpu-clock ticks whether the CPU is busy or idle: about 99 per CPU per second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hits(&bpf).0 < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(hits(&bpf).0 >= 20, "samples: {}", hits(&bpf).0);
    let e = attach(&bpf, "prog", &ProbeAttach::Profile { hz: 0 }).expect_err("0 Hz");
    assert!(e
        .to_string()
        .starts_with("profile frequency 0 Hz is out of range"));
}

/// Program ids of every BPF link bpftool lists.
fn linked_prog_ids() -> Vec<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool runs");
    assert!(out.status.success(), "bpftool link show failed");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    links
        .as_array()
        .expect("an array of links")
        .iter()
        .filter_map(|l| l["prog_id"].as_u64())
        .collect()
}

#[test]
#[cfg_attr(
    pol_no_bpftool,
    ignore = "kernel test: needs root, bpf() and bpftool, unavailable at build time (CI=true runs it)"
)]
fn attach_all_is_all_or_nothing() {
    require_kernel();
    let bpf = open(&[
        counter("first", "tracepoint syscalls/sys_enter_openat", 8),
        counter("second", "tracepoint syscalls/sys_enter_openat", 8),
    ]);
    let good = vec![
        (
            "first".to_string(),
            tracepoint("syscalls", "sys_enter_openat"),
        ),
        (
            "second".to_string(),
            tracepoint("syscalls", "sys_enter_close"),
        ),
    ];
    let all = attach_all(&bpf, &good).expect("both attach");
    let ids: Vec<u64> = all.iter().map(|a| u64::from(a.prog_id())).collect();
    let linked = linked_prog_ids();
    assert!(
        ids.iter().all(|id| linked.contains(id)),
        "both linked: {ids:?} in {linked:?}"
    );
    drop(all);
    assert!(
        !linked_prog_ids().iter().any(|id| ids.contains(id)),
        "dropping detached both"
    );

    let bad = vec![
        (
            "first".to_string(),
            tracepoint("syscalls", "sys_enter_openat"),
        ),
        (
            "second".to_string(),
            tracepoint("syscalls", "sys_enter_opnat"),
        ),
    ];
    let e = attach_all(&bpf, &bad).expect_err("the second does not exist");
    assert_eq!(
        e.to_string(),
        "tracepoint syscalls:sys_enter_opnat does not exist on this kernel"
    );
    assert!(
        !linked_prog_ids().iter().any(|id| ids.contains(id)),
        "the first was detached again"
    );
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn kinds_this_kernel_lacks_are_refused_in_one_sentence() {
    require_kernel();
    let kprobe = ProbeAttach::Kprobe {
        function: "do_sys_openat2".into(),
        ret: false,
    };
    let has_kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    match supported(&kprobe) {
        Ok(()) => assert!(has_kprobes, "kprobes accepted without a kprobe PMU"),
        Err(e) => assert_eq!(
            e.to_string(),
            "this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices and \
             no kprobe_events in /sys/kernel/tracing; CONFIG_KPROBES is off): kprobe probes \
             cannot run here"
        ),
    }
    for how in [
        ProbeAttach::Fentry {
            function: "do_sys_openat2".into(),
            ret: false,
        },
        ProbeAttach::Lsm {
            hook: "file_open".into(),
        },
    ] {
        if let Err(e) = supported(&how) {
            let text = e.to_string();
            assert!(
                text.starts_with("this kernel has no ") && text.ends_with(" cannot run here"),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
            eprintln!("{how}: {text}");
            // attach refuses it the same way before looking at the object.
            let bpf = open(&[counter("prog", "tracepoint syscalls/sys_enter_openat", 8)]);
            let e = attach(&bpf, "prog", &how).expect_err("refused");
            assert_eq!(e.to_string(), text);
        }
    }
}
