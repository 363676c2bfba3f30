//! Loading an ELF object through aya, running its programs by name and reading its maps.
//!
//! [`Loaded::from_bytes`] creates the maps and loads every program; a verifier rejection
//! comes back as [`LoadError::Verifier`] with the kernel's log word for word. Maps are read
//! generically as (key bytes, value bytes) pairs through the raw calls in [`crate::sys`],
//! whatever their key and value types.

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{Map, MapData};
use aya::programs::{Program, ProgramError};
use aya::Ebpf;

use crate::sys::{self, MapInfo, MapType, SysError};

/// Why an object could not be loaded, run or read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// aya could not parse the object or create its maps; `message` includes every cause.
    #[error("cannot load the object: {message}")]
    Object { message: String },
    /// The kernel verifier rejected a program; `log` is its log word for word.
    #[error("the kernel verifier rejected program `{program}` ({io_error}):\n{log}")]
    Verifier {
        program: String,
        io_error: std::io::Error,
        log: String,
    },
    /// Loading a program failed for a reason other than the verifier.
    #[error("cannot load program `{program}`: {message}")]
    Program { program: String, message: String },
    /// The object holds a program kind the runtime does not load.
    #[error("program `{program}` is a {kind} program, which pol does not load")]
    UnsupportedProgram { program: String, kind: &'static str },
    #[error("the object has no program named `{0}`")]
    NoProgram(String),
    #[error("the object has no map named `{0}`")]
    NoMap(String),
    /// The map cannot be read as key/value pairs (ring buffers, perf arrays, ...), or its
    /// per-CPU values cannot be summed.
    #[error("map `{map}` cannot be read as key/value pairs: {reason}")]
    UnsupportedMap { map: String, reason: String },
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl LoadError {
    /// The verifier log, when the kernel rejected a program.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            LoadError::Verifier { log, .. } => Some(log),
            LoadError::Sys(e) => e.verifier_log(),
            _ => None,
        }
    }
}

/// An error and all its causes, joined with ": " (aya's top-level messages are generic).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = e.source();
    }
    text
}

/// A loaded object: its maps exist and every program is loaded (not attached).
pub struct Loaded {
    ebpf: Ebpf,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("programs", &self.program_names())
            .field("maps", &self.map_names())
            .finish()
    }
}

impl Loaded {
    /// Loads an ELF object: creates its maps, then loads each program (XDP, TC classifier,
    /// tracepoint, raw tracepoint, socket filter). Stops at the first program that fails.
    pub fn from_bytes(elf: &[u8]) -> Result<Loaded, LoadError> {
        // No kernel BTF: pol objects need no CO-RE relocations, and parsing vmlinux BTF
        // costs ~20 ms of every start.
        let mut ebpf = aya::EbpfLoader::new()
            .btf(None)
            .load(elf)
            .map_err(|e| LoadError::Object { message: chain(&e) })?;
        for (name, program) in ebpf.programs_mut() {
            let result = match program {
                Program::Xdp(p) => p.load(),
                Program::SchedClassifier(p) => p.load(),
                Program::TracePoint(p) => p.load(),
                Program::RawTracePoint(p) => p.load(),
                Program::SocketFilter(p) => p.load(),
                other => {
                    return Err(LoadError::UnsupportedProgram {
                        program: name.to_string(),
                        kind: program_kind(other),
                    })
                }
            };
            result.map_err(|e| program_error(name, e))?;
        }
        Ok(Loaded { ebpf })
    }

