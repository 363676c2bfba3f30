//! No input makes the compiler panic or hang: mutated examples and random token soup go
//! through the whole pipeline (parse, check, lower, select, object), and every error
//! carries a span inside the file.

use pol_compiler::driver;

/// A small deterministic PRNG (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "drop ",
    "pass ",
    "default ",
    "malformed ",
    "count c ",
    "count k[ip.src] ",
    "tcp.dport",
    "ip.src",
    "ip6.src",
    "udp.sport",
    "vlan.id",
    "icmp.type",
    "tcp.syn",
    " == ",
    " != ",
    " < ",
    " in ",
    " and ",
    " or ",
    "not ",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "22",
    "65536",
    "10.0.0.0/8",
    "2001:db8::/32",
    "192.0.2.1",
    "1..5",
    "\"s\"",
    "set s: port = ",
    "set a: cidr = ",
    "const k = 1",
    "filter f on xdp(\"eth0\") ",
    "filter g on tc(\"eth0\", ingress) ",
    "test \"t\" on f ",
    "packet tcp ",
    "=> drop",
    "\n",
    "import std.net",
    "std.net.rfc1918",
    "ip4",
    "tcp",
];

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("examples")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pol"))
        .map(|e| std::fs::read_to_string(e.path()).expect("readable"))
        .collect();
    v.sort();
    v
}

fn compile_checked(src: &str) {
    match driver::compile(src) {
        Ok(c) => assert!(!c.object.is_empty()),
        Err(diags) => {
            assert!(
                diags.iter().any(|d| d.is_error()),
                "failed without an error:\n{src}"
            );
            for d in &diags {
                let s = d.primary_span();
                assert!(
                    s.start <= s.end && s.end <= src.len(),
                    "span {s:?} outside the input:\n{src}"
                );
            }
        }
    }
}

#[test]
fn mutated_examples_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let bases = examples();
    let iters: usize = std::env::var("POL_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for _ in 0..iters {
        let mut src = bases[rng.below(bases.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(src.len() + 1);
            let pos = (0..=pos)
                .rev()
                .find(|&p| src.is_char_boundary(p))
                .unwrap_or(0);
            match rng.below(3) {
                0 => src.insert_str(pos, PIECES[rng.below(PIECES.len())]),
                1 => {
                    let end = (pos + 1 + rng.below(12)).min(src.len());
                    let end = (end..=src.len())
                        .find(|&p| src.is_char_boundary(p))
                        .unwrap_or(src.len());
                    src.replace_range(pos..end, "");
                }
                _ => {
                    let end = (pos + rng.below(8)).min(src.len());
                    let end = (end..=src.len())
                        .find(|&p| src.is_char_boundary(p))
                        .unwrap_or(src.len());
                    src.replace_range(pos..end, PIECES[rng.below(PIECES.len())]);
                }
            }
        }
        compile_checked(&src);
    }
}

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    for _ in 0..300 {
        let n = rng.below(40);
        let src: String = (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect();
        compile_checked(&src);
    }
}
