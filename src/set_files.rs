//! Reading the files that `file(..)` sets name: regular files only, at most
//! [`MAX_SET_FILE`] bytes of UTF-8 text. Errors say what the file is, never what it holds.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest set file read: 64 MiB, about 3 million addresses or 2.5 million prefixes
/// one per line, far above what one map holds well, far below what exhausts memory.
pub const MAX_SET_FILE: u64 = 64 << 20;

/// Reads a set file, refusing directories, FIFOs, sockets and devices (`/dev/zero` would
/// grow without end, a FIFO would block) and files above [`MAX_SET_FILE`].
pub fn read(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    plain_file(meta.file_type())?;
    // O_NONBLOCK: should the path become a FIFO between the check and the open, the open
    // returns at once instead of waiting for a writer.
    let mut f: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    plain_file(meta.file_type())?;
    if meta.len() > MAX_SET_FILE {
        return Err(too_large(meta.len()));
    }
    // Files in /proc say 0 bytes and may hold more: the read itself stops at the limit.
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_SET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_SET_FILE {
        return Err(too_large(buf.len() as u64));
    }
    String::from_utf8(buf).map_err(|e| {
        format!(
            "is not text: invalid UTF-8 at byte {} (a set file is one address, prefix or \
             number per line)",
            e.utf8_error().valid_up_to()
        )
    })
}

fn plain_file(t: FileType) -> Result<(), String> {
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(format!(
        "is {what}; a set file must be a regular file of at most {} MiB",
        MAX_SET_FILE >> 20
    ))
}

fn too_large(len: u64) -> String {
    format!(
        "holds more than {} MiB ({}{} bytes); a set file may hold at most {} bytes \
         (docs/sets.md: limits)",
        MAX_SET_FILE >> 20,
        if len > MAX_SET_FILE { "at least " } else { "" },
        len,
        MAX_SET_FILE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused() {
        for (p, what) in [
            ("/dev/zero", "is a character device"),
            ("/dev/null", "is a character device"),
            ("/", "is a directory"),
        ] {
            let e = read(Path::new(p)).expect_err(p);
            assert!(e.starts_with(what), "{p}: {e}");
        }
        let dir = std::env::temp_dir().join(format!("pol_set_files_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("no NUL");
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo).expect_err("fifo");
        assert!(e.starts_with("is a FIFO"), "{e}");
        let big = dir.join("big");
        let f = File::create(&big).expect("create");
        f.set_len(MAX_SET_FILE + 1).expect("sparse file");
        let e = read(&big).expect_err("too large");
        assert!(e.contains("at most 67108864 bytes"), "{e}");
        std::fs::write(&big, b"10.0.0.1\n\xff\xfe\n").expect("write");
        let e = read(&big).expect_err("binary");
        assert!(e.contains("invalid UTF-8 at byte 9"), "{e}");
        std::fs::write(&big, "10.0.0.1\n").expect("write");
        assert_eq!(read(&big).as_deref(), Ok("10.0.0.1\n"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
