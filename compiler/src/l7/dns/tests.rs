//! Patterns, keys and the reference matcher; the stage's MIR verifies and compiles.

use super::*;

fn labels(name: &str) -> Vec<Vec<u8>> {
    if name.is_empty() {
        return vec![];
    }
    name.split('.').map(|l| l.as_bytes().to_vec()).collect()
}

/// Does some pattern's key prefix the name's key, as the LPM trie decides?
fn lpm(p: &Pattern, name: &str) -> bool {
    let pk = pattern_key(p);
    let nk = name_key(&labels(name));
    let bits = u32::from_ne_bytes([pk[0], pk[1], pk[2], pk[3]]) as usize;
    let nbits = u32::from_ne_bytes([nk[0], nk[1], nk[2], nk[3]]) as usize;
    if bits > nbits {
        return false;
    }
    (0..bits).all(|b| {
        let (byte, bit) = (4 + b / 8, 7 - b % 8);
        (pk[byte] >> bit) & 1 == (nk[byte] >> bit) & 1
    })
}

#[test]
fn patterns_parse_and_fold_case() {
    let p = parse_pattern("*.Blocked.TEST.").unwrap_or_else(|e| panic!("{e}"));
    assert!(p.wildcard);
    assert_eq!(p.labels, labels("blocked.test"));
    assert_eq!(p.to_string(), "*.blocked.test");
    let e = parse_pattern("www.example.com").unwrap_or_else(|e| panic!("{e}"));
    assert!(!e.wildcard);
}

#[test]
fn bad_patterns_say_why() {
    for (text, want) in [
        ("", "empty name"),
        ("a..b", "empty label"),
        ("*example.com", "whole first label"),
        ("a.*.com", "whole first label"),
        ("a*.com", "whole first label"),
        ("a b.com", "white space"),
    ] {
        match parse_pattern(text) {
            Ok(p) => panic!("{text} parsed as {p}"),
            Err(e) => assert!(e.contains(want), "{text}: {e}"),
        }
    }
    let long = "a".repeat(64);
    assert!(parse_pattern(&long).is_err_and(|e| e.contains("at most 63")));
    // 127 one-byte labels are 255 bytes on the wire; one more is too long.
    let ok = vec!["a"; 127].join(".");
    assert!(parse_pattern(&ok).is_ok());
    let too = vec!["a"; 128].join(".");
    assert!(parse_pattern(&too).is_err_and(|e| e.contains("at most 255")));
}

#[test]
fn keys_match_exactly_what_the_reference_does() {
    let pats = ["*.blocked.test", "blocked.test", "a.b.c", "*.c", "*", "x.y"];
    let names = [
        "blocked.test",
        "a.blocked.test",
        "A.BLOCKED.Test",
        "xblocked.test",
        "blocked.testx",
        "test",
        "a.b.c",
        "b.c",
        "c",
        "z.a.b.c",
        "",
        "x.y",
        "w.x.y",
    ];
    for p in pats {
        let pat = parse_pattern(p).unwrap_or_else(|e| panic!("{e}"));
        for n in names {
            assert_eq!(
                lpm(&pat, n),
                matches(&pat, &labels(n)),
                "pattern {p}, name {n:?}"
            );
        }
    }
    let w = parse_pattern("*.blocked.test").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches(&w, &labels("a.blocked.test")));
    assert!(!matches(&w, &labels("blocked.test")));
}

fn query(name: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in labels(name) {
        m.push(l.len() as u8);
        m.extend(l);
    }
    m.extend([0, 0, 1, 0, 1]);
    m
}

#[test]
fn questions_are_read_as_the_kernel_reads_them() {
    assert_eq!(question(&query("a.b.test")), Some(labels("a.b.test")));
    // Cut short before the type.
    let q = query("a.b");
    assert_eq!(question(&q[..q.len() - 1]), None);
    // Two questions.
    let mut two = query("a.b");
    two[5] = 2;
    assert_eq!(question(&two), None);
    // A pointer back to a name before the question (not possible in a real question,
    // but followed): a label then a pointer to offset 12 is a loop, refused.
    let mut lp = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    lp.extend([1, b'a', 0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        question(&lp),
        None,
        "pointer to itself loops until hops run out"
    );
    // A forward pointer.
    let mut fw = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    fw.extend([0xc0, 20, 0, 1, 0, 1, 0, 0, 1, b'x', 0]);
    assert_eq!(question(&fw), None);
}

#[test]
fn the_stage_verifies_and_compiles() {
    let text = text(&Names::of_filter("f"));
    let m = crate::mir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    if let Err(errs) = crate::mir::verify_module(&m) {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("{}\n{text}", all.join("\n"));
    }
    crate::codegen::compile(&m).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn keys_decode_back_to_their_patterns() {
    for text in [
        "*.blocked.test",
        "blocked.test",
        "a.b.c",
        "*",
        "x",
        "*.A.Example",
    ] {
        let p = parse_pattern(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key_pattern(&pattern_key(&p)), Some(p), "{text}");
    }
    // A question's key is no pattern's when cut mid-label.
    let mut k = pattern_key(&parse_pattern("ab.test").unwrap_or_else(|e| panic!("{e}")));
    k[0] = 16;
    assert_eq!(key_pattern(&k), None);
}
