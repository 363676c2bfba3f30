//! Tracing probes at run time: attaching programs to tracepoints, uprobes and perf
//! events (`attach`); naming stack frames and drawing flame graphs (`symbols`); what
//! layout.json says about probes and aggregation maps ([`layout`]), and reading, merging
//! and printing the maps ([`aggregate`]).

pub mod aggregate;
pub mod attach;
pub mod layout;
pub mod symbols;
