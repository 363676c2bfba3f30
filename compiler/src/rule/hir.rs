//! The typed HIR of security rules: each rule's event kind, its condition over the
//! kind's fields, and its actions; and the record every event of a kind fills (the same
//! bytes are tested by the rules and sent as the alert).

use crate::syntax::ast::Span;
use serde::Serialize;

/// Every rule of a file, in source order.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Lists tested with `in` that are looked up in a hash map rather than compared one
    /// value at a time ([`Cond::Member`] indexes here).
    pub sets: Vec<MemberSet>,
}

/// A list of values tested with `FIELD in LIST`, long enough that one hash map lookup
/// per event beats comparing each value: every set of one field shares a map whose value
/// says, one bit a set, which sets hold the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberSet {
    /// The field's name: sets of one field share a map (`ancestor.comm`'s slots too).
    pub field: &'static str,
    pub values: Vec<SetValue>,
}

/// A value of a [`MemberSet`]: a string (its key is the NUL-padded bytes) or an integer
/// (its key is the u64).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SetValue {
    Str(Vec<u8>),
    Int(u64),
}

/// Sets of strings this long or longer are looked up in a map: below it, comparing a few
/// words a value costs less than hashing the key.
pub const STR_SET_MIN: usize = 8;
/// And sets of integers (one compare a value).
pub const INT_SET_MIN: usize = 16;

impl RuleSet {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule of `kind` tests or prints field `name` (fields that cost helper
    /// calls are read only then).
    pub fn uses(&self, kind: Kind, name: &str) -> bool {
        let braced = format!("{{{name}}}");
        self.rules
            .iter()
            .filter(|r| r.kind == kind)
            .any(|r| r.cond.uses(name) || r.message.contains(&braced))
    }

    /// The kinds some rule is on, each once, in [`Kind::ALL`] order.
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.rules.iter().any(|r| r.kind == *k))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    pub kind: Kind,
    /// Every `when` of the rule, combined with `and` (`True` without one).
    pub cond: Cond,
    pub severity: Severity,
    /// The alert's text; `{field}` is replaced by the event's field.
    pub message: String,
    pub kill: bool,
    /// Refuse the operation (connect, bind).
    pub deny: bool,
    /// `action audit`: the rule starts in audit mode whatever the file's mode (switch it
    /// with `pol mode FILE enforce --rule NAME`).
    pub audit: bool,
    pub span: Span,
    /// `rule NAME on KIND`: where alerts point.
    pub header: Span,
}

/// The events a rule can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    /// A process image replaced (`execve`), seen once the new image is set up and before
    /// it runs: `tp_btf/sched_process_exec`.
    Exec,
    /// A file opened (`open`, `openat`, `openat2`, `creat`), seen at the system call's
    /// entry: `tracepoint/syscalls/sys_enter_*`.
    Open,
    /// An IPv4 or IPv6 socket connecting (`connect`, and UDP `sendmsg` targets set by
    /// connect): the cgroup hooks `cgroup/connect4` and `cgroup/connect6`, which can
    /// refuse the call.
    Connect,
    /// An IPv4 or IPv6 socket binding a local address: `cgroup/bind4`, `cgroup/bind6`.
    Bind,
    /// A process changing its user ids (`setuid`, `setreuid`, `setresuid`), seen at the
    /// system call's entry.
    Setuid,
    /// A process changing its group ids (`setgid`, `setregid`, `setresgid`).
    Setgid,
    /// A `ptrace` call, at its entry.
    Ptrace,
    /// A process ended (its last thread exited): `tp_btf/sched_process_exit` when
    /// `group_dead`, in the exiting task.
    Exit,
    /// A UDP datagram sent to an address (`sendto`, `sendmsg` on a socket that did not
    /// `connect`): `cgroup/sendmsg4`, `cgroup/sendmsg6`, which can refuse it.
    Sendmsg,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Exec,
        Kind::Open,
        Kind::Connect,
        Kind::Bind,
        Kind::Setuid,
        Kind::Setgid,
        Kind::Ptrace,
        Kind::Exit,
        Kind::Sendmsg,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Open => "open",
            Kind::Connect => "connect",
            Kind::Bind => "bind",
            Kind::Setuid => "setuid",
            Kind::Setgid => "setgid",
            Kind::Ptrace => "ptrace",
            Kind::Exit => "exit",
            Kind::Sendmsg => "sendmsg",
        }
    }

    /// Whether its hooks can refuse the operation (`deny`); they are cgroup hooks,
    /// which cannot send signals (`kill`).
    pub fn can_deny(self) -> bool {
        matches!(self, Kind::Connect | Kind::Bind | Kind::Sendmsg)
    }

    pub fn by_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The fields of this kind's record, in record order.
    pub fn fields(self) -> &'static [Field] {
        match self {
            Kind::Exec => EXEC_FIELDS,
            Kind::Open => OPEN_FIELDS,
            Kind::Connect => CONNECT_FIELDS,
            Kind::Bind => BIND_FIELDS,
            Kind::Setuid => SETUID_FIELDS,
            Kind::Setgid => SETGID_FIELDS,
            Kind::Ptrace => PTRACE_FIELDS,
            Kind::Exit => EXIT_FIELDS,
            Kind::Sendmsg => SENDMSG_FIELDS,
        }
    }

    pub fn field(self, name: &str) -> Option<&'static Field> {
        self.fields().iter().find(|f| f.name == name)
    }

    /// Where the tail fields (`euid`, `ancestor.comm`) start.
    pub fn tail(self) -> u32 {
        match self {
            Kind::Exec | Kind::Open => TAIL,
            Kind::Connect
            | Kind::Bind
            | Kind::Setuid
            | Kind::Setgid
            | Kind::Ptrace
            | Kind::Exit
            | Kind::Sendmsg => SOCK_TAIL,
        }
    }

    /// Bytes of the record (and of the per-CPU scratch value it is built in).
    pub fn record_size(self) -> u32 {
        match self {
            Kind::Exec => OFF_EXE_WRITABLE + 8,
            Kind::Open => RECORD_SIZE,
            Kind::Connect
            | Kind::Bind
            | Kind::Setuid
            | Kind::Setgid
            | Kind::Ptrace
            | Kind::Exit
            | Kind::Sendmsg => SOCK_RECORD_SIZE,
        }
    }
}

