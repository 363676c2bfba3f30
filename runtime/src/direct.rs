//! The direct load path for objects pol compiled itself: no ELF, no BTF, no aya.
//!
//! [`Direct::load`] takes a [`Compiled`] file and, with raw `bpf()` calls from
//! [`crate::sys`]: creates every map from its `MapSpec` (named, truncated to 15 bytes; LPM
//! tries get BPF_F_NO_PREALLOC), fills set and rule maps (BPF_MAP_UPDATE_BATCH for large
//! ones, one update per key where the kernel has no batch support), points every `ld_imm64`
//! named in `map_relocs` at its map's fd (src_reg = BPF_PSEUDO_MAP_FD), and loads each
//! program with its type and expected attach type. It offers what [`Loaded`] offers for
//! running and reading (program and map fds by name, test runs, map entries), so `pol run`,
//! `pol test`, [`crate::live`] and [`crate::attach`] work with either; `Loaded` stays the
//! way to load arbitrary `.o` files. Dropping a `Direct` closes every fd: maps and programs
//! go away with the last reference (links and pins hold their own).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pol_compiler::bpf::Insn;
use pol_compiler::driver::{Compiled, LICENSE};
use pol_compiler::obj::{self, AttachSpec, FuncSpec, MapKind, MapReloc, MapSpec, ModuleSpec};

use crate::load::{self, Entry, LoadError, Loaded, PerCpuEntry};
use crate::sys::{self, MapInfo, ProgInfo, ProgType, SysError, TestRun};

/// BPF_PSEUDO_MAP_FD: the `ld_imm64` immediate is a map fd.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `BPF_LD | BPF_IMM | BPF_DW`: the first slot of an `ld_imm64`.
const LD_IMM64: u8 = 0x18;
/// BPF_F_NO_PREALLOC.
const NO_PREALLOC: u32 = 1;
/// Maps with at least this many entries are filled in batches.
const BATCH_MIN: usize = 32;
/// `enum bpf_attach_type` BPF_XDP, the expected attach type of XDP programs.
const BPF_XDP: u32 = 37;

/// What `pol run`, `pol test` and the counters need of a loaded object, whichever way it
/// was loaded.
/// A compiled file loaded on either path: directly (what `pol run` uses) or through aya
/// (clsact TC filters, `POL_LOADER=aya`).
pub enum AnyLoaded {
    Direct(Direct),
    Aya(Loaded),
}

impl AnyLoaded {
    pub fn object(&self) -> &dyn Object {
        match self {
            AnyLoaded::Direct(d) => d,
            AnyLoaded::Aya(l) => l,
        }
    }
}

pub trait Object {
    /// The fd of a loaded program, by name.
    fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError>;
    /// The fd of a map, by name.
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError>;
    /// Every entry of a map (per-CPU values summed), as [`Loaded::map_entries`] gives them.
    fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError>;
    /// Runs one packet through a program `repeat` times (BPF_PROG_TEST_RUN).
    fn test_run(&self, name: &str, data: &[u8], repeat: u32) -> Result<TestRun, LoadError> {
        Ok(sys::test_run(self.program_fd(name)?, data, repeat)?)
    }
    /// What the kernel reports about a program.
    fn prog_info(&self, name: &str) -> Result<ProgInfo, LoadError> {
        Ok(sys::prog_info(self.program_fd(name)?)?)
    }
    /// Instructions the verifier processed for this program.
    fn verified_insns(&self, name: &str) -> Result<u32, LoadError> {
        Ok(self.prog_info(name)?.verified_insns)
    }
    /// What the kernel reports about a map.
    fn map_info(&self, name: &str) -> Result<MapInfo, LoadError> {
        Ok(sys::map_info(self.map_fd(name)?)?)
    }
    /// Sets one entry. For per-CPU maps `value` holds one value per possible CPU, each
    /// padded to 8 bytes.
    fn map_update(&self, name: &str, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        Ok(sys::map_update(self.map_fd(name)?, key, value, 0)?)
    }
}

