//! Tracing probes at run time: attaching programs to tracepoints, uprobes and perf
//! events (`attach`); naming stack frames and drawing flame graphs (`symbols`); what
//! layout.json says about probes and aggregation maps ([`layout`]), reading, merging and
//! printing the maps ([`aggregate`]), and `emit` records ([`events`]).

pub mod aggregate;
pub mod attach;
pub mod events;
pub mod layout;
pub mod symbols;
