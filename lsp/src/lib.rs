//! pol's language server: LSP over stdio on the compiler's analysis API (`pol lsp`).
//!
//! Protocol glue only: every handler converts positions and parameters from the
//! protocol, asks `pol_compiler::analysis`, and converts the answer back. This crate knows
//! JSON and UTF-16; the compiler knows neither. See docs/lsp.md.

mod convert;
mod handlers;
mod server;
mod stdfiles;

pub use convert::LineIndex;
pub use server::Server;

use lsp_server::Connection;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("LSP protocol error: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    #[error("LSP I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("LSP message error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Serves one client on stdin/stdout until it says `exit` or closes stdin.
pub fn run_stdio() -> Result<(), ServerError> {
    let (connection, io_threads) = Connection::stdio();
    let result = server::run(connection);
    io_threads.join()?;
    result
}
