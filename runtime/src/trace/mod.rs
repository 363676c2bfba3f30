//! Tracing probes at run time: attaching programs to tracepoints, uprobes and perf
//! events (`attach`); naming stack frames and drawing flame graphs (`symbols`); what
//! layout.json says about probes and aggregation maps ([`layout`]), reading, merging and
//! printing the maps ([`aggregate`]), `emit` records ([`events`]), and cgroup ids shown
//! as paths ([`cgroups`]).

pub mod aggregate;
pub mod attach;
pub mod cgroups;
pub mod events;
pub mod layout;
pub mod load;
pub mod symbols;
pub mod watch;
