//! The TLS stage's MIR verifies and compiles with the DNS callbacks it uses.

use super::*;

#[test]
fn the_hello_verifies_and_compiles() {
    let names = Names::of_filter("f");
    let text = format!("{}\n{}", dns::text(&names), text("f", &names));
    let m = crate::mir::parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    if let Err(errs) = crate::mir::verify_module(&m) {
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("{}\n{text}", all.join("\n"));
    }
    crate::codegen::compile(&m).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn blocks_are_renumbered_densely() {
    let t = "block0:\n    jump block7\nblock7:\n    br eq v1, 0, block3, block0\nblock3:\n";
    assert_eq!(
        renumber(t),
        "block0:\n    jump block1\nblock1:\n    br eq v1, 0, block2, block0\nblock2:\n"
    );
}

#[test]
fn versions_have_names() {
    assert_eq!(version("tls13"), Some(0x0304));
    assert_eq!(version("TLS12"), Some(0x0303));
    assert_eq!(version("tls1.3"), None);
}
