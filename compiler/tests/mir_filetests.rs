//! MIR filetests, in the manner of Cranelift's: each `tests/mir/**/*.mir` file holds a
//! module, `test PASS` lines naming what to run (`print`, `verify`, `regalloc`, `codegen`,
//! and the optimisation passes `fold`, `thread`, `layout`, `opt`, which transform it)
//! and, after `; expect:`, the expected output as comments. One test runs them all;
//! `POL_BLESS=1 cargo test --test mir_filetests` rewrites the expectations.

use std::path::{Path, PathBuf};

use pol_compiler::codegen;
use pol_compiler::mir::{self, gen, parse_module, print, verify};

const EXPECT: &str = "; expect:";

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|e| e == "mir") {
            out.push(p);
        }
    }
}

/// Runs the passes a file names on its module; the output it should match.
fn run(passes: &[String], input: &str) -> String {
    let mut module = match parse_module(input) {
        Ok(m) => m,
        Err(e) => return format!("parse error: {e}\n"),
    };
    let mut out = String::new();
    for pass in passes {
        if passes.len() > 1 {
            out.push_str(&format!("== {pass} ==\n"));
        }
        let text = match pass.as_str() {
            "print" => print::module(&module),
            "verify" => match mir::verify_module(&module) {
                Ok(()) => "ok\n".to_string(),
                Err(errors) => verify::render(&errors),
            },
            "regalloc" => codegen::filetest_regalloc(&module),
            "codegen" => codegen::filetest_codegen(&module),
            "object" => object_listing(&module),
            // Transforming passes print the module they leave (and verify it).
            "fold" | "dse" | "sink" | "known" | "implied" | "unused" | "decide" | "thread"
            | "layout" | "opt" => {
                for f in &mut module.funcs {
                    match pass.as_str() {
                        "fold" => drop(mir::opt::fold(f)),
                        "thread" => drop(mir::opt::thread(f)),
                        "known" => drop(mir::opt::known(f)),
                        "implied" => drop(mir::opt::implied(f)),
                        "unused" => drop(mir::decide::unused(f)),
                        "decide" => drop(mir::decide::decide(f)),
                        "dse" => drop(mir::opt::dead_stores(f)),
                        "sink" => drop(mir::opt::sink_zeroing(f)),
                        "layout" => drop(mir::opt::layout(f)),
                        _ => drop(mir::opt::optimize_function(f)),
                    }
                }
                let mut text = print::module(&module);
                if let Err(e) = mir::verify_module(&module) {
                    text.push_str(&verify::render(&e));
                }
                text
            }
            other => format!("unknown pass {other:?}\n"),
        };
        out.push_str(&text);
    }
    out
}

/// Sections, symbols, relocations and BTF of the module's object, and what aya-obj
/// makes of it.
fn object_listing(m: &mir::Module) -> String {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let bytes = match codegen::object::object(m) {
        Ok((b, _)) => b,
        Err(e) => return format!("{e}\n"),
    };
    let mut out = String::new();
    let Ok(file) = object::File::parse(&*bytes) else {
        return "unparsable ELF\n".into();
    };
    out.push_str("sections:\n");
    for s in file.sections() {
        out.push_str(&format!(
            "  {} ({} bytes)\n",
            s.name().unwrap_or("?"),
            s.size()
        ));
        for (off, r) in s.relocations() {
            let target = match r.target() {
                object::RelocationTarget::Symbol(i) => file
                    .symbol_by_index(i)
                    .ok()
                    .and_then(|s| s.name().ok().map(str::to_owned)),
                _ => None,
            };
            let kind = match r.flags() {
                object::RelocationFlags::Elf { r_type } => r_type,
                _ => 0,
            };
            out.push_str(&format!(
                "    reloc @{off} type {kind} -> {}\n",
                target.unwrap_or_default()
            ));
        }
    }
    out.push_str("symbols:\n");
    for s in file.symbols() {
        let sec = s
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .and_then(|s| s.name().ok().map(str::to_owned));
        out.push_str(&format!(
            "  {} {:?} {} @{} size {}\n",
            s.name().unwrap_or("?"),
            s.kind(),
            if s.is_global() { "global" } else { "local" },
            sec.unwrap_or_default(),
            s.size()
        ));
    }
    if let Some(btf) = pol_compiler::obj::btf_section(&bytes) {
        out.push_str("btf:\n");
        for line in pol_compiler::obj::dump_btf(btf)
            .lines()
            .filter(|l| l.contains("FUNC"))
        {
            out.push_str(&format!("  {line}\n"));
        }
    }
    match aya_obj::Object::parse(&bytes) {
        Ok(o) => {
            let mut names: Vec<&String> = o.programs.keys().collect();
            names.sort();
            out.push_str(&format!(
                "aya-obj: programs {names:?}, maps {}\n",
                o.maps.len()
            ));
        }
        Err(e) => out.push_str(&format!("aya-obj: {e}\n")),
    }
    out
}

