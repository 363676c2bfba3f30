//! Entity ids of the MIR: plain `u32` indices into the arenas of a [`super::Function`]
//! or [`super::Module`], printed as `v3`, `block2`, `ss0`.

use std::fmt;

macro_rules! entity {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }

            pub fn from_index(i: usize) -> Self {
                $name(i as u32)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

entity!(
    /// An SSA value: a block parameter or an instruction result.
    Value,
    "v"
);
entity!(
    /// A basic block; `block0` is the entry.
    Block,
    "block"
);
entity!(
    /// An instruction (not a terminator).
    Inst,
    "inst"
);
entity!(
    /// A stack slot of the function's frame.
    Slot,
    "ss"
);
entity!(
    /// A function of the module.
    FuncId,
    "fn"
);
entity!(
    /// A map of the module.
    MapId,
    "map"
);
