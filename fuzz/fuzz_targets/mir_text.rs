//! The MIR text parser on arbitrary input: it returns a module or an error, never panics,
//! and a module it returns prints to text that parses back to the same module
//! (`pol_compiler::mir::fuzz::text`, which the test suite also runs over a corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(bug) = pol_compiler::mir::fuzz::text(data) {
        panic!("{bug}");
    }
});
