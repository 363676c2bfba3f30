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

const BPF_MAP_LOOKUP_BATCH: u32 = 24;

/// A key and its whole value, as the kernel gives them.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// Reads every entry of a map in batches of `batch` (BPF_MAP_LOOKUP_BATCH, kernel 5.6+):
/// (key, whole value) pairs, values of `value_len` bytes (for per-CPU maps, one padded
/// value per possible CPU). Maps without batch lookups (LPM tries) fail with EINVAL or
/// ENOTSUPP before returning anything; the caller reads them key by key.
pub fn map_lookup_batch(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_len: usize,
    batch: usize,
) -> Result<Vec<RawEntry>, SysError> {
    if key_size == 0 || value_len == 0 || batch == 0 {
        return Err(SysError::BadInput("empty keys, values or batch".into()));
    }
    let batch32 = u32::try_from(batch)
        .map_err(|_| SysError::BadInput("too many entries for one batch".into()))?;
    // Batch tokens: a bucket number (hash maps) or a key (arrays); room for either.
    let tok_len = key_size.max(8);
    let mut in_tok = vec![0u8; tok_len];
    let mut out_tok = vec![0u8; tok_len];
    let mut keys = vec![0u8; batch * key_size];
    let mut values = vec![0u8; batch * value_len];
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { ptr_u64(in_tok.as_ptr()) },
            out_batch: ptr_u64(out_tok.as_mut_ptr()),
            keys: ptr_u64(keys.as_mut_ptr()),
            values: ptr_u64(values.as_mut_ptr()),
            count: batch32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        let r = bpf_call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = (attr.count as usize).min(batch);
        if let Err(e) = r {
            if e != libc::ENOENT {
                return Err(SysError::syscall("BPF_MAP_LOOKUP_BATCH", e));
            }
        }
        for i in 0..n {
            out.push((
                keys[i * key_size..(i + 1) * key_size].to_vec(),
                values[i * value_len..(i + 1) * value_len].to_vec(),
            ));
        }
        // ENOENT: no entries after this batch.
        if r.is_err() {
            return Ok(out);
        }
        in_tok.copy_from_slice(&out_tok);
        first = false;
    }
}