impl Object for Loaded {
    fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Loaded::program_fd(self, name)
    }
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Loaded::map_fd(self, name)
    }
    fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        Loaded::map_entries(self, name)
    }
}

struct DirectMap {
    name: String,
    fd: OwnedFd,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl DirectMap {
    /// What the kernel would report about the map, from what it was created with.
    fn info(&self) -> MapInfo {
        MapInfo {
            id: 0,
            name: self.name.clone(),
            map_type: self.map_type,
            key_size: self.key_size,
            value_size: self.value_size,
            max_entries: self.max_entries,
            flags: 0,
        }
    }
}

/// How one program is loaded: BPF_PROG_LOAD's type, expected attach type, flags and,
/// for BTF-typed tracing programs, the vmlinux type id of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgLoad {
    pub prog_type: ProgType,
    pub expected_attach_type: u32,
    pub prog_flags: u32,
    pub attach_btf_id: u32,
}

/// A module's FUNC types loaded into the kernel (BPF_BTF_LOAD), and each function's FUNC
/// type id by its index in the module: what func_info points at.
struct ModuleBtf {
    fd: OwnedFd,
    ids: Vec<u32>,
}

struct DirectProg {
    name: String,
    fd: OwnedFd,
}

/// A compiled file loaded straight from its instructions: maps created and filled, every
/// program loaded (not attached).
pub struct Direct {
    maps: Vec<DirectMap>,
    progs: Vec<DirectProg>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("programs", &self.program_names())
            .field("maps", &self.map_names())
            .finish()
    }
}

/// The raw map type and flags the kernel needs for a `MapSpec`.
fn map_type_and_flags(spec: &MapSpec) -> (u32, u32) {
    let flags = match spec.kind {
        // The kernel refuses an LPM trie without BPF_F_NO_PREALLOC.
        MapKind::LpmTrie => spec.flags | NO_PREALLOC,
        _ => spec.flags,
    };
    (spec.kind.bpf_type(), flags)
}

fn object_error(what: String) -> impl FnOnce(SysError) -> LoadError {
    move |e| LoadError::Object {
        message: format!("{what}: {e}"),
    }
}

impl Direct {
    /// Creates the maps of `c`, fills them, and loads its programs. Stops at the first
    /// failure; everything created before it is closed (and so freed) on return.
    pub fn load(c: &Compiled) -> Result<Direct, LoadError> {
        Direct::load_sharing(c, &[])
    }

    /// [`Direct::load`], with the maps named in `shared` not created but taken from the
    /// fds given (a loaded version's counters, which a replacement keeps counting into).
    pub fn load_sharing(c: &Compiled, shared: &[(String, OwnedFd)]) -> Result<Direct, LoadError> {
        let mut d = Direct::with_maps(&c.spec.maps, c.spec.programs.len(), shared)?;
        for def in &c.maps {
            if !def.entries.is_empty() && !shared.iter().any(|(n, _)| *n == def.spec.name) {
                d.fill(&def.spec.name, &def.entries)?;
            }
        }
        let license = if c.spec.license.is_empty() {
            LICENSE
        } else {
            &c.spec.license
        };
        let mut btf = None;
        for p in &c.spec.programs {
            let (prog_type, expected) = match &p.attach {
                AttachSpec::Xdp { .. } => (ProgType::Xdp, BPF_XDP),
                AttachSpec::Tc { .. } => (ProgType::SchedCls, 0),
                AttachSpec::Tracepoint { .. } => (ProgType::TracePoint, 0),
            };
            // As libbpf and aya do for the section name.
            let flags = if p.section == "xdp.frags" {
                sys::BPF_F_XDP_HAS_FRAGS
            } else {
                0
            };
            let load = ProgLoad {
                prog_type,
                expected_attach_type: expected,
                prog_flags: flags,
                attach_btf_id: 0,
            };
            // A program that calls subprograms (the classifier) is linked from the
            // module, with func_info.
            let in_module = c.module.as_ref().and_then(|m| {
                let i = m
                    .funcs
                    .iter()
                    .position(|f| f.name == p.name && f.section.is_some())?;
                Some((m, i))
            });
            match in_module {
                Some((m, i)) => d.load_linked(m, i, &load, license, &mut btf)?,
                None => {
                    let insns = d.relocate(&p.name, p.insns.clone(), &p.map_relocs)?;
                    d.load_program(&p.name, &load, &insns, license, None)?;
                }
            }
        }
        Ok(d)
    }

