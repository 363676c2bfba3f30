//! Generates the parser from `grammar/pol.lalrpop` (at the workspace root) into `OUT_DIR`.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=../grammar/pol.lalrpop");
    let out_dir = std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?;
    // With the input folder set to `../grammar`, the output lands at `$OUT_DIR/pol.rs`,
    // which `syntax::grammar` includes through `lalrpop_mod!`.
    lalrpop::Configuration::new()
        .set_in_dir("../grammar")
        .set_out_dir(out_dir)
        .emit_rerun_directives(false)
        .process_file("../grammar/pol.lalrpop")?;
    Ok(())
}
