//! Filling maps many entries per call (BPF_MAP_UPDATE_BATCH, kernel 5.6+), for set and rule
//! maps of 100,000 entries: one syscall per batch instead of one per key.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{bpf_call, ptr_u64, BpfAttr, SysError};

const BPF_MAP_UPDATE_BATCH: u32 = 26;

/// `union bpf_attr` for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}
// SAFETY: plain repr(C) integers; `keys` and `values` point at live buffers of `count`
// keys and values of the map's sizes.
unsafe impl BpfAttr for BatchAttr {}

/// Sets `count` entries at once: `keys` holds `count` keys of `key_size` bytes back to back,
/// `values` as many values. Returns how many were written; on error, the error and that
/// number (the first entries may be in the map). Maps without batch support fail with
/// EINVAL or ENOTSUPP and write nothing.
pub fn map_update_batch(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    key_size: usize,
    values: &[u8],
    value_size: usize,
) -> Result<usize, (SysError, usize)> {
    if key_size == 0 || value_size == 0 || !keys.len().is_multiple_of(key_size) {
        return Err((
            SysError::BadInput("keys are not a whole number of keys".into()),
            0,
        ));
    }
    let count = keys.len() / key_size;
    if values.len() != count * value_size {
        return Err((
            SysError::BadInput(format!(
                "{count} keys but {} bytes of values ({value_size} each)",
                values.len()
            )),
            0,
        ));
    }
    if count == 0 {
        return Ok(0);
    }
    let count32 = u32::try_from(count).map_err(|_| {
        (
            SysError::BadInput("too many entries for one batch".into()),
            0,
        )
    })?;
    let mut attr = BatchAttr {
        keys: ptr_u64(keys.as_ptr()),
        values: ptr_u64(values.as_ptr()),
        count: count32,
        map_fd: fd.as_raw_fd() as u32,
        ..Default::default()
    };
    match bpf_call(BPF_MAP_UPDATE_BATCH, &mut attr) {
        Ok(_) => Ok(attr.count as usize),
        Err(e) => Err((
            SysError::syscall("BPF_MAP_UPDATE_BATCH", e),
            attr.count as usize,
        )),
    }
}