/// Record header words, before the fields: the record kind (the event layout's index),
/// the index of the rule that matched, and what was done (bit 0: killed, bit 1: denied,
/// bit 2: the rule would have killed or denied but the rules run in audit mode).
pub const OFF_KIND: u32 = 0;
pub const OFF_RULE: u32 = 8;
pub const OFF_FLAGS: u32 = 16;
pub const FLAG_KILLED: u64 = 1;
pub const FLAG_DENIED: u64 = 2;
pub const FLAG_AUDIT: u64 = 4;

/// Bytes of the path and argv buffers (a power of two: offsets into them are masked).
pub const PATH_MAX: u32 = 256;
pub const ARGV_MAX: u32 = 256;
pub const COMM_LEN: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FieldTy {
    Int,
    /// A NUL-terminated string in a buffer of this many bytes.
    Str(u32),
    /// NUL-separated arguments (printed as a list; not testable yet).
    Args(u32),
    /// This many command names of 16 bytes each (the ancestors, parent first); a test of
    /// the field holds when it holds for any of them.
    Comms(u32),
    /// An IPv4 (first 4 bytes) or IPv6 address of 16 bytes, in network order; the
    /// kind's `family` field says which.
    Addr,
}

/// A field of an event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Field {
    /// As written in rules: `path`, `parent.comm`.
    pub name: &'static str,
    pub ty: FieldTy,
    pub offset: u32,
    /// For strings, the u64 word holding the length read (with its NUL), when kept.
    pub len_at: Option<u32>,
    pub doc: &'static str,
}

const fn int(name: &'static str, offset: u32, doc: &'static str) -> Field {
    Field {
        name,
        ty: FieldTy::Int,
        offset,
        len_at: None,
        doc,
    }
}

/// Fields every kind has, at the same offsets: the process and its parent.
pub const OFF_PID: u32 = 24;
pub const OFF_PPID: u32 = 32;
pub const OFF_UID: u32 = 40;
pub const OFF_GID: u32 = 48;
pub const OFF_CGROUP: u32 = 56;
pub const OFF_COMM: u32 = 80;
pub const OFF_PARENT_COMM: u32 = 96;
/// The path (exec's program, open's file) and the u64 holding its length with the NUL.
pub const OFF_PATH: u32 = 112;
pub const OFF_PATH_LEN: u32 = 64;

macro_rules! common_fields {
    ($comm_doc:literal) => {
        [
            int("pid", OFF_PID, "process id (the kernel's tgid)"),
            int("ppid", OFF_PPID, "the parent's process id"),
            int("uid", OFF_UID, "real user id"),
            int("gid", OFF_GID, "real group id"),
            int("cgroup", OFF_CGROUP, "cgroup v2 id (printed as its path)"),
            Field {
                name: "comm",
                ty: FieldTy::Str(COMM_LEN),
                offset: OFF_COMM,
                len_at: None,
                doc: $comm_doc,
            },
            Field {
                name: "parent.comm",
                ty: FieldTy::Str(COMM_LEN),
                offset: OFF_PARENT_COMM,
                len_at: None,
                doc: "the parent's command name",
            },
        ]
    };
}