    /// Loads a module (what MIR's code generator produces: the probes of a file): its maps
    /// created empty, each program (a function with a section) loaded as `how` says, with
    /// the static subprograms it calls appended and its calls pointed at them.
    pub fn load_module(
        spec: &ModuleSpec,
        how: impl Fn(&FuncSpec) -> Result<ProgLoad, LoadError>,
    ) -> Result<Direct, LoadError> {
        let programs: Vec<&FuncSpec> = spec.funcs.iter().filter(|f| f.section.is_some()).collect();
        let mut d = Direct::with_maps(&spec.maps, programs.len(), &[])?;
        let license = if spec.license.is_empty() {
            LICENSE
        } else {
            &spec.license
        };
        let mut btf = None;
        for (i, f) in spec.funcs.iter().enumerate() {
            if f.section.is_some() {
                let load = how(f)?;
                d.load_linked(spec, i, &load, license, &mut btf)?;
            }
        }
        Ok(d)
    }

    /// Loads function `index` of `spec` linked with the subprograms it reaches; where there
    /// are any, with func_info pointing at the module's FUNC types, loaded into the kernel
    /// once per module (`btf`).
    fn load_linked(
        &mut self,
        spec: &ModuleSpec,
        index: usize,
        load: &ProgLoad,
        license: &str,
        btf: &mut Option<ModuleBtf>,
    ) -> Result<(), LoadError> {
        let name = spec.funcs.get(index).map_or("", |f| f.name.as_str());
        let linked = obj::link::link(spec, index).map_err(|e| LoadError::Program {
            program: name.to_string(),
            message: format!("{e} (a bug in pol)"),
        })?;
        let insns = self.relocate(name, linked.insns, &linked.map_relocs)?;
        if linked.funcs.len() == 1 {
            return self.load_program(name, load, &insns, license, None);
        }
        let btf = match btf {
            Some(b) => b,
            None => {
                let (bytes, ids) = obj::funcs_btf(&spec.funcs);
                let fd = sys::btf_load(&bytes).map_err(|e| LoadError::Program {
                    program: name.to_string(),
                    message: e.to_string(),
                })?;
                btf.insert(ModuleBtf { fd, ids })
            }
        };
        let records = linked
            .funcs
            .iter()
            .map(|&(at, fi)| {
                let ty = btf.ids.get(fi).copied().unwrap_or(0);
                u32::try_from(at).map(|at| [at, ty])
            })
            .collect::<Result<Vec<[u32; 2]>, _>>()
            .map_err(|_| LoadError::Program {
                program: name.to_string(),
                message: "too many instructions".into(),
            })?;
        self.load_program(
            name,
            load,
            &insns,
            license,
            Some((btf.fd.as_fd(), &records)),
        )
    }

