//! Tracing probes at run time: attaching programs to tracepoints, uprobes and perf
//! events (`attach`); naming stack frames and drawing flame graphs (`symbols`).

pub mod attach;
pub mod symbols;
