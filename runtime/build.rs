//! Marks the runtime's kernel tests ignored where they cannot run (see build_probe.rs).

#[path = "build_probe.rs"]
mod build_probe;

fn main() {
    build_probe::probe();
}
