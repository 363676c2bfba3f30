//! The bodies of the MIR fuzz targets (issue 8 §8), shared by `fuzz/` (libFuzzer, run by
//! `fuzz/run.sh`) and by `compiler/tests/mir_fuzz.rs`, which runs them in every test run
//! over a stored corpus and a bounded number of seeded mutations of it. Each returns the
//! bug it found as text; `Ok` whatever the input when the code under test is right.

use super::{opt, parse_module, print, verify_module};
use crate::codegen::{self, CodegenError};

/// The text parser: any input gives a module or an error, and a module prints to text
/// that parses back and prints the same (print/parse is a fixed point).
pub fn text(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(m) = parse_module(text) else {
        return Ok(());
    };
    let printed = super::print::module(&m);
    let again = parse_module(&printed)
        .map_err(|e| format!("the printed module does not parse: {e}\n{printed}"))?;
    if print::module(&again) != printed {
        return Err(format!("print/parse is not a fixed point:\n{printed}"));
    }
    Ok(())
}

/// The pass pipeline: a module the verifier accepts is optimised, still verifies, and
/// compiles without an internal error (an implementation limit, such as a frame over
/// 512 bytes, is a fine answer; a bug in a pass is not). `Ok(true)` when the module got
/// that far (the input was a verified module).
pub fn pipeline(data: &[u8]) -> Result<bool, String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(false);
    };
    let Ok(mut m) = parse_module(text) else {
        return Ok(false);
    };
    if verify_module(&m).is_err() {
        return Ok(false);
    }
    let before = print::module(&m);
    opt::optimize(&mut m);
    if let Err(e) = verify_module(&m) {
        return Err(format!(
            "the optimiser broke a verified module: {}\nbefore:\n{before}\nafter:\n{}",
            super::verify::render(&e),
            print::module(&m)
        ));
    }
    match codegen::compile(&m) {
        Ok(_)
        | Err(CodegenError::StackTooLarge { .. })
        | Err(CodegenError::CallChainStack { .. })
        | Err(CodegenError::JumpOutOfRange { .. }) => Ok(true),
        Err(e) => Err(format!("{e}\nbefore:\n{before}")),
    }
}
