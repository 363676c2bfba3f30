//! Stack symbolisation and flame graphs: kernel addresses through /proc/kallsyms, user
//! addresses of a live process through blazesym (ELF symbols, demangled), and stacks
//! with counts written as folded lines or a flame graph SVG (inferno).

use std::io::Write;

use blazesym::symbolize::source::{Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

/// Why symbols or a flame graph could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("cannot read /proc/kallsyms: {0}")]
    Kallsyms(std::io::Error),
    #[error(
        "/proc/kallsyms hides kernel addresses (kernel.kptr_restrict; reading them needs root)"
    )]
    Hidden,
    #[error("cannot write the flame graph: {0}")]
    Write(std::io::Error),
    #[error("no stack was sampled, so there is no flame graph to write")]
    NoSamples,
}

/// Kernel text symbols by address, from /proc/kallsyms.
#[derive(Debug, Clone, Default)]
pub struct KernelSymbols {
    /// (address, name), sorted by address.
    syms: Vec<(u64, String)>,
}

impl KernelSymbols {
    /// Reads /proc/kallsyms (root sees real addresses).
    pub fn load() -> Result<KernelSymbols, SymbolError> {
        let text = std::fs::read_to_string("/proc/kallsyms").map_err(SymbolError::Kallsyms)?;
        let syms = KernelSymbols::parse(&text);
        if syms.syms.is_empty() {
            return Err(SymbolError::Hidden);
        }
        Ok(syms)
    }

    /// Parses kallsyms text: `ADDRESS TYPE NAME [MODULE]`; text symbols only (types
    /// t, T, w, W), zero addresses (hidden) left out.
    pub fn parse(text: &str) -> KernelSymbols {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let ty = f.next()?;
                let name = f.next()?;
                (addr != 0 && matches!(ty, "t" | "T" | "w" | "W")).then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        syms.dedup_by_key(|s| s.0);
        KernelSymbols { syms }
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, name) = &self.syms[i];
        Some((name, addr - start))
    }

    /// The function's name alone (what flame graphs merge on), or the address in hex.
    pub fn function(&self, addr: u64) -> String {
        self.lookup(addr)
            .map_or_else(|| format!("{addr:#x}"), |(name, _)| name.to_string())
    }

    /// `name+0xOFF` (just `name` at offset 0), or the address in hex when unknown.
    pub fn name(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((name, 0)) => name.to_string(),
            Some((name, off)) => format!("{name}+{off:#x}"),
            None => format!("{addr:#x}"),
        }
    }
}

/// User-space symbols of live processes (their mapped ELF files' symbol tables).
pub struct UserSymbols {
    symbolizer: Symbolizer,
}

impl Default for UserSymbols {
    fn default() -> Self {
        UserSymbols::new()
    }
}

impl std::fmt::Debug for UserSymbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserSymbols")
    }
}

impl UserSymbols {
    pub fn new() -> UserSymbols {
        UserSymbols {
            symbolizer: Symbolizer::new(),
        }
    }

    /// Names of `addrs` in process `pid`: demangled function names, or the address in
    /// hex where none is found (a process that has exited has no maps left to read).
    pub fn names(&self, pid: u32, addrs: &[u64]) -> Vec<String> {
        let hex = |a: &u64| format!("{a:#x}");
        let src = Source::Process(Process::new(pid.into()));
        match self.symbolizer.symbolize(&src, Input::AbsAddr(addrs)) {
            Ok(syms) => syms
                .iter()
                .zip(addrs)
                .map(|(s, a)| match s {
                    Symbolized::Sym(sym) => sym.name.to_string(),
                    Symbolized::Unknown(_) => hex(a),
                })
                .collect(),
            Err(_) => addrs.iter().map(hex).collect(),
        }
    }
}

/// A stack and how often it was seen; `frames` innermost first, as `get_stackid`
/// stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub frames: Vec<String>,
    pub count: u64,
}

