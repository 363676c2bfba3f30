//! The standard library as read-only files on disk, so that "go to definition" into
//! `std.net` works in every editor without editor-side code (see docs/lsp.md).
//!
//! The modules are compiled into pol; the server writes each one once to
//! `$XDG_CACHE_HOME/pol/std-VERSION/std/NAME.pol` (or `~/.cache/...`, or the temporary
//! directory), marks it read-only, and answers with `file://` URIs to those files.

use lsp_types::Url;
use pol_compiler::hir::stdlib;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct StdFiles {
    /// `(module, uri)` of each module written.
    files: Vec<(&'static str, Url)>,
}

impl StdFiles {
    /// Writes the modules (where missing or different); a module that cannot be written
    /// is left out, and definitions into it are not offered.
    pub fn materialize() -> StdFiles {
        let root = cache_dir().join(format!("std-{}", env!("CARGO_PKG_VERSION")));
        let mut files = Vec::new();
        for m in stdlib::MODULES {
            let Some(text) = stdlib::module(m) else {
                continue;
            };
            let path = root.join(format!("{}.pol", m.replace('.', "/")));
            match write_readonly(&path, text) {
                Ok(()) => {
                    if let Ok(uri) = Url::from_file_path(&path) {
                        files.push((*m, uri));
                    }
                }
                Err(e) => eprintln!("pol lsp: cannot write {}: {e}", path.display()),
            }
        }
        StdFiles { files }
    }

    pub fn uri(&self, module: &str) -> Option<&Url> {
        self.files
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, u)| u)
    }
}

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pol");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h).join(".cache/pol");
    }
    std::env::temp_dir().join("pol")
}

fn write_readonly(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A read-only copy from an earlier run must be made writable to be replaced.
    if let Ok(meta) = std::fs::metadata(path) {
        let mut perm = meta.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(path, perm)?;
    }
    std::fs::write(path, text)?;
    let mut perm = std::fs::metadata(path)?.permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(path, perm)
}