    /// Names of the programs (their ELF symbols), sorted.
    pub fn program_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.ebpf.programs().map(|(n, _)| n.to_string()).collect();
        names.sort();
        names
    }

    /// Names of the maps, sorted.
    pub fn map_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.ebpf.maps().map(|(n, _)| n.to_string()).collect();
        names.sort();
        names
    }

    /// The fd of a loaded program, by symbol name.
    pub fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        let program = self
            .ebpf
            .program(name)
            .ok_or_else(|| LoadError::NoProgram(name.to_string()))?;
        let fd = program.fd().map_err(|e| program_error(name, e))?;
        Ok(fd.as_fd())
    }

    /// The fd of a map, by name; for maps that hold keys and values (not ring buffers).
    pub fn map_fd(&self, name: &str) -> Result<BorrowedFd<'_>, LoadError> {
        Ok(self.map_data(name)?.fd().as_fd())
    }

    /// Every entry of a hash, array, LPM trie or per-CPU map as (key bytes, value bytes),
    /// as [`map_entries`] reads them.
    pub fn map_entries(&self, name: &str) -> Result<Vec<Entry>, LoadError> {
        let fd = self.map_fd(name)?;
        map_entries(name, fd, &sys::map_info(fd)?)
    }

    /// Every entry of a per-CPU map with one value per possible CPU (unpadded).
    pub fn map_entries_per_cpu(&self, name: &str) -> Result<Vec<PerCpuEntry>, LoadError> {
        let fd = self.map_fd(name)?;
        map_entries_per_cpu(name, fd, &sys::map_info(fd)?)
    }

    fn map_data(&self, name: &str) -> Result<&MapData, LoadError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| LoadError::NoMap(name.to_string()))?;
        match map {
            Map::Array(m)
            | Map::HashMap(m)
            | Map::LpmTrie(m)
            | Map::LruHashMap(m)
            | Map::PerCpuArray(m)
            | Map::PerCpuHashMap(m)
            | Map::PerCpuLruHashMap(m)
            | Map::BloomFilter(m)
            | Map::Unsupported(m) => Ok(m),
            _ => Err(LoadError::UnsupportedMap {
                map: name.to_string(),
                reason: "pol reads only hash, array, LPM trie and per-CPU maps".to_string(),
            }),
        }
    }

    /// The underlying aya object, for attaching programs and reading ring buffers.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// One map entry: key bytes and value bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One key of a per-CPU map and its value on each possible CPU.
pub type PerCpuEntry = (Vec<u8>, Vec<Vec<u8>>);

/// Every entry of map `name` (open as `fd`, described by `info`) as (key bytes, value
/// bytes). Arrays come in index order, other maps sorted by key bytes. Per-CPU values are
/// summed over CPUs: values of 1, 2, 4 or 8 bytes become one u64 (8 bytes, little-endian);
/// values whose size is a multiple of 8 are summed lane by lane as u64s.
pub fn map_entries(
    name: &str,
    fd: BorrowedFd<'_>,
    info: &MapInfo,
) -> Result<Vec<Entry>, LoadError> {
    if !MapType::is_per_cpu(info.map_type) {
        return raw_entries(name, fd, info);
    }
    let cpus = sys::possible_cpus()?;
    raw_entries(name, fd, info)?
        .into_iter()
        .map(|(k, v)| {
            let sum = sum_per_cpu(&v, info.value_size as usize, cpus).ok_or_else(|| {
                LoadError::UnsupportedMap {
                    map: name.to_string(),
                    reason: format!(
                        "per-CPU values of {} bytes cannot be summed as u64s",
                        info.value_size
                    ),
                }
            })?;
            Ok((k, sum))
        })
        .collect()
}

/// Every entry of per-CPU map `name` with one value per possible CPU (unpadded).
pub fn map_entries_per_cpu(
    name: &str,
    fd: BorrowedFd<'_>,
    info: &MapInfo,
) -> Result<Vec<PerCpuEntry>, LoadError> {
    if !MapType::is_per_cpu(info.map_type) {
        return Err(LoadError::UnsupportedMap {
            map: name.to_string(),
            reason: "it is not a per-CPU map".to_string(),
        });
    }
    let size = info.value_size as usize;
    let stride = size.div_ceil(8) * 8;
    Ok(raw_entries(name, fd, info)?
        .into_iter()
        .map(|(k, v)| {
            let values = v
                .chunks(stride.max(1))
                .map(|c| c.iter().take(size).copied().collect())
                .collect();
            (k, values)
        })
        .collect())
}

