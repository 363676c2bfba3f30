//! The MIR text parser on arbitrary input: it returns a module or an error, never panics,
//! and a module it returns prints to text that parses back to the same module.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pol_compiler::mir::{parse_module, print};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = parse_module(text) else { return };
    let printed = print::module(&m);
    let again = parse_module(&printed)
        .unwrap_or_else(|e| panic!("printed module does not parse: {e}\n{printed}"));
    assert_eq!(
        print::module(&again),
        printed,
        "print/parse is not a fixed point"
    );
});