    /// Creates every map of `maps`, empty, but for those in `shared`, which it takes.
    fn with_maps(
        maps: &[MapSpec],
        programs: usize,
        shared: &[(String, OwnedFd)],
    ) -> Result<Direct, LoadError> {
        let mut d = Direct {
            maps: Vec::with_capacity(maps.len()),
            progs: Vec::with_capacity(programs),
        };
        for spec in maps {
            let (map_type, flags) = map_type_and_flags(spec);
            let (key_size, value_size) = if spec.kind == MapKind::RingBuf {
                (0, 0)
            } else {
                (spec.key.size(), spec.value.size())
            };
            let fd = match shared.iter().find(|(n, _)| *n == spec.name) {
                Some((_, fd)) => fd.try_clone().map_err(|e| LoadError::Object {
                    message: format!("cannot share map `{}`: {e}", spec.name),
                })?,
                None => sys::map_create_named(
                    &spec.name,
                    map_type,
                    key_size,
                    value_size,
                    spec.max_entries,
                    flags,
                )
                .map_err(object_error(format!("cannot create map `{}`", spec.name)))?,
            };
            d.maps.push(DirectMap {
                name: spec.name.clone(),
                fd,
                map_type,
                key_size,
                value_size,
                max_entries: spec.max_entries,
            });
        }
        Ok(d)
    }

    /// Points every `ld_imm64` of `relocs` at its map's fd.
    fn relocate(
        &self,
        program: &str,
        mut insns: Vec<Insn>,
        relocs: &[MapReloc],
    ) -> Result<Vec<Insn>, LoadError> {
        for r in relocs {
            let fd = self.map_fd(&r.map)?;
            let slot = insns
                .get_mut(r.insn_index)
                .filter(|i| i.code == LD_IMM64)
                .ok_or_else(|| LoadError::Program {
                    program: program.to_string(),
                    message: format!(
                        "instruction {} should load map `{}` but is not an ld_imm64 \
                         (a bug in pol)",
                        r.insn_index, r.map
                    ),
                })?;
            slot.src = BPF_PSEUDO_MAP_FD;
            slot.imm = std::os::fd::AsRawFd::as_raw_fd(&fd);
        }
        Ok(insns)
    }

    fn load_program(
        &mut self,
        name: &str,
        load: &ProgLoad,
        insns: &[Insn],
        license: &str,
        func_info: Option<(BorrowedFd<'_>, &[[u32; 2]])>,
    ) -> Result<(), LoadError> {
        let bytes = pol_compiler::bpf::insn::encode(insns);
        let spec = sys::Load {
            name,
            prog_type: load.prog_type,
            expected_attach_type: load.expected_attach_type,
            prog_flags: load.prog_flags,
            attach_btf_id: load.attach_btf_id,
            func_info,
        };
        let fd = sys::prog_load_spec(&spec, &bytes, license).map_err(|e| match e {
            SysError::Rejected { errno, log } => LoadError::Verifier {
                program: name.to_string(),
                io_error: std::io::Error::from_raw_os_error(errno),
                log,
            },
            other => LoadError::Program {
                program: name.to_string(),
                message: other.to_string(),
            },
        })?;
        self.progs.push(DirectProg {
            name: name.to_string(),
            fd,
        });
        Ok(())
    }

    fn map(&self, name: &str) -> Result<&DirectMap, LoadError> {
        self.maps
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| LoadError::NoMap(name.to_string()))
    }