/// The text before `; expect:`, the `test` lines, and the expectation.
fn split(text: &str) -> (String, Vec<String>, Option<String>) {
    let mut input = String::new();
    let mut passes = Vec::new();
    let mut expected: Option<String> = None;
    for line in text.lines() {
        if let Some(exp) = &mut expected {
            let l = line.strip_prefix(';').unwrap_or(line);
            exp.push_str(l.strip_prefix(' ').unwrap_or(l));
            exp.push('\n');
        } else if line.trim_end() == EXPECT {
            expected = Some(String::new());
        } else if let Some(p) = line.strip_prefix("test ") {
            passes.extend(p.split_whitespace().map(str::to_owned));
            input.push_str(&format!("; {line}\n"));
        } else {
            input.push_str(line);
            input.push('\n');
        }
    }
    (input, passes, expected)
}

fn bless(path: &Path, text: &str, actual: &str) {
    let head = match text.find(EXPECT) {
        Some(i) => text.get(..i).unwrap_or(text).trim_end().to_string(),
        None => text.trim_end().to_string(),
    };
    let mut out = format!("{head}\n\n{EXPECT}\n");
    for line in actual.lines() {
        if line.is_empty() {
            out.push_str(";\n");
        } else {
            out.push_str(&format!("; {line}\n"));
        }
    }
    std::fs::write(path, out).expect("write blessed file");
}

#[test]
fn mir_filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mir");
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(
        all.len() >= 10,
        "expected the filetests under {}",
        root.display()
    );
    let blessing = std::env::var("POL_BLESS").as_deref() == Ok("1");
    let mut failures = Vec::new();
    for path in &all {
        let text = std::fs::read_to_string(path).expect("read filetest");
        let (input, passes, expected) = split(&text);
        let name = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        if passes.is_empty() {
            failures.push(format!("{name}: no `test` line"));
            continue;
        }
        let actual = run(&passes, &input);
        if expected.as_deref().map(str::trim_end) != Some(actual.trim_end()) {
            if blessing {
                bless(path, &text, &actual);
            } else {
                failures.push(format!(
                    "{name}: output differs\n--- expected\n{}\n--- actual\n{actual}",
                    expected.unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} filetest(s) failed (POL_BLESS=1 to accept):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Printing then parsing gives back the same module, for every filetest that parses.
#[test]
fn text_form_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mir");
    let mut all = Vec::new();
    files(&root, &mut all);
    for path in &all {
        let text = std::fs::read_to_string(path).expect("read filetest");
        let (input, _, _) = split(&text);
        let Ok(m) = parse_module(&input) else {
            continue;
        };
        let printed = print::module(&m);
        let again = parse_module(&printed)
            .unwrap_or_else(|e| panic!("{}: reparse: {e}\n{printed}", path.display()));
        assert_eq!(again, m, "{}: parse(print(m)) != m", path.display());
    }
}

/// Random modules (calls, loops, spills, subprograms): the text form round-trips, and
/// every one the verifier accepts compiles without an internal error (the allocation
/// checker passes). The kernel half of this property is in runtime/tests/mir_kernel.rs.
#[test]
fn random_modules_round_trip_and_compile() {
    let mut accepted = 0;
    let n = 300;
    for seed in 0..n {
        let m = gen::module(&mut gen::Rng::new(seed));
        let text = print::module(&m);
        let again = parse_module(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        assert_eq!(
            print::module(&again),
            text,
            "seed {seed}: print(parse(print(m))) differs"
        );
        if mir::verify_module(&m).is_err() {
            continue;
        }
        accepted += 1;
        if let Err(e) = codegen::compile(&m) {
            panic!("seed {seed}: {e}");
        }
    }
    assert!(
        accepted * 10 >= n * 9,
        "the generator should make verifiable modules: {accepted}/{n}"
    );
}

/// A bounded fuzz of the text parser and the pass pipeline: every filetest, mutated a few
/// hundred times (characters dropped, duplicated, swapped for digits and punctuation),
/// goes through the fuzz targets' checks (`mir::fuzz`: print/parse round trip, verify,
/// optimise, verify again, codegen). Errors in the input are fine; bugs are not.
#[test]
fn mutated_inputs_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mir");
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut rng = gen::Rng::new(7);
    let alphabet: Vec<char> = "0123456789v[]()+-,:=; \nblock%".chars().collect();
    let mut compiled = 0;
    for path in &all {
        let text = std::fs::read_to_string(path).expect("read filetest");
        let (input, _, _) = split(&text);
        let chars: Vec<char> = input.chars().collect();
        for _ in 0..200 {
            let mut c = chars.clone();
            for _ in 0..1 + rng.below(3) {
                if c.is_empty() {
                    break;
                }
                let i = rng.below(c.len() as u64) as usize;
                match rng.below(3) {
                    0 => {
                        c.remove(i);
                    }
                    1 => c.insert(i, c[i]),
                    _ => c[i] = alphabet[rng.below(alphabet.len() as u64) as usize],
                }
            }
            let mutated: String = c.into_iter().collect();
            // What the fuzz targets check (`fuzz/`, `tests/mir_fuzz.rs`).
            if let Err(bug) = mir::fuzz::text(mutated.as_bytes()) {
                panic!("{bug}\non:\n{mutated}");
            }
            match mir::fuzz::pipeline(mutated.as_bytes()) {
                Ok(verified) => compiled += usize::from(verified),
                Err(bug) => panic!("{bug}\non:\n{mutated}"),
            }
        }
    }
    assert!(compiled > 0, "some mutants should still compile");
}
