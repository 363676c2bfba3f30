//! cgroup v2 ids as paths, so that records and keys tell containers apart: the id the
//! kernel reports (`bpf_get_current_cgroup_id`) is the inode number of the cgroup's
//! directory in the cgroup2 file system.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Table {
    paths: HashMap<u64, String>,
    built: Option<Instant>,
}

static TABLE: std::sync::LazyLock<Mutex<Table>> = std::sync::LazyLock::new(|| {
    Mutex::new(Table {
        paths: HashMap::new(),
        built: None,
    })
});

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` in hybrid
/// setups), from /proc/self/mountinfo.
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

fn walk(root: &Path, dir: &Path, out: &mut HashMap<u64, String>, budget: &mut usize) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    out.insert(meta.ino(), format!("/{}", rel.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            *budget -= 1;
            walk(root, &e.path(), out, budget);
        }
    }
}

/// The path of cgroup `id` under the cgroup2 root (`/system.slice/ssh.service`), or
/// `None` when no cgroup has that id (any more). The table is rebuilt on a miss, at most
/// once a second.
pub fn path(id: u64) -> Option<String> {
    let mut t = TABLE.lock().ok()?;
    if let Some(p) = t.paths.get(&id) {
        return Some(p.clone());
    }
    if t.built
        .is_some_and(|b| b.elapsed() < Duration::from_secs(1))
    {
        return None;
    }
    let mut paths = HashMap::new();
    if let Some(root) = cgroup2_root() {
        // A bound on the walk: hosts with huge cgroup trees still answer promptly.
        let mut budget = 100_000;
        walk(&root, &root, &mut paths, &mut budget);
    }
    t.paths = paths;
    t.built = Some(Instant::now());
    t.paths.get(&id).cloned()
}