/// A kind's fields: the 7 common ones `$c`, its own, the 6 tail ones `$t`, then any
/// of its own that lie after the tail (record order).
macro_rules! kind_fields {
    ($c:ident, $t:ident; $($own:expr),* $(,)? $(; $($after:expr),* $(,)?)?) => {
        &[
            $c[0], $c[1], $c[2], $c[3], $c[4], $c[5], $c[6],
            $($own,)*
            $t[0], $t[1], $t[2], $t[3], $t[4], $t[5],
            $($($after),*)?
        ]
    };
}

const EXEC_COMMON: [Field; 7] =
    common_fields!("the new command name (the file name, 15 bytes at most)");
const OPEN_COMMON: [Field; 7] = common_fields!("the command name (15 bytes at most)");

/// How many ancestors `ancestor.comm` holds: the parent, the grandparent and two more.
pub const ANCESTORS: u32 = 4;

/// Offsets in the tail (after a kind's own fields) of: the effective uid, whether
/// stdin and stdout are sockets, the ancestors' command names, the name of the process's
/// cgroup v2 directory, and the parent's program.
pub const T_STDIN: u32 = 8;
pub const T_STDOUT: u32 = 16;
pub const T_ANCESTORS: u32 = 24;
pub const T_CGROUP_NAME: u32 = T_ANCESTORS + 16 * ANCESTORS;
/// Bytes of `cgroup.name` (a power of two: suffix offsets are masked).
pub const CGROUP_NAME_MAX: u32 = 64;

/// Fields at the end of every record, after the kind's own (all but `euid` read only
/// when a rule of the kind uses them).
macro_rules! tail_fields {
    ($base:expr) => {
        [
            int("euid", $base, "effective user id"),
            int(
                "stdin.socket",
                $base + T_STDIN,
                "1 when the process's stdin (fd 0) is a socket, else 0",
            ),
            int(
                "stdout.socket",
                $base + T_STDOUT,
                "1 when the process's stdout (fd 1) is a socket, else 0",
            ),
            Field {
                name: "ancestor.comm",
                ty: FieldTy::Comms(ANCESTORS),
                offset: $base + T_ANCESTORS,
                len_at: None,
                doc: "the command names of the parent, grandparent and two more ancestors",
            },
            Field {
                name: "cgroup.name",
                ty: FieldTy::Str(CGROUP_NAME_MAX),
                offset: $base + T_CGROUP_NAME,
                len_at: None,
                doc: "the name of the process's cgroup v2 directory (`docker-ID.scope`, `nginx.service`; 63 bytes at most)",
            },
            Field {
                name: "parent.path",
                ty: FieldTy::Str(PATH_MAX),
                offset: $base + PARENT_PATH,
                len_at: None,
                doc: "the program the parent runs, as its execve was given it (absolute for processes started before the rules)",
            },
        ]
    };
}

/// Where the tail fields start in exec and open records, and in connect and bind records.
pub const TAIL: u32 = 624;
pub const SOCK_TAIL: u32 = 136;
const TAIL_FIELDS: [Field; 6] = tail_fields!(TAIL);
const SOCK_TAIL_FIELDS: [Field; 6] = tail_fields!(SOCK_TAIL);

pub const EXEC_FIELDS: &[Field] = kind_fields![
    EXEC_COMMON, TAIL_FIELDS;
    Field {
        name: "path",
        ty: FieldTy::Str(PATH_MAX),
        offset: OFF_PATH,
        len_at: Some(OFF_PATH_LEN),
        doc: "the program as execve was given it (255 bytes at most)",
    },
    Field {
        name: "argv",
        ty: FieldTy::Args(ARGV_MAX),
        offset: 368,
        len_at: Some(72),
        doc: "the arguments, argv[0] first (255 bytes at most)",
    };
    int(
        "exe.deleted",
        OFF_EXE_DELETED,
        "1 when the program's file was unlinked (or is a memfd) when it ran, else 0",
    ),
    int(
        "exe.writable_mount",
        OFF_EXE_WRITABLE,
        "1 when the program's file lies on a mount that is not read-only, else 0",
    ),
];

