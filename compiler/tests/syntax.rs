//! Parser golden tests: the AST of every `tests/cases/syntax/ok/*.pol`, the rendered
//! diagnostics (and recovered tree) of every `tests/cases/syntax/err/*.pol`, and a
//! robustness run over mutated inputs. Snapshots live in `tests/snapshots/`.

use pol_compiler::diag::render_all;
use pol_compiler::syntax::{parse, print};
use std::path::Path;

/// Runs `f` with snapshots going to the workspace's `tests/snapshots`.
fn with_snapshots(f: impl FnOnce()) {
    insta::with_settings!({
        snapshot_path => "../../tests/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        f();
    });
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The source, then what the parser made of it.
fn report(name: &str, src: &str) -> String {
    let (file, diags) = parse(src);
    let mut out = format!("--- {name}\n{src}");
    if !src.ends_with('\n') {
        out.push('\n');
    }
    if !diags.is_empty() {
        out.push_str("--- diagnostics\n");
        out.push_str(&render_all(&diags, name, src));
    }
    out.push_str("--- tree\n");
    out.push_str(&print::dump(&file));
    out
}

#[test]
fn syntax_ok() {
    with_snapshots(|| {
        insta::glob!("../../tests/cases/syntax/ok", "*.pol", |path| {
            let src = read(path);
            let name = file_name(path);
            let (_, diags) = parse(&src);
            assert!(
                diags.is_empty(),
                "{name} should parse cleanly:\n{}",
                render_all(&diags, &name, &src)
            );
            insta::assert_snapshot!(report(&name, &src));
        });
    });
}

#[test]
fn syntax_err() {
    with_snapshots(|| {
        insta::glob!("../../tests/cases/syntax/err", "*.pol", |path| {
            let src = read(path);
            let name = file_name(path);
            let (_, diags) = parse(&src);
            assert!(!diags.is_empty(), "{name} should report an error");
            // Each file says how many errors it expects on its first line: `# errors: N`.
            if let Some(n) = src
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# errors: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
            {
                assert_eq!(
                    diags.len(),
                    n,
                    "{name}:\n{}",
                    render_all(&diags, &name, &src)
                );
            }
            insta::assert_snapshot!(report(&name, &src));
        });
    });
}

/// xorshift64*: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces to splice into inputs: tokens, half tokens and odd characters.
const SPLICES: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "::",
    ".",
    "..",
    "=>",
    "==",
    "\"",
    "\"x",
    "drop",
    "pass",
    "default",
    "malformed",
    "count",
    "not",
    "and",
    "or",
    "in",
    "filter",
    "probe",
    "rule",
    "test",
    "packet",
    "emit",
    "on",
    "set",
    "const",
    "import",
    "\n",
    " ",
    "1.2.3.4/",
    "300.1.1.1",
    "2001:db8:::1",
    "::",
    "0x",
    "99999999999999999999999",
    "$",
    "é",
    "#",
    "//",
    "a:b:c",
    "\\",
    "1..",
    "..2",
    "{ a: }",
    "x(",
    "ip.src in",
];

fn char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

fn mutate(rng: &mut Rng, src: &str) -> String {
    let mut s = src.to_owned();
    for _ in 0..1 + rng.below(4) {
        let at = char_boundary(&s, rng.below(s.len() + 1));
        match rng.below(4) {
            0 => {
                let end = char_boundary(&s, at + rng.below(20));
                s.replace_range(at..end, "");
            }
            1 => s.insert_str(at, SPLICES[rng.below(SPLICES.len())]),
            2 => {
                let end = char_boundary(&s, at + rng.below(40));
                let piece = s[at..end].to_owned();
                let to = char_boundary(&s, rng.below(s.len() + 1));
                s.insert_str(to, &piece);
            }
            _ => s.truncate(at),
        }
    }
    s
}

#[test]
fn mutated_inputs_never_panic() {
    let mut sources: Vec<String> = Vec::new();
    for dir in ["ok", "err"] {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/cases/syntax")
            .join(dir);
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        sources.extend(entries.iter().map(|p| read(p)));
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // POL_FUZZ_ITERS=100000 for a longer local run.
    let iters = std::env::var("POL_FUZZ_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600);
    for i in 0..iters {
        let base = &sources[i % sources.len()];
        let input = mutate(&mut rng, base);
        let (_, diags) = parse(&input);
        for d in &diags {
            let s = d.primary_span();
            assert!(
                s.start <= s.end && s.end <= input.len(),
                "span {s:?} out of bounds for input #{i}:\n{input}"
            );
        }
        // Rendering must not panic either.
        let _ = render_all(&diags, "fuzz.pol", &input);
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let n = 100_000;
    let inputs = [
        (
            format!("const x = {}1{}", "(".repeat(n), ")".repeat(n)),
            "E0205",
        ),
        (format!("const x = {}a", "not ".repeat(n)), "E0205"),
        // A flat chain is not deep, but it has a length limit of its own.
        (format!("const x = a{}", " or a == 1".repeat(n)), "L0201"),
        (format!("const x = {}", "[".repeat(n)), "E0205"),
    ];
    for (src, code) in &inputs {
        let (file, diags) = parse(src);
        assert!(file.items.is_empty());
        assert_eq!(diags.len(), 1, "{:?}", diags);
        assert_eq!(diags[0].code, *code);
    }
    // A flat chain of 129 (or 2000) comparisons is not nested at all.
    for terms in [129, 2000] {
        let chain = (0..terms)
            .map(|i| format!("tcp.dport == {i}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let (file, diags) = parse(&format!(
            "filter f on xdp(\"e\") {{ drop {chain} default pass }}"
        ));
        assert!(diags.is_empty(), "{terms} terms: {diags:?}");
        assert_eq!(file.items.len(), 1);
    }
    // Wide is fine: a set of many elements, a long chain of rules.
    let set = (0..n)
        .map(|i| format!("{i}..{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let (file, diags) = parse(&format!("set s: port = {{ {set} }}"));
    assert!(diags.is_empty());
    assert_eq!(file.items.len(), 1);
    let rules = "drop tcp.dport == 1 and ip.src in { 10.0.0.0/8, ::1 }\n".repeat(10_000);
    let (_, diags) = parse(&format!("filter f on xdp {{ {rules} }}"));
    assert!(diags.is_empty());
}

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..300 {
        let len = rng.below(60);
        let src: Vec<&str> = (0..len)
            .map(|_| SPLICES[rng.below(SPLICES.len())])
            .collect();
        let sep = if rng.below(2) == 0 { " " } else { "" };
        let input = src.join(sep);
        let (_, diags) = parse(&input);
        let _ = render_all(&diags, "soup.pol", &input);
    }
}
