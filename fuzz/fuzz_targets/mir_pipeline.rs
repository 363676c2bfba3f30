//! The pass pipeline on arbitrary MIR text: a module the verifier accepts is optimised,
//! still verifies, and compiles without an internal error
//! (`pol_compiler::mir::fuzz::pipeline`, which the test suite also runs over a corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(bug) = pol_compiler::mir::fuzz::pipeline(data) {
        panic!("{bug}");
    }
});
