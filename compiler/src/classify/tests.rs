//! The classifier against the first-match reference: hand-made cases, adversarial random
//! rule sets (overlaps, shadowing, wildcards, v4 and v6) and ClassBench-shaped sets.

use super::gen::{self, Shape};
use super::maps::Maps;
use super::tuplemerge::{self, build, rule_lens, Config};
use super::*;
use crate::mir::gen::Rng;

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    x
}

fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Header {
    Header {
        family: V4,
        proto: 6,
        vlan: 0,
        sport,
        dport,
        src: v4(src),
        dst: v4(dst),
    }
}

/// Builds, then checks every header against the reference; returns the average number of
/// tables a header looked at (probed or skipped by the table's filter).
fn check(rules: &[Rule], headers: &[Header], cfg: Config) -> Result<f64, ClassifyError> {
    let c = build(rules, cfg)?;
    let maps = Maps::of(&c);
    let index = maps.index(cfg.bucket_max);
    let mut probes = 0;
    for h in headers {
        let got = maps.lookup(&index, h);
        let want = reference(rules, h);
        assert_eq!(
            got.rule,
            want,
            "header {h:?}: classifier {:?}, reference {want:?}\nrules {:?}\ntables:\n{}",
            got.rule,
            want.map(|i| rules[i]),
            c.describe_tables()
        );
        assert!(got.probes + got.filtered <= c.tables.len());
        assert!(got.hits <= got.probes);
        probes += got.probes + got.filtered;
    }
    Ok(probes as f64 / headers.len().max(1) as f64)
}

#[test]
fn lengths_of_ranges_are_the_bits_their_ends_share() {
    let mut r = Rule {
        family: Range::exact(V4),
        src: Prefix::v4([10, 0, 0, 0], 8),
        ..Rule::default()
    };
    r.dport = Range::new(1024, 65535);
    r.sport = Range::new(6000, 6063);
    r.proto = Range::exact(17);
    // 6000 ^ 6063 = 0x00df: the ends share their top 8 bits.
    assert_eq!(rule_lens(&r), [8, 8, 0, 8, 0, 8, 0]);
    r.dport = Range::new(0, 1023);
    assert_eq!(rule_lens(&r)[4], 6);
    r.dport = Range::exact(443);
    assert_eq!(rule_lens(&r)[4], 16);
}

#[test]
fn masks_keep_the_hashed_bits_in_the_key_layout() {
    let m = tuplemerge::mask(&[8, 0, 0, 6, 16, 12, 0]);
    assert_eq!(m[4], 0xff);
    assert_eq!(m[5], 0);
    // sport: the top 6 bits of 16, little-endian.
    assert_eq!(&m[8..10], &0xfc00u16.to_le_bytes());
    assert_eq!(&m[10..12], &[0xff, 0xff]);
    assert_eq!(&m[16..18], &[0xff, 0xf0]);
    assert!(m[18..48].iter().all(|&b| b == 0));
}

#[test]
fn first_match_wins_over_a_more_specific_later_rule() {
    let rules = [
        Rule {
            family: Range::exact(V4),
            dst: Prefix::v4([192, 0, 2, 0], 24),
            proto: Range::exact(6),
            ..Rule::default()
        },
        Rule {
            family: Range::exact(V4),
            src: Prefix::v4([10, 1, 2, 3], 32),
            dst: Prefix::v4([192, 0, 2, 7], 32),
            proto: Range::exact(6),
            dport: Range::exact(22),
            ..Rule::default()
        },
        Rule {
            dport: Range::new(20, 25),
            ..Rule::default()
        },
    ];
    let headers = [
        tcp([10, 1, 2, 3], [192, 0, 2, 7], 1000, 22),
        tcp([10, 1, 2, 3], [198, 51, 100, 7], 1000, 22),
        tcp([10, 1, 2, 3], [198, 51, 100, 7], 1000, 26),
    ];
    let c = build(&rules, Config::default()).expect("build");
    let maps = Maps::of(&c);
    let index = maps.index(c.config.bucket_max);
    let got: Vec<Option<usize>> = headers
        .iter()
        .map(|h| maps.lookup(&index, h).rule)
        .collect();
    assert_eq!(got, [Some(0), Some(2), None]);
    // The first header stops after the first table: nothing can beat rule 0.
    assert_eq!(maps.lookup(&index, &headers[0]).probes, 1);
}

#[test]
fn bad_rules_are_refused_with_their_index() {
    let rules = [
        Rule::default(),
        Rule {
            src: Prefix::v4([10, 0, 0, 0], 8),
            ..Rule::default()
        },
    ];
    assert_eq!(
        build(&rules, Config::default()).err(),
        Some(ClassifyError::BadRule {
            rule: 1,
            problem: RuleProblem::PrefixWithoutFamily
        })
    );
    let long = [Rule {
        family: Range::exact(V4),
        dst: Prefix::v4([10, 0, 0, 0], 33),
        ..Rule::default()
    }];
    assert!(matches!(
        build(&long, Config::default()),
        Err(ClassifyError::BadRule {
            problem: RuleProblem::PrefixTooLong,
            ..
        })
    ));
}

