//! `pol fmt [--check] FILE...`: rewrite files in the canonical style, or (with `--check`)
//! list the files that are not in it and fail, for CI.

use anyhow::{Context, Result};
use pol_compiler::fmt;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct FmtArgs {
    /// Change nothing: list the files that would change and exit non-zero if any would.
    #[arg(long)]
    check: bool,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

pub fn run(args: FmtArgs) -> Result<bool> {
    let mut ok = true;
    for path in &args.files {
        let src = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let out = match fmt::format(&src) {
            Ok(out) => out,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ok = false;
                continue;
            }
        };
        if out == src {
            continue;
        }
        if args.check {
            println!("{}: not formatted", path.display());
            ok = false;
        } else {
            std::fs::write(path, out)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("formatted {}", path.display());
        }
    }
    Ok(ok)
}
