//! The helper functions MIR may call: id, argument kinds, result and the program types
//! that may call each, as the 6.18 kernel's `bpf_func_proto`s say (shared/notes/kernel-hooks.md).

use super::types::{HookKind, IntTy};

/// What a helper argument must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A map handle (`mapref`) of any kind but a ring buffer.
    Map,
    /// A ring buffer map handle.
    RingMap,
    /// A stack trace map handle.
    StackMap,
    /// A readable pointer to `key_size` bytes of the map in argument 0.
    Key,
    /// A readable pointer to `value_size` bytes of the map in argument 0.
    MapValue,
    /// Any integer.
    Scalar,
    /// A constant size, at least 1 (`ARG_CONST_SIZE` from an `iconst`).
    ConstSize,
    /// A size whose maximum is known (a constant, a mask, a narrow load), maybe 0.
    Size,
    /// A writable pointer to at least as many bytes as argument `.0` says.
    MemWrite(u8),
    /// A readable, initialised pointer to at least as many bytes as argument `.0` says.
    MemRead(u8),
    /// The program's context.
    Ctx,
    /// A null-checked `ringbuf_reserve` result.
    RingRecord,
    /// A function (`funcref`) called back as `(u64 index, ctx) -> i64` returning 0 or 1.
    Callback,
    /// A stack pointer passed on to the callback, or the constant 0.
    CallbackCtx,
}

/// What a helper returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Int(IntTy),
    /// A pointer to a value of the map in argument 0, or null.
    MapValueOrNull,
    /// A pointer to as many bytes as the constant in argument 1, or null.
    MemOrNull,
    /// Nothing: r0 is unreadable after the call, so the call has no result.
    Void,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Helper {
    pub id: u32,
    pub name: &'static str,
    pub args: &'static [Arg],
    pub ret: Ret,
    /// Bit set of [`HookKind::bit`].
    pub hooks: u8,
    /// Whether the helper invalidates packet pointers (the kernel forgets their bounds).
    pub changes_packet: bool,
}

const ALL: u8 = 0xff;
const CGROUP: u8 = 1 << HookKind::CgroupSockAddr as u8;
const TRACING: u8 = ALL & !(1 << HookKind::Xdp as u8) & !(1 << HookKind::Tc as u8) & !CGROUP;
/// Tracing hooks and cgroup sock_addr hooks (`cgroup_current_func_proto`; the task and
/// kernel reads through `bpf_base_func_proto` for CAP_PERFMON loaders).
const PROCESS: u8 = TRACING | CGROUP;
const TC: u8 = 1 << HookKind::Tc as u8;
const XDP: u8 = 1 << HookKind::Xdp as u8;
const I64: Ret = Ret::Int(IntTy::I64);
const U64: Ret = Ret::Int(IntTy::U64);

const fn h(id: u32, name: &'static str, args: &'static [Arg], ret: Ret, hooks: u8) -> Helper {
    Helper {
        id,
        name,
        args,
        ret,
        hooks,
        changes_packet: false,
    }
}

use Arg::*;

/// Every helper MIR knows, by id.
pub const HELPERS: &[Helper] = &[
    h(1, "map_lookup_elem", &[Map, Key], Ret::MapValueOrNull, ALL),
    h(
        2,
        "map_update_elem",
        &[Map, Key, MapValue, Scalar],
        I64,
        ALL,
    ),
    h(3, "map_delete_elem", &[Map, Key], I64, ALL),
    h(5, "ktime_get_ns", &[], U64, ALL),
    h(8, "get_smp_processor_id", &[], Ret::Int(IntTy::U32), ALL),
    h(14, "get_current_pid_tgid", &[], U64, PROCESS),
    // flags: the low 8 bits skip frames; BPF_F_USER_STACK (1 << 8) for the user stack.
    h(27, "get_stackid", &[Ctx, StackMap, Scalar], I64, TRACING),
    // The current `struct task_struct *` as a number: read through probe_read_kernel.
    h(35, "get_current_task", &[], U64, PROCESS),
    // Security rules' `kill`: a signal to the current process (SIGKILL).
    h(109, "send_signal", &[Scalar], I64, TRACING),
    h(15, "get_current_uid_gid", &[], U64, PROCESS),
    h(
        16,
        "get_current_comm",
        &[MemWrite(1), ConstSize],
        I64,
        PROCESS,
    ),
    h(
        26,
        "skb_load_bytes",
        &[Ctx, Scalar, MemWrite(3), ConstSize],
        I64,
        TC,
    ),
    Helper {
        changes_packet: true,
        ..h(39, "skb_pull_data", &[Ctx, Scalar], I64, TC)
    },
    h(80, "get_current_cgroup_id", &[], U64, PROCESS),
    h(
        112,
        "probe_read_user",
        &[MemWrite(1), Size, Scalar],
        I64,
        TRACING,
    ),
    h(
        113,
        "probe_read_kernel",
        &[MemWrite(1), Size, Scalar],
        I64,
        PROCESS,
    ),
    h(
        114,
        "probe_read_user_str",
        &[MemWrite(1), Size, Scalar],
        I64,
        TRACING,
    ),
    h(
        115,
        "probe_read_kernel_str",
        &[MemWrite(1), Size, Scalar],
        I64,
        PROCESS,
    ),
    h(
        130,
        "ringbuf_output",
        &[RingMap, MemRead(2), Size, Scalar],
        I64,
        ALL,
    ),
    h(
        131,
        "ringbuf_reserve",
        &[RingMap, ConstSize, Scalar],
        Ret::MemOrNull,
        ALL,
    ),
    h(132, "ringbuf_submit", &[RingRecord, Scalar], Ret::Void, ALL),
    h(
        133,
        "ringbuf_discard",
        &[RingRecord, Scalar],
        Ret::Void,
        ALL,
    ),
    h(
        181,
        "loop",
        &[Scalar, Callback, CallbackCtx, Scalar],
        I64,
        ALL,
    ),
    h(188, "xdp_get_buff_len", &[Ctx], U64, XDP),
    // L7 passes (issue 13): payload bytes from any buffer of a multi-buffer frame.
    h(
        189,
        "xdp_load_bytes",
        &[Ctx, Scalar, MemWrite(3), ConstSize],
        I64,
        XDP,
    ),
];

pub fn by_id(id: u32) -> Option<&'static Helper> {
    HELPERS.iter().find(|h| h.id == id)
}

pub fn by_name(name: &str) -> Option<&'static Helper> {
    HELPERS.iter().find(|h| h.name == name)
}

impl Helper {
    pub fn allowed_in(&self, kind: HookKind) -> bool {
        self.hooks & kind.bit() != 0
    }
}