#[test]
fn duplicates_and_covered_rules_do_not_fill_buckets() {
    // 100 copies of one rule and 100 narrower rules under it: one bucket entry is enough.
    let wide = Rule {
        family: Range::exact(V4),
        proto: Range::exact(6),
        ..Rule::default()
    };
    let mut rules = vec![wide; 100];
    for p in 0..100 {
        rules.push(Rule {
            sport: Range::new(p, p + 7000),
            ..wide
        });
    }
    let c = build(&rules, Config::default()).expect("build");
    assert!(c.shadowed >= 190, "{} shadowed", c.shadowed);
    let headers: Vec<Header> = (0..50)
        .map(|p| tcp([1, 2, 3, 4], [5, 6, 7, 8], p, 80))
        .collect();
    check(&rules, &headers, Config::default()).expect("build");
}

#[test]
fn rules_alike_in_every_hashed_bit_overflow_then_fail_cleanly() {
    // Ranges sharing no leading bits cannot be told apart by any table.
    let rules: Vec<Rule> = (0..40u16)
        .map(|i| Rule {
            family: Range::exact(V4),
            dport: Range::new(i, 40000 + i),
            sport: Range::new(i, 40000 - i),
            ..Rule::default()
        })
        .collect();
    let cfg = Config::default();
    assert_eq!(
        build(&rules, cfg).err(),
        Some(ClassifyError::BucketFull {
            rule: cfg.bucket_max,
            max: cfg.bucket_max
        })
    );
    let few = &rules[..cfg.bucket_max];
    let headers: Vec<Header> = (0..100)
        .map(|p| tcp([1, 2, 3, 4], [5, 6, 7, 8], p * 7, p * 400))
        .collect();
    check(few, &headers, cfg).expect("a full bucket still builds");
}