/// `open`'s flags and mode as the system call got them, and whether it opens for writing.
pub const OFF_FLAGS_ARG: u32 = 72;
pub const OFF_MODE: u32 = 368;
pub const OFF_WRITE: u32 = 376;
/// The flags that make an open a write: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND.
pub const WRITE_FLAGS: u64 = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000;

pub const OPEN_FIELDS: &[Field] = kind_fields![
    OPEN_COMMON, TAIL_FIELDS;
    Field {
        name: "path",
        ty: FieldTy::Str(PATH_MAX),
        offset: OFF_PATH,
        len_at: Some(OFF_PATH_LEN),
        doc: "the file as the call was given it (relative if it was; 255 bytes at most)",
    },
    int(
        "flags",
        OFF_FLAGS_ARG,
        "the open flags (`flags & 0o1000 != 0`: O_TRUNC)",
    ),
    int("mode", OFF_MODE, "the mode a created file gets"),
    int(
        "write",
        OFF_WRITE,
        "1 when opened for writing (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC or O_APPEND), else 0",
    ),
];

/// `connect` and `bind`: the socket's family (2 AF_INET, 10 AF_INET6), the address and
/// port (host order) it connects to or binds, and its protocol (6 TCP, 17 UDP). An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is recorded as the IPv4 address, so a
/// rule on an IPv4 address also sees dual-stack sockets reach it.
pub const OFF_FAMILY: u32 = 64;
pub const OFF_PORT: u32 = 72;
pub const OFF_ADDR: u32 = 112;
pub const OFF_PROTOCOL: u32 = 128;
pub const SOCK_RECORD_SIZE: u32 = SOCK_TAIL + PARENT_PATH + 2 * PATH_MAX;
pub const AF_INET: u64 = 2;
pub const AF_INET6: u64 = 10;

macro_rules! sock_fields {
    ($what:literal) => {
        kind_fields![
            OPEN_COMMON, SOCK_TAIL_FIELDS;
            int("family", OFF_FAMILY, "2 (AF_INET) or 10 (AF_INET6)"),
            Field {
                name: "address",
                ty: FieldTy::Addr,
                offset: OFF_ADDR,
                len_at: None,
                doc: $what,
            },
            int("port", OFF_PORT, "the port (host order)"),
            int("protocol", OFF_PROTOCOL, "6 (TCP) or 17 (UDP)"),
        ]
    };
}

pub const CONNECT_FIELDS: &[Field] =
    sock_fields!("the address connected to (IPv4-mapped IPv6 addresses as IPv4)");
pub const BIND_FIELDS: &[Field] = sock_fields!("the local address bound (0.0.0.0 or :: for any)");
pub const SENDMSG_FIELDS: &[Field] =
    sock_fields!("the address the datagram is sent to (IPv4-mapped IPv6 addresses as IPv4)");

/// `setuid`, `setgid` and `ptrace`: the system call's arguments, at 64 and 72 (their
/// records are as long as connect's).
pub const OFF_ARG0: u32 = 64;
pub const OFF_ARG1: u32 = 72;

pub const SETUID_FIELDS: &[Field] = kind_fields![
    OPEN_COMMON, SOCK_TAIL_FIELDS;
    int(
        "new_uid",
        OFF_ARG0,
        "the effective uid asked for (setuid's uid, setreuid's and setresuid's euid; 4294967295: unchanged)"
    ),
];

pub const SETGID_FIELDS: &[Field] = kind_fields![
    OPEN_COMMON, SOCK_TAIL_FIELDS;
    int(
        "new_gid",
        OFF_ARG0,
        "the effective gid asked for (setgid's gid, setregid's and setresgid's egid; 4294967295: unchanged)"
    ),
];

pub const PTRACE_FIELDS: &[Field] = kind_fields![
    OPEN_COMMON, SOCK_TAIL_FIELDS;
    int("request", OFF_ARG0, "the request (0 PTRACE_TRACEME, 16 PTRACE_ATTACH, 0x4206 PTRACE_SEIZE)"),
    int("target", OFF_ARG1, "the pid the request is about"),
];

/// `exit`: how the process ended, from `task->exit_code` (as `wait` reports it).
pub const EXIT_FIELDS: &[Field] = kind_fields![
    OPEN_COMMON, SOCK_TAIL_FIELDS;
    int("code", OFF_ARG0, "the exit status (0-255) when the process exited, else 0"),
    int("signal", OFF_ARG1, "the signal that killed the process (9: SIGKILL), else 0"),
];

/// Bytes of exec and open records: 368 + 256 for exec's argv (room behind `path` for a
/// suffix compare's masked offset: 112 + 255 + the longest literal, 255, stays inside
/// 624), then the tail fields.
pub const RECORD_SIZE: u32 = TAIL + PARENT_PATH + 2 * PATH_MAX;

