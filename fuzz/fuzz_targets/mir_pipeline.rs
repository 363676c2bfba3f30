//! The pass pipeline on arbitrary MIR text: a module the verifier accepts is optimised,
//! still verifies, and compiles without an internal error (an implementation limit, such
//! as a frame over 512 bytes, is a fine answer; a bug in a pass is not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pol_compiler::codegen::{self, CodegenError};
use pol_compiler::mir::{self, opt, parse_module, print};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut m) = parse_module(text) else {
        return;
    };
    if mir::verify_module(&m).is_err() {
        return;
    }
    opt::optimize(&mut m);
    if let Err(e) = mir::verify_module(&m) {
        panic!(
            "the optimiser broke a verified module: {}\n{}",
            mir::verify::render(&e),
            print::module(&m)
        );
    }
    match codegen::compile(&m) {
        Ok(_)
        | Err(CodegenError::StackTooLarge { .. })
        | Err(CodegenError::CallChainStack { .. })
        | Err(CodegenError::JumpOutOfRange { .. }) => {}
        Err(e) => panic!("{e}"),
    }
});
