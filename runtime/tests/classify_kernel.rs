//! Kernel test of the classifier's data path (issue 11): the `classify` MIR subprogram,
//! compiled by `pol_compiler::codegen`, loaded with its maps filled from the TupleMerge
//! tables of ClassBench-shaped rule sets; every header of a trace goes through
//! BPF_PROG_TEST_RUN and must get the index of the first-match reference.

mod common;

use std::os::fd::AsFd;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader, VerifierLogLevel};
use common::require_kernel;
use pol_compiler::classify::datapath::{self, Sizes, BUCKETS, DESCS, ENTRIES};
use pol_compiler::classify::gen::{self, Shape};
use pol_compiler::classify::maps::{
    Maps, BUCKET_BYTES, BUCKET_KEY_BYTES, DESC_BYTES, ENTRY_BYTES, KEY_BYTES,
};
use pol_compiler::classify::tuplemerge::{self, build, build_with_head, Config};
use pol_compiler::classify::{reference, Rule, NO_MATCH};
use pol_compiler::codegen::object::object;

/// Loads the data path for `rules` with its maps filled (and the head a filter's
/// classifier gets, as code, when `head`); returns it, its verified instruction count and
/// the head's length.
fn load(rules: &[Rule], cfg: Config, head: bool) -> (Ebpf, u32, usize) {
    let c = if head {
        build_with_head(rules, cfg)
    } else {
        build(rules, cfg)
    };
    let c = c.expect("classifier builds");
    let maps = Maps::of(&c);
    let sizes = Sizes {
        buckets: maps.buckets.len(),
        entries: maps.entries.len(),
    };
    let m = datapath::module_with_head(&cfg, sizes, &maps.head).expect("data path parses");
    let (bytes, _) = object(&m).unwrap_or_else(|e| panic!("codegen: {e}"));
    let mut bpf = EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::STATS)
        .load(&bytes)
        .expect("aya loads the object");
    {
        let mut descs: Array<&mut MapData, [u8; DESC_BYTES]> =
            Array::try_from(bpf.map_mut(DESCS).expect("descs")).expect("array");
        for (i, d) in maps.descs.iter().enumerate() {
            descs.set(i as u32, **d, 0).expect("fill descs");
        }
    }
    {
        let mut b: HashMap<&mut MapData, [u8; BUCKET_KEY_BYTES], [u8; BUCKET_BYTES]> =
            HashMap::try_from(bpf.map_mut(BUCKETS).expect("buckets")).expect("hash");
        for (k, v) in &maps.buckets {
            b.insert(k, v, 0).expect("fill buckets");
        }
    }
    {
        let mut e: Array<&mut MapData, [u8; ENTRY_BYTES]> =
            Array::try_from(bpf.map_mut(ENTRIES).expect("entries")).expect("array");
        for (i, x) in maps.entries.iter().enumerate() {
            e.set(i as u32, x, 0).expect("fill entries");
        }
    }
    let p: &mut Xdp = bpf
        .program_mut("classify_xdp")
        .expect("program")
        .try_into()
        .expect("xdp");
    p.load()
        .unwrap_or_else(|e| panic!("verifier refused the data path: {e:?}"));
    let insns = p
        .info()
        .expect("info")
        .verified_instruction_count()
        .unwrap_or(0);
    (bpf, insns, c.head)
}

/// The kernel's answer for one header.
fn classify(bpf: &Ebpf, bytes: &[u8; KEY_BYTES]) -> Option<usize> {
    let p: &Xdp = bpf
        .program("classify_xdp")
        .expect("program")
        .try_into()
        .expect("xdp");
    let fd = p.fd().expect("loaded");
    let run = pol_runtime::sys::test_run(fd.as_fd(), bytes, 1).expect("test run");
    assert_eq!(run.retval, 2, "XDP_PASS");
    let r = u32::from_le_bytes([
        run.data_out[0],
        run.data_out[1],
        run.data_out[2],
        run.data_out[3],
    ]);
    (r != NO_MATCH).then_some(r as usize)
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn kernel_classifier_gives_the_first_match_of_every_trace_header() {
    require_kernel();
    // The last set (wide rules first) gets a head, so its code runs here too.
    for (shape, n, seed) in [
        (Shape::Acl, 2000, 11),
        (Shape::Fw, 2000, 11),
        (Shape::Ipc, 2000, 11),
        (Shape::Fw, 10_000, 1),
    ] {
        let rules = gen::rules(shape, n, seed);
        let (bpf, insns, head) = load(&rules, Config::default(), true);
        eprintln!(
            "{} {n}: verified {insns} instructions, head of {head} rules",
            shape.name()
        );
        if n == 10_000 {
            assert!(
                head >= 32,
                "this firewall set gets a head: its code is tested here"
            );
        }
        let headers = gen::trace(&rules, 1500, seed);
        let mut hits = 0;
        for h in &headers {
            let want = reference(&rules, h);
            let got = classify(&bpf, &tuplemerge::header_bytes(h));
            assert_eq!(got, want, "{} {n}: header {h:?}", shape.name());
            hits += usize::from(want.is_some());
        }
        assert!(
            hits > headers.len() / 2,
            "{hits} hits: the trace must exercise matches"
        );
    }
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn an_empty_classifier_matches_nothing() {
    require_kernel();
    let (bpf, _, _) = load(&[], Config::default(), false);
    let h = gen::trace(&[], 1, 1)[0];
    assert_eq!(classify(&bpf, &tuplemerge::header_bytes(&h)), None);
}
