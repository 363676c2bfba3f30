//! Map commands on raw fds: create, lookup, update, delete, iterate, info.
//!
//! These work for any map whatever its key and value types, which is what reading maps
//! generically (key bytes, value bytes) needs; aya's typed maps want sizes at compile time.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::prog::{InfoAttr, OBJ_GET_INFO_BY_FD};
use super::{bpf_call, obj_name, owned_fd, ptr_u64, BpfAttr, SysError};

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;

/// The kernel's `enum bpf_map_type`, for the kinds pol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    PerCpuHash = 5,
    PerCpuArray = 6,
    LruHash = 9,
    LruPerCpuHash = 10,
    LpmTrie = 11,
    RingBuf = 27,
}

impl MapType {
    /// Whether lookups return one value per possible CPU.
    pub fn is_per_cpu(raw: u32) -> bool {
        raw == MapType::PerCpuHash as u32
            || raw == MapType::PerCpuArray as u32
            || raw == MapType::LruPerCpuHash as u32
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}
// SAFETY: plain repr(C) integers and bytes, no pointers.
unsafe impl BpfAttr for MapCreateAttr {}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
// SAFETY: plain repr(C) integers; key/value point at live buffers of the map's sizes.
unsafe impl BpfAttr for MapElemAttr {}

/// Creates a map without BTF (tests and scratch maps). `flags` is `map_flags`
/// (LPM tries need BPF_F_NO_PREALLOC = 1).
pub fn map_create(
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, SysError> {
    // Scratch maps keep the errno's generic explanation.
    map_create_named(
        "",
        map_type as u32,
        key_size,
        value_size,
        max_entries,
        flags,
    )
    .map_err(|e| match e.errno() {
        Some(errno) => SysError::syscall("BPF_MAP_CREATE", errno),
        None => e,
    })
}

/// Creates a map named `name` (without BTF; truncated to the kernel's 15 bytes), for the
/// direct load path (`crate::direct`). `map_type` is the raw `enum bpf_map_type`. Errors
/// name the map and say what the errno most likely means for it.
pub fn map_create_named(
    name: &str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, SysError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: obj_name(name),
        ..Default::default()
    };
    let fd = bpf_call(BPF_MAP_CREATE, &mut attr).map_err(|e| {
        let why = match e {
            libc::ENOMEM | libc::E2BIG => format!(
                "cannot allocate map `{name}` ({max_entries} entries of {key_size}+{value_size} bytes): \
                 the kernel ran out of memory or hit the locked-memory limit"
            ),
            libc::EPERM => "creating maps needs root (CAP_BPF)".to_string(),
            _ => format!("the kernel refused map `{name}` (type {map_type}, flags {flags:#x})"),
        };
        SysError::syscall_with("BPF_MAP_CREATE", e, why)
    })?;
    owned_fd(fd)
}

/// `struct bpf_map_info` (88 bytes on kernel 6.x).
#[repr(C)]
#[derive(Default)]
struct RawMapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
    ifindex: u32,
    btf_vmlinux_value_type_id: u32,
    netns_dev: u64,
    netns_ino: u64,
    btf_id: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_id: u32,
    map_extra: u64,
}

/// What the kernel reports about a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    pub id: u32,
    pub name: String,
    /// `enum bpf_map_type` value (see [`MapType`]).
    pub map_type: u32,
    pub key_size: u32,
    /// Per-CPU maps: the size of one CPU's value.
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// Reads `bpf_map_info` for a map fd.
pub fn map_info(fd: BorrowedFd<'_>) -> Result<MapInfo, SysError> {
    let mut info = RawMapInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<RawMapInfo>() as u32,
        info: ptr_u64(&mut info as *mut RawMapInfo),
    };
    bpf_call(OBJ_GET_INFO_BY_FD, &mut attr)
        .map_err(|e| SysError::syscall("BPF_OBJ_GET_INFO_BY_FD", e))?;
    let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(MapInfo {
        id: info.id,
        name: String::from_utf8_lossy(info.name.get(..end).unwrap_or_default()).into_owned(),
        map_type: info.map_type,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
        flags: info.map_flags,
    })
}

/// The key after `key` (the first key when `key` is `None`); `None` at the end.
pub fn map_next_key(fd: BorrowedFd<'_>, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, SysError> {
    // The kernel writes key_size bytes into `next`: take the size from the kernel.
    let key_size = map_info(fd)?.key_size as usize;
    if let Some(k) = key {
        check_len("key", k.len(), key_size)?;
    }
    let mut next = vec![0u8; key_size];
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key.map_or(0, |k| ptr_u64(k.as_ptr())),
        value: ptr_u64(next.as_mut_ptr()),
        ..Default::default()
    };
    match bpf_call(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(_) => Ok(Some(next)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(SysError::syscall("BPF_MAP_GET_NEXT_KEY", e)),
    }
}