/// Every (key, whole value) pair of a map that has keys; arrays in index order, other
/// maps sorted by key. Per-CPU values stay as the kernel gives them (one 8-byte-aligned
/// value per possible CPU), ready to be written back with `sys::map_update`.
pub fn raw_entries(
    name: &str,
    fd: BorrowedFd<'_>,
    info: &MapInfo,
) -> Result<Vec<Entry>, LoadError> {
    if info.map_type == MapType::RingBuf as u32 || info.key_size == 0 {
        return Err(LoadError::UnsupportedMap {
            map: name.to_string(),
            reason: "it has no keys (ring buffer or queue)".to_string(),
        });
    }
    let value_len = sys::value_buf_len(info)?;
    // Arrays and hash maps in batches: one call per 4,096 entries instead of four per key
    // (a 100,000-slot statistics array took ~1 s key by key). LPM tries have no batch
    // lookup: key by key.
    let batched = [
        MapType::Array as u32,
        MapType::PerCpuArray as u32,
        MapType::Hash as u32,
        MapType::PerCpuHash as u32,
    ];
    if batched.contains(&info.map_type) {
        if let Ok(mut entries) =
            sys::batch::map_lookup_batch(fd, info.key_size as usize, value_len, 4096)
        {
            if info.map_type == MapType::Hash as u32 || info.map_type == MapType::PerCpuHash as u32
            {
                entries.sort();
            }
            return Ok(entries);
        }
    }
    let mut entries = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    // Bounded: a map never holds more than max_entries keys; the bound guards against
    // iteration restarting when entries are deleted concurrently.
    for _ in 0..=info.max_entries {
        let Some(next) = sys::map_next_key(fd, key.as_deref())? else {
            break;
        };
        // A key deleted between GET_NEXT_KEY and LOOKUP is skipped.
        if let Some(value) = sys::map_lookup(fd, &next, value_len)? {
            entries.push((next.clone(), value));
        }
        key = Some(next);
    }
    if info.map_type != MapType::Array as u32 && info.map_type != MapType::PerCpuArray as u32 {
        entries.sort();
    }
    Ok(entries)
}

fn program_error(name: &str, e: ProgramError) -> LoadError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => LoadError::Verifier {
            program: name.to_string(),
            io_error,
            log: verifier_log.to_string(),
        },
        other => LoadError::Program {
            program: name.to_string(),
            message: chain(&other),
        },
    }
}

fn program_kind(p: &Program) -> &'static str {
    match p {
        Program::KProbe(_) => "kprobe",
        Program::UProbe(_) => "uprobe",
        Program::CgroupSkb(_) => "cgroup_skb",
        Program::CgroupSockAddr(_) => "cgroup_sock_addr",
        Program::PerfEvent(_) => "perf_event",
        Program::Lsm(_) => "lsm",
        Program::BtfTracePoint(_) => "tp_btf",
        Program::FEntry(_) => "fentry",
        Program::FExit(_) => "fexit",
        _ => "other",
    }
}

/// Sums per-CPU values (`cpus` values, each padded to 8 bytes). Sizes 1, 2, 4 and 8 give
/// one u64; multiples of 8 give one u64 per lane. `None` for other sizes or short input.
pub fn sum_per_cpu(raw: &[u8], value_size: usize, cpus: usize) -> Option<Vec<u8>> {
    let stride = value_size.div_ceil(8) * 8;
    if stride == 0 || raw.len() < stride * cpus {
        return None;
    }
    let lanes = match value_size {
        1 | 2 | 4 | 8 => 1,
        n if n % 8 == 0 => n / 8,
        _ => return None,
    };
    let width = value_size.min(8);
    let mut sums = vec![0u64; lanes];
    for cpu in raw.chunks_exact(stride).take(cpus) {
        for (lane, sum) in sums.iter_mut().enumerate() {
            let bytes = cpu.get(lane * 8..lane * 8 + width)?;
            let mut buf = [0u8; 8];
            buf.get_mut(..width)?.copy_from_slice(bytes);
            *sum = sum.wrapping_add(u64::from_le_bytes(buf));
        }
    }
    Some(sums.iter().flat_map(|s| s.to_le_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::sum_per_cpu;

    #[test]
    fn sums_u64_counters() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&3u64.to_le_bytes());
        raw.extend_from_slice(&4u64.to_le_bytes());
        assert_eq!(sum_per_cpu(&raw, 8, 2), Some(7u64.to_le_bytes().to_vec()));
    }

    #[test]
    fn sums_u32_padded_and_lanes() {
        // u32 values, each padded to 8 bytes.
        let raw = [1, 0, 0, 0, 9, 9, 9, 9, 2, 0, 0, 0, 9, 9, 9, 9];
        assert_eq!(sum_per_cpu(&raw, 4, 2), Some(3u64.to_le_bytes().to_vec()));
        // {packets, bytes} on two CPUs.
        let raw: Vec<u8> = [1u64, 100, 2, 200]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let want: Vec<u8> = [3u64, 300].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(sum_per_cpu(&raw, 16, 2), Some(want));
    }

    #[test]
    fn odd_sizes_and_short_input_are_refused() {
        assert_eq!(sum_per_cpu(&[0; 32], 12, 2), None);
        assert_eq!(sum_per_cpu(&[0; 8], 8, 2), None);
        assert_eq!(sum_per_cpu(&[], 0, 1), None);
    }
}