/// Folded stacks, one `outer;...;inner COUNT` line per stack (the input of flame graph
/// tools), sorted; frames are taken without their `+0xOFF` offsets and equal stacks are
/// merged.
pub fn folded(stacks: &[Stack]) -> String {
    let mut lines: std::collections::BTreeMap<String, u64> = Default::default();
    for s in stacks.iter().filter(|s| s.count > 0) {
        // `;` separates frames in this format: a name containing one would split.
        let key: Vec<String> = s
            .frames
            .iter()
            .rev()
            .map(|f| function_of(f).replace(';', ":"))
            .collect();
        let key = if key.is_empty() {
            "[unknown]".to_string()
        } else {
            key.join(";")
        };
        *lines.entry(key).or_default() += s.count;
    }
    lines
        .into_iter()
        .map(|(k, n)| format!("{k} {n}\n"))
        .collect()
}

/// A frame without its `+0xOFF` offset: a flame graph merges samples by function.
fn function_of(frame: &str) -> &str {
    match frame.rsplit_once("+0x") {
        Some((name, off)) if !name.is_empty() && off.bytes().all(|b| b.is_ascii_hexdigit()) => name,
        _ => frame,
    }
}

/// Writes `stacks` as a flame graph SVG titled `title` (no stacks: [`SymbolError::NoSamples`]).
pub fn write_flamegraph(stacks: &[Stack], title: &str, out: impl Write) -> Result<(), SymbolError> {
    let folded = folded(stacks);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    if folded.is_empty() {
        return Err(SymbolError::NoSamples);
    }
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), out).map_err(SymbolError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81001000 t do_one_initcall
ffffffff81001200 T do_sys_openat2
ffffffff81001400 D some_data
ffffffffc0000000 t mod_func\t[somemod]
";

    #[test]
    fn kernel_addresses_name_the_containing_function() {
        let k = KernelSymbols::parse(KALLSYMS);
        assert_eq!(k.name(0xffff_ffff_8100_1210), "do_sys_openat2+0x10");
        assert_eq!(k.name(0xffff_ffff_8100_1200), "do_sys_openat2");
        assert_eq!(k.name(0xffff_ffff_8100_10ff), "do_one_initcall+0xff");
        // Data symbols are not functions: the address stays in the function before.
        assert_eq!(k.name(0xffff_ffff_8100_1401), "do_sys_openat2+0x201");
        assert_eq!(k.name(0xffff_ffff_c000_0004), "mod_func+0x4");
        assert_eq!(k.name(0x1000), "0x1000");
        assert_eq!(k.function(0xffff_ffff_8100_1210), "do_sys_openat2");
        assert!(KernelSymbols::parse("0000000000000000 T hidden\n")
            .syms
            .is_empty());
    }

    #[test]
    fn folded_lines_run_outermost_first_and_merge() {
        let st = |frames: &[&str], count| Stack {
            frames: frames.iter().map(|f| f.to_string()).collect(),
            count,
        };
        let text = folded(&[
            st(&["leaf", "mid", "main"], 3),
            st(&["other;weird", "main"], 1),
            st(&["leaf+0x10", "mid+0x1f", "main"], 2),
            st(&["0x7f00aa", "main"], 1),
            st(&[], 4),
            st(&["never"], 0),
        ]);
        assert_eq!(
            text,
            "[unknown] 4\nmain;0x7f00aa 1\nmain;mid;leaf 5\nmain;other:weird 1\n"
        );
    }

    #[test]
    fn flame_graphs_are_svg_with_the_frames() {
        let stacks = [Stack {
            frames: vec!["leaf_work".into(), "outer_func".into()],
            count: 7,
        }];
        let mut svg = Vec::new();
        write_flamegraph(&stacks, "pol test", &mut svg).expect("svg");
        let svg = String::from_utf8(svg).expect("utf-8");
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{}",
            &svg[..80]
        );
        assert!(
            svg.contains("leaf_work") && svg.contains("outer_func") && svg.contains("pol test")
        );
        let e = write_flamegraph(&[], "empty", Vec::new()).expect_err("nothing to draw");
        assert!(matches!(e, SymbolError::NoSamples), "{e}");
    }
}
