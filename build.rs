//! Marks the kernel tests ignored where they cannot run (see runtime/build_probe.rs).

#[path = "runtime/build_probe.rs"]
mod build_probe;

fn main() {
    build_probe::probe();
}
