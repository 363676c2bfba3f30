//! The MIR fuzz targets' bodies (`pol_compiler::mir::fuzz`, issue 8 §8) in every test
//! run, without libFuzzer's instrumented build (about 20 minutes on a loaded machine):
//! over the stored seeds (`fuzz/seeds/`: the inputs of earlier libFuzzer runs that reach
//! the parser's output, or the verifier's acceptance for the pipeline) and every MIR
//! filetest, then over a bounded number of seeded mutations of them and of random modules
//! from `mir::gen`. A failure prints the input; a libFuzzer run (`fuzz/run.sh`) searches
//! much further.

use std::path::{Path, PathBuf};

use pol_compiler::mir::{fuzz, gen, print};

/// How many mutated inputs each target gets (a few seconds in a debug build).
const MUTANTS: usize = 3000;

fn files(dir: &Path, ext: Option<&str>, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, ext, out);
        } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
            out.push(p);
        }
    }
}

/// The stored seeds of one target and the filetests, as bytes.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("../fuzz/seeds").join(target), None, &mut paths);
    let stored = paths.len();
    files(&root.join("tests/mir"), Some("mir"), &mut paths);
    assert!(stored > 50, "fuzz/seeds/{target} holds {stored} inputs");
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// One to four edits of the kinds that reach past a parser: a line dropped, repeated or
/// swapped, a number changed to an edge value, a byte changed.
fn mutate(rng: &mut gen::Rng, input: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(input).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..=rng.below(3) {
        if lines.is_empty() {
            break;
        }
        let n = lines.len() as u64;
        let i = rng.below(n) as usize;
        match rng.below(5) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(rng.below(n) as usize, l);
            }
            2 => lines.swap(i, rng.below(n) as usize),
            3 => {
                const EDGES: [&str; 8] = ["0", "1", "-1", "7", "255", "512", "4294967295", "8192"];
                let words: Vec<&str> = lines[i].split(' ').collect();
                let nums: Vec<usize> = (0..words.len())
                    .filter(|&k| words[k].trim_end_matches(',').parse::<i64>().is_ok())
                    .collect();
                if let Some(&k) = nums.get(rng.below(nums.len().max(1) as u64) as usize) {
                    let mut w: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
                    let comma = if w[k].ends_with(',') { "," } else { "" };
                    w[k] = format!("{}{comma}", EDGES[rng.below(EDGES.len() as u64) as usize]);
                    lines[i] = w.join(" ");
                }
            }
            _ => {
                let mut b = lines[i].clone().into_bytes();
                if !b.is_empty() {
                    let k = rng.below(b.len() as u64) as usize;
                    b[k] = b"vblock0123456789:,=[]()+- \n"[rng.below(27) as usize];
                }
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
        }
    }
    lines.join("\n").into_bytes()
}

fn report(target: &str, input: &[u8], bug: &str) -> String {
    format!(
        "{target} found a bug on this input:\n{}\n---\n{bug}",
        String::from_utf8_lossy(input)
    )
}

#[test]
fn text_parser_over_seeds_and_mutants() {
    let seeds = seeds("mir_text");
    for s in &seeds {
        if let Err(bug) = fuzz::text(s) {
            panic!("{}", report("mir_text", s, &bug));
        }
    }
    let mut rng = gen::Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..MUTANTS {
        let s = &seeds[rng.below(seeds.len() as u64) as usize];
        let m = mutate(&mut rng, s);
        if let Err(bug) = fuzz::text(&m) {
            panic!("{}", report("mir_text", &m, &bug));
        }
    }
}

#[test]
fn pass_pipeline_over_seeds_and_mutants() {
    let seeds = seeds("mir_pipeline");
    // The seeds are verified modules: most must get through the whole pipeline, or the
    // test checks less than it says (a change to the text form would make them all
    // unparsable and this test vacuous).
    let mut deep = 0;
    for s in &seeds {
        match fuzz::pipeline(s) {
            Ok(d) => deep += usize::from(d),
            Err(bug) => panic!("{}", report("mir_pipeline", s, &bug)),
        }
    }
    assert!(
        deep * 2 > seeds.len(),
        "only {deep} of {} seeds verify",
        seeds.len()
    );
    let mut rng = gen::Rng::new(0x2545_f491_4f6c_dd1d);
    let mut verified = 0;
    for k in 0..MUTANTS {
        // Every fourth input a random well-typed module (calls, loops, spills), mutated
        // or not.
        let input = if k % 4 == 0 {
            let m = print::module(&gen::module(&mut rng));
            if rng.chance(50) {
                mutate(&mut rng, m.as_bytes())
            } else {
                m.into_bytes()
            }
        } else {
            let s = &seeds[rng.below(seeds.len() as u64) as usize];
            mutate(&mut rng, s)
        };
        match fuzz::pipeline(&input) {
            Ok(d) => verified += usize::from(d),
            Err(bug) => panic!("{}", report("mir_pipeline", &input, &bug)),
        }
    }
    // Mutants the verifier accepts are the ones that test the passes.
    assert!(verified > MUTANTS / 10, "only {verified} mutants verified");
}