/// Looks `key` up; `value_len` is the whole value buffer (for per-CPU maps
/// `round_up(value_size, 8) * possible_cpus()`). `None` when the key is absent.
pub fn map_lookup(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value_len: usize,
) -> Result<Option<Vec<u8>>, SysError> {
    // The kernel reads key_size bytes from `key` and writes the whole value: check both.
    let info = map_info(fd)?;
    check_len("key", key.len(), info.key_size as usize)?;
    check_len("value buffer", value_len, value_buf_len(&info)?)?;
    let mut value = vec![0u8; value_len];
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: ptr_u64(key.as_ptr()),
        value: ptr_u64(value.as_mut_ptr()),
        ..Default::default()
    };
    match bpf_call(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(SysError::syscall("BPF_MAP_LOOKUP_ELEM", e)),
    }
}

/// Sets `key` to `value` (`flags`: 0 any, 1 only new, 2 only existing).
pub fn map_update(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), SysError> {
    let info = map_info(fd)?;
    check_len("key", key.len(), info.key_size as usize)?;
    check_len("value", value.len(), value_buf_len(&info)?)?;
    map_update_sized(fd, key, value, flags)
}

/// BPF_MAP_UPDATE_ELEM without first asking the kernel for the map's sizes: the caller
/// created the map and passes `key`/`value` of exactly its key and value sizes.
pub fn map_update_sized(
    fd: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> Result<(), SysError> {
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: ptr_u64(key.as_ptr()),
        value: ptr_u64(value.as_ptr()),
        flags,
        ..Default::default()
    };
    bpf_call(BPF_MAP_UPDATE_ELEM, &mut attr)
        .map(|_| ())
        .map_err(|e| SysError::syscall("BPF_MAP_UPDATE_ELEM", e))
}

/// Deletes `key`; `false` when it was absent.
pub fn map_delete(fd: BorrowedFd<'_>, key: &[u8]) -> Result<bool, SysError> {
    let info = map_info(fd)?;
    check_len("key", key.len(), info.key_size as usize)?;
    let mut attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: ptr_u64(key.as_ptr()),
        ..Default::default()
    };
    match bpf_call(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(SysError::syscall("BPF_MAP_DELETE_ELEM", e)),
    }
}

/// The size of a whole value as lookups return it: per-CPU maps give
/// `round_up(value_size, 8)` bytes for each possible CPU.
pub fn value_buf_len(info: &MapInfo) -> Result<usize, SysError> {
    if MapType::is_per_cpu(info.map_type) {
        Ok((info.value_size as usize).div_ceil(8) * 8 * possible_cpus()?)
    } else {
        Ok(info.value_size as usize)
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), SysError> {
    if got == want {
        Ok(())
    } else {
        Err(SysError::BadInput(format!(
            "the {what} is {got} bytes but the map needs {want}"
        )))
    }
}

/// Number of possible CPUs (the length of a per-CPU map value), from
/// `/sys/devices/system/cpu/possible` ("0-3", "0,2-5", ...).
pub fn possible_cpus() -> Result<usize, SysError> {
    // Read once: it cannot change while the system runs, and per-CPU lookups ask for it
    // on every call (reading the file each time made a 100,000-slot read take seconds).
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&n) = CPUS.get() {
        return Ok(n);
    }
    let n = read_possible_cpus()?;
    Ok(*CPUS.get_or_init(|| n))
}

fn read_possible_cpus() -> Result<usize, SysError> {
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH).map_err(|e| {
        SysError::BadInput(format!(
            "cannot read {PATH} to count CPUs for per-CPU maps: {e}"
        ))
    })?;
    parse_cpu_list(text.trim())
        .ok_or_else(|| SysError::BadInput(format!("cannot parse {PATH}: {:?}", text.trim())))
}

/// Parses a kernel CPU list; the count is the highest CPU number plus one.
fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut max = None;
    for part in s.split(',') {
        let last = match part.split_once('-') {
            Some((_, hi)) => hi.trim().parse::<usize>().ok()?,
            None => part.trim().parse::<usize>().ok()?,
        };
        max = Some(max.map_or(last, |m: usize| m.max(last)));
    }
    max.map(|m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