/// `argv[i]` for i below this: the first arguments of an exec, each in a slot of
/// [`ARG_LEN`] bytes after the exec record's common end (63 bytes and a NUL; a longer
/// argument keeps its first 63 bytes and 0xff in the last, so it equals no literal).
pub const ARGS: u32 = 8;
pub const ARG_LEN: u32 = 64;
pub const OFF_ARGS: u32 = RECORD_SIZE;
/// The slots' names, as [`Field::name`]s.
pub const ARG_NAMES: [&str; ARGS as usize] = [
    "argv[0]", "argv[1]", "argv[2]", "argv[3]", "argv[4]", "argv[5]", "argv[6]", "argv[7]",
];

/// `exe.deleted` and `exe.writable_mount`, after the argument slots.
pub const OFF_EXE_DELETED: u32 = OFF_ARGS + ARGS * ARG_LEN;
pub const OFF_EXE_WRITABLE: u32 = OFF_EXE_DELETED + 8;

/// Slot `i` of argv (`argv[i]`), a string field of exec records.
pub fn arg_field(i: u32) -> Option<Field> {
    Some(Field {
        name: ARG_NAMES.get(i as usize)?,
        ty: FieldTy::Str(ARG_LEN),
        offset: OFF_ARGS + i * ARG_LEN,
        len_at: None,
        doc: "an argument of the exec (63 bytes at most)",
    })
}

/// `parent.path`'s offset from the tail; its 256 bytes are followed by 256 more, room
/// for a suffix compare's masked offset. Bytes to zero on every event: up to the end
/// of `parent.path`.
pub const PARENT_PATH: u32 = T_CGROUP_NAME + CGROUP_NAME_MAX;

/// Two words in the padding after `parent.path` (never read as a field, sent with the
/// record but not decoded): where the event's source is kept for fields filled only once
/// a rule matched (exec's `bprm`, open's user pointer to the file name), and whether
/// those fields are filled yet (0 until the first rule of the event matches).
pub fn off_source(kind: Kind) -> u32 {
    kind.tail() + PARENT_PATH + PATH_MAX
}

pub fn off_filled(kind: Kind) -> u32 {
    off_source(kind) + 8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    pub fn by_name(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A rule's condition: a tree of tests of one record's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Cond {
    True,
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    /// An integer field (its bits in `mask`, when given) compared with a constant.
    Int {
        field: Field,
        mask: Option<u64>,
        op: IntOp,
        value: u64,
    },
    /// A string field against a pattern.
    Str {
        field: Field,
        pat: StrPat,
    },
    /// The address field is of this family and its first `prefix` bits are `bytes`'.
    Addr {
        field: Field,
        v6: bool,
        bytes: [u8; 16],
        prefix: u8,
    },
    /// The field's value is in [`RuleSet::sets`]`[set]` (one map lookup per event and
    /// field, shared by every set of the field).
    Member {
        field: Field,
        set: usize,
    },
}

impl Cond {
    /// Calls `f` on every set membership test in this condition.
    pub fn members(&self, f: &mut impl FnMut(Field, usize)) {
        match self {
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.members(f);
                b.members(f);
            }
            Cond::Not(a) => a.members(f),
            Cond::Member { field, set } => f(*field, *set),
            Cond::True | Cond::Int { .. } | Cond::Str { .. } | Cond::Addr { .. } => {}
        }
    }

    /// Whether a test in this condition reads field `name`.
    pub fn uses(&self, name: &str) -> bool {
        match self {
            Cond::True => false,
            Cond::And(a, b) | Cond::Or(a, b) => a.uses(name) || b.uses(name),
            Cond::Not(a) => a.uses(name),
            Cond::Int { field, .. }
            | Cond::Str { field, .. }
            | Cond::Addr { field, .. }
            | Cond::Member { field, .. } => field.name == name,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IntOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// String tests, each compiled to straight-line compares of bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StrPat {
    /// The whole string.
    Eq(Vec<u8>),
    /// Starts with these bytes (`None` in a glob: `?`, any one byte).
    Prefix(Vec<Option<u8>>),
    /// Ends with these bytes.
    Suffix(Vec<Option<u8>>),
    /// Exactly this many bytes, matching these (a glob without `*`).
    Exact(Vec<Option<u8>>),
    /// A glob with one `*`: the prefix, then anything, then the suffix (which may not
    /// overlap the prefix).
    Glob {
        prefix: Vec<Option<u8>>,
        suffix: Vec<Option<u8>>,
    },
}