    /// Puts `entries` in map `name`: in batches when there are many and the kernel can,
    /// else one key at a time.
    fn fill(&self, name: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LoadError> {
        let m = self.map(name)?;
        let (ks, vs) = (m.key_size as usize, m.value_size as usize);
        if let Some((k, v)) = entries.iter().find(|(k, v)| k.len() != ks || v.len() != vs) {
            return Err(LoadError::Object {
                message: format!(
                    "an entry of map `{name}` has a {}-byte key and a {}-byte value, the map \
                     takes {ks} and {vs} (a bug in pol)",
                    k.len(),
                    v.len()
                ),
            });
        }
        let full = |done: usize| LoadError::Object {
            message: format!(
                "map `{name}` is full after {done} of {} entries (max_entries {}; a bug in pol)",
                entries.len(),
                m.max_entries
            ),
        };
        let mut start = 0;
        if entries.len() >= BATCH_MIN {
            let keys: Vec<u8> = entries
                .iter()
                .flat_map(|(k, _)| k.iter().copied())
                .collect();
            let values: Vec<u8> = entries
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            match sys::batch::map_update_batch(m.fd.as_fd(), &keys, ks, &values, vs) {
                Ok(n) if n == entries.len() => return Ok(()),
                Ok(n) => start = n,
                // No batch support for this map type or kernel: one at a time.
                Err((e, 0)) if matches!(e.errno(), Some(libc::EINVAL | libc::ENOTSUP | 524)) => {}
                Err((e, n)) if matches!(e.errno(), Some(libc::E2BIG | libc::ENOSPC)) => {
                    return Err(full(n))
                }
                Err((e, _)) => {
                    return Err(LoadError::Object {
                        message: format!("cannot fill map `{name}`: {e}"),
                    })
                }
            }
        }
        for (i, (k, v)) in entries.iter().enumerate().skip(start) {
            sys::map_update_sized(m.fd.as_fd(), k, v, 0).map_err(|e| {
                if matches!(e.errno(), Some(libc::E2BIG | libc::ENOSPC)) {
                    full(i)
                } else {
                    LoadError::Object {
                        message: format!("cannot fill map `{name}`: {e}"),
                    }
                }
            })?;
        }
        Ok(())
    }

    /// Names of the programs, sorted.
    pub fn program_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.progs.iter().map(|p| p.name.clone()).collect();
        names.sort();
        names
    }

    /// Names of the maps, sorted.
    pub fn map_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.maps.iter().map(|m| m.name.clone()).collect();
        names.sort();
        names
    }

    /// The fd of a loaded program, by name.
    pub fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        self.progs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.fd.as_fd())
            .ok_or_else(|| LoadError::NoProgram(name.to_string()))
    }

    /// The fd of a map, by name.
    pub fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Ok(self.map(name)?.fd.as_fd())
    }

    /// Every entry of a hash, array, LPM trie or per-CPU map as (key bytes, value bytes),
    /// exactly as [`Loaded::map_entries`]: arrays in index order, other maps sorted by key,
    /// per-CPU values summed as u64s.
    pub fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        let m = self.map(name)?;
        load::map_entries(name, m.fd.as_fd(), &m.info())
    }

    /// Every entry of a per-CPU map with one value per possible CPU (unpadded).
    pub fn map_entries_per_cpu(&self, name: &str) -> Result<Vec<PerCpuEntry>, LoadError> {
        let m = self.map(name)?;
        load::map_entries_per_cpu(name, m.fd.as_fd(), &m.info())
    }
}