/// Rules from small pools so that they overlap, nest, shadow and wildcard each other.
fn adversarial(rng: &mut Rng, n: usize) -> Vec<Rule> {
    let nets4: [([u8; 4], u8); 8] = [
        ([10, 0, 0, 0], 8),
        ([10, 1, 0, 0], 16),
        ([10, 1, 2, 0], 24),
        ([10, 1, 2, 3], 32),
        ([10, 1, 2, 128], 25),
        ([192, 0, 2, 0], 24),
        ([192, 0, 2, 7], 32),
        ([0, 0, 0, 0], 0),
    ];
    let mut six = [0u8; 16];
    six[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    let nets6: [([u8; 16], u8); 4] = [
        (six, 32),
        (six, 64),
        (
            {
                let mut a = six;
                a[15] = 1;
                a
            },
            128,
        ),
        ([0; 16], 0),
    ];
    let ports: [(u16, u16); 8] = [
        (0, 65535),
        (22, 22),
        (80, 80),
        (0, 1023),
        (1024, 65535),
        (20, 100),
        (79, 81),
        (443, 443),
    ];
    (0..n)
        .map(|i| {
            let family = rng.below(10);
            let mut r = Rule {
                action: i as u32,
                ..Rule::default()
            };
            if family < 7 {
                r.family = Range::exact(V4);
                let (a, l) = nets4[rng.below(8) as usize];
                r.src = Prefix::v4(a, l);
                let (a, l) = nets4[rng.below(8) as usize];
                r.dst = Prefix::v4(a, l);
            } else if family < 9 {
                r.family = Range::exact(V6);
                let (a, l) = nets6[rng.below(4) as usize];
                r.src = Prefix::v6(a, l);
                let (a, l) = nets6[rng.below(4) as usize];
                r.dst = Prefix::v6(a, l);
            }
            r.proto = match rng.below(4) {
                0 => Range::<u8>::ANY,
                1 => Range::exact(17),
                2 => Range::new(6, 17),
                _ => Range::exact(6),
            };
            let (lo, hi) = ports[rng.below(8) as usize];
            r.sport = Range::new(lo, hi);
            let (lo, hi) = ports[rng.below(8) as usize];
            r.dport = Range::new(lo, hi);
            if rng.chance(15) {
                r.vlan = Range::exact(rng.below(3) as u16);
            }
            r
        })
        .collect()
}

/// Headers inside random rules, plus headers at random from the same small pools.
fn headers_for(rng: &mut Rng, rules: &[Rule], n: usize) -> Vec<Header> {
    (0..n)
        .map(|_| {
            let r = &rules[rng.below(rules.len() as u64) as usize];
            let mut h = gen::header_in(rng, r);
            if rng.chance(30) {
                // Step off the rule: a neighbouring port, another protocol or VLAN.
                match rng.below(4) {
                    0 => h.dport = h.dport.wrapping_add(1),
                    1 => h.sport = h.sport.wrapping_sub(1),
                    2 => h.proto = if h.proto == 6 { 17 } else { 6 },
                    _ => h.vlan = rng.below(3) as u16,
                }
            }
            h
        })
        .collect()
}

#[test]
fn lookup_equals_reference_on_adversarial_rule_sets() {
    let configs = [
        Config::default(),
        Config {
            bucket_target: 1,
            bucket_max: 16,
            max_tables: 64,
            addr_step: 1,
        },
        Config {
            bucket_target: 2,
            bucket_max: 32,
            max_tables: 8,
            addr_step: 32,
        },
    ];
    let mut refused = 0;
    for seed in 0..120u64 {
        let mut rng = Rng::new(seed);
        let n = 1 + rng.below(300) as usize;
        let rules = adversarial(&mut rng, n);
        let headers = headers_for(&mut rng, &rules, 300);
        for (i, cfg) in configs.into_iter().enumerate() {
            match check(&rules, &headers, cfg) {
                Ok(_) => {}
                // Eight tables and small buckets are meant to run out on these sets.
                Err(ClassifyError::BucketFull { .. }) if i == 2 => refused += 1,
                Err(e) => panic!("seed {seed}, config {i}: {e}"),
            }
        }
    }
    assert!(refused < 100, "{refused} of 120 refused with 8 tables");
}

#[test]
fn lookup_equals_reference_on_classbench_shaped_sets() {
    for shape in Shape::ALL {
        for (n, seed) in [(100, 1), (1000, 2), (3000, 3)] {
            let rules = gen::rules(shape, n, seed);
            let headers = gen::trace(&rules, 2000, seed);
            let avg = check(&rules, &headers, Config::default())
                .unwrap_or_else(|e| panic!("{} {n}: {e}", shape.name()));
            assert!(avg >= 1.0, "{} {n}: {avg} probes", shape.name());
        }
    }
}

#[test]
fn generator_and_trace_are_deterministic_by_seed() {
    let a = gen::rules(Shape::Fw, 500, 7);
    assert_eq!(a, gen::rules(Shape::Fw, 500, 7));
    assert_ne!(a, gen::rules(Shape::Fw, 500, 8));
    assert_eq!(gen::trace(&a, 100, 1), gen::trace(&a, 100, 1));
    // Most trace headers hit a rule (they are drawn inside one).
    let t = gen::trace(&a, 1000, 1);
    let hits = t.iter().filter(|h| reference(&a, h).is_some()).count();
    assert!(hits > 850, "{hits} of 1000 headers match");
}

#[test]
fn acl_shape_follows_its_published_mix() {
    let rules = gen::rules(Shape::Acl, 10_000, 1);
    let tcp = rules.iter().filter(|r| r.proto == Range::exact(6)).count();
    let dst32 = rules.iter().filter(|r| r.dst.len == 32).count();
    // acl1: TCP 87.3%, about 70% /32 destinations.
    assert!((8300..9100).contains(&tcp), "{tcp} TCP rules");
    assert!((6500..7500).contains(&dst32), "{dst32} /32 destinations");
}

#[test]
fn maps_hold_every_kept_rule_once_and_descriptors_stop_the_search() {
    let rules = gen::rules(Shape::Ipc, 2000, 5);
    let c = build(&rules, Config::default()).expect("build");
    let maps = Maps::of(&c);
    assert_eq!(maps.entries.len() + c.shadowed, rules.len());
    assert_eq!(
        maps.descs.len(),
        c.config.max_tables + 1,
        "tables and the meta slot"
    );
    let unused = &maps.descs[c.tables.len()..];
    assert!(unused
        .iter()
        .all(|d| d[maps::DESC_STOP..maps::DESC_STOP + 4] == NO_MATCH.to_le_bytes()));
    // Tables are sorted by their best rule (the early stop depends on it).
    assert!(c.tables.windows(2).all(|w| w[0].min_rule < w[1].min_rule));
}

/// The data path for a small configuration, as the MIR filetest holds it (the filetest
/// runs the MIR verifier and codegen on it; `POL_BLESS=1` rewrites it from the generator).
#[test]
fn data_path_text_is_the_filetest() {
    let cfg = Config {
        bucket_target: 2,
        bucket_max: 4,
        max_tables: 8,
        addr_step: 8,
    };
    let sizes = datapath::Sizes {
        buckets: 16,
        entries: 32,
    };
    let text = format!("{}\n{}", datapath::text(&cfg, sizes), datapath::harness());
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mir/classify/datapath.mir"
    );
    let file = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var_os("POL_BLESS").is_some() {
        let body = format!(
            "test verify\n; The classifier's data path (compiler/src/classify/datapath.rs) for 8 \
             tables and buckets of 4,\n; with the XDP harness of its kernel test. Generated: \
             POL_BLESS=1 cargo test -p pol-compiler --lib classify\n\n{text}\n; expect:\n; ok\n"
        );
        std::fs::write(path, body).expect("write the filetest");
        return;
    }
    assert!(
        file.contains(&text),
        "{path} is not what datapath.rs generates; POL_BLESS=1 rewrites it"
    );
    crate::mir::verify_module(&crate::mir::parse_module(&text).expect("parses"))
        .expect("the MIR verifier accepts the data path");
}
