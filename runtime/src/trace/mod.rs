//! Tracing probes at run time: attaching programs to tracepoints, uprobes and perf
//! events (`attach`).

pub mod attach;
