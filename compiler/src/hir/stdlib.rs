//! The standard library modules shipped inside the compiler (`import std.net`).
//!
//! They are compiled in with `include_str!`, so the compiler never reads files for them.

/// The source of a stdlib module by its dotted path, e.g. `std.net`.
pub fn module(path: &str) -> Option<&'static str> {
    match path {
        "std.net" => Some(include_str!("../../../stdlib/std/net.pol")),
        "std.ports" => Some(include_str!("../../../stdlib/std/ports.pol")),
        _ => None,
    }
}

/// The module names, for "did you mean".
pub const MODULES: &[&str] = &["std.net", "std.ports"];
