//! ELF object, BTF and layout.json output.