impl Object for Direct {
    fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Direct::program_fd(self, name)
    }
    fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Direct::map_fd(self, name)
    }
    fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        Direct::map_entries(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testrun;

    /// Kernel tests are ignored at build time where bpf() is missing (build_probe.rs); one
    /// that runs and cannot load is a failure with the reason, never a silent pass.
    fn require_kernel() {
        if let Err(why) = sys::bpf_available() {
            panic!("kernel test cannot run: {why}");
        }
    }

    fn compiled(src: &str) -> Compiled {
        match pol_compiler::driver::compile(src) {
            Ok(c) => c,
            Err(d) => panic!("does not compile: {d:?}"),
        }
    }

    #[test]
    #[cfg_attr(
        pol_no_bpf,
        ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
    )]
    fn examples_decide_and_count_as_through_aya() {
        require_kernel();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        let mut seen = 0;
        for e in std::fs::read_dir(dir).expect("examples").flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "pol") {
                continue;
            }
            let src = std::fs::read_to_string(&path).expect("read");
            let c = compiled(&src);
            let direct = Direct::load(&c).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let aya = testrun::load(&c).expect("aya");
            let a = testrun::run_tests(&c, &direct);
            let b = testrun::run_tests(&c, &aya);
            assert!(!a.is_empty(), "{}", path.display());
            for (x, y) in a.iter().zip(&b) {
                assert!(x.passed(), "{}: {x:?}", path.display());
                assert_eq!(x.result.as_ref().ok(), y.result.as_ref().ok());
            }
            for m in &c.spec.maps {
                if m.kind == MapKind::RingBuf {
                    continue;
                }
                let (d, y) = (
                    direct.map_entries(&m.name).expect("direct entries"),
                    aya.map_entries(&m.name).expect("aya entries"),
                );
                // Rate buckets hold clock times: the same keys, other values.
                let keys = |es: &[Entry]| es.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
                if pol_compiler::hir::state::map_holds_clock(&m.name) {
                    assert_eq!(keys(&d), keys(&y), "{}: map {}", path.display(), m.name);
                } else {
                    assert_eq!(d, y, "{}: map {}", path.display(), m.name);
                }
                let info = direct.map_info(&m.name).expect("info");
                assert_eq!(info.max_entries, m.max_entries);
                let short: String = m.name.chars().take(15).collect();
                assert_eq!(info.name, short, "named, truncated to 15 bytes");
            }
            for p in &c.spec.programs {
                assert_eq!(direct.prog_info(&p.name).expect("info").name, p.name);
            }
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    #[cfg_attr(
        pol_no_bpf,
        ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
    )]
    fn large_sets_are_filled_in_batches() {
        require_kernel();
        let addrs: Vec<String> = (0..20_000u32)
            .map(|i| format!("10.{}.{}.1", i >> 8, i & 255))
            .collect();
        let nets: Vec<String> = (0..5_000u32)
            .map(|i| format!("172.{}.{}.0/24", 16 + (i >> 8), i & 255))
            .collect();
        let src = format!(
            "set a: ip4 = {{ {} }}\nset n: cidr = {{ {} }}\nfilter big on xdp(\"lo\") {{\n    \
             drop ip.src in a\n    drop ip.dst in n\n    default pass\n}}\n",
            addrs.join(", "),
            nets.join(", ")
        );
        let c = compiled(&src);
        let d = Direct::load(&c).expect("loads");
        assert_eq!(d.map_entries("a_v4").expect("a").len(), 20_000);
        assert_eq!(d.map_entries("n_v4").expect("n").len(), 5_000);
        let pkt = crate::packet::Packet::udp()
            .src("10.3.7.1")
            .build()
            .expect("packet");
        let r = d.test_run("big", &pkt, 1).expect("runs");
        assert_eq!(r.retval, 1, "10.3.7.1 is in set a: XDP_DROP");
        let pkt = crate::packet::Packet::udp()
            .dst("172.20.9.77")
            .build()
            .expect("packet");
        assert_eq!(d.test_run("big", &pkt, 1).expect("runs").retval, 1);
        let pkt = crate::packet::Packet::udp()
            .src("10.3.7.2")
            .build()
            .expect("packet");
        assert_eq!(d.test_run("big", &pkt, 1).expect("runs").retval, 2);
    }

    #[test]
    #[cfg_attr(
        pol_no_bpf,
        ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
    )]
    fn a_verifier_rejection_carries_the_log() {
        require_kernel();
        let mut c = compiled("filter v on xdp(\"lo\") {\n    drop udp\n    default pass\n}\n");
        // r0 = *(u32 *)(r1 + 1000): an access the verifier refuses.
        let p = &mut c.spec.programs[0];
        p.insns.insert(
            0,
            pol_compiler::bpf::Insn {
                code: 0x61,
                dst: 0,
                src: 1,
                off: 1000,
                imm: 0,
            },
        );
        for r in &mut p.map_relocs {
            r.insn_index += 1;
        }
        match Direct::load(&c) {
            Err(LoadError::Verifier { program, log, .. }) => {
                assert_eq!(program, "v");
                assert!(log.contains("invalid") || log.contains("access"), "{log}");
            }
            other => panic!("expected a verifier rejection, got {other:?}"),
        }
    }
}
