//! Rule HIR to MIR: one program per event kind, holding every rule on that kind.
//!
//! The program fills the kind's record once, in a per-CPU scratch map value (the record is
//! larger than the 512-byte stack), zeroed first so strings are NUL-padded; then tests
//! each rule in source order against the record's bytes. A rule that matches writes its
//! index into the record, sends SIGKILL when it says `kill`, and copies the record into
//! the ring buffer `pol run` reads (the same `pol_events` / `pol_lost` maps probes use).
//! Every rule is tested, so each match is reported.

use super::hir::{
    Cond, Field, FieldTy, IntOp, Kind, RuleSet, StrPat, AF_INET, AF_INET6, FLAG_AUDIT, FLAG_DENIED,
    FLAG_KILLED, OFF_ADDR, OFF_CGROUP, OFF_COMM, OFF_FAMILY, OFF_FLAGS, OFF_GID, OFF_KIND,
    OFF_PARENT_COMM, OFF_PATH, OFF_PATH_LEN, OFF_PID, OFF_PORT, OFF_PPID, OFF_PROTOCOL, OFF_RULE,
    OFF_UID,
};
use super::ktypes::{KernelTypes, Member};
use crate::mir::{
    helpers, BinOp, Block, BlockCall, Cond as MCond, ExtOp, FuncId, Function, Hook, IntTy, MapDef,
    MapId, MapKind, Module, Op, Operand, PtrKind, Term, Type, Value,
};

/// The per-CPU array the record is built in.
pub const SCRATCH_MAP: &str = "pol_rule_scratch";

/// The array saying how rules that kill or deny act: slot 0 the file's mode, 0 enforce,
/// 1 audit (alert only, flagged as what would have been done), read on every event; slot
/// `i + 1` rule `i`'s own (0 as the file, 1 audit, 2 enforce), read when it matched. `pol`
/// switches a running rule set or one rule by writing it, without reloading anything.
pub const MODE_MAP: &str = "pol_rule_mode";
pub const MODE_ENFORCE: u64 = 0;
pub const MODE_AUDIT: u64 = 1;
/// A rule's slot (its index + 1) holding this enforces whatever the file's mode; 0
/// follows the file's, [`MODE_AUDIT`] audits.
pub const RULE_ENFORCE: u64 = 2;

/// Alert rate limiting: a per-CPU array with one 16-byte slot per rule (the window and
/// the alerts sent in it, packed as `window << 32 | sent`; then the alerts suppressed),
/// and an array holding the limit (alerts per rule, per CPU, per window of 2^30 ns, about
/// a second; 0: no limit) that `pol run --alert-rate` writes. Kills and denials are never
/// limited, only their alerts.
pub const RATE_MAP: &str = "pol_rule_rate";
pub const LIMIT_MAP: &str = "pol_rule_limit";
/// The window: `ktime_get_ns() >> WINDOW_SHIFT`.
pub const WINDOW_SHIFT: i64 = 30;

/// The process table: tgid -> the program its last exec ran (256 bytes, NUL-padded),
/// an LRU hash so a table that fills forgets the longest-unused processes.
pub const PROCS_MAP: &str = "pol_rule_procs";
pub const PROCS_MAX: u32 = 65536;

/// Whether a rule reads `parent.path` (so the process table is kept).
pub fn uses_procs(set: &RuleSet) -> bool {
    Kind::ALL.iter().any(|k| set.uses(*k, "parent.path"))
}

/// The hash maps of sets ([`SetMap`]) are named this and the field's name
/// (`pol_rule_in_path`, `pol_rule_in_parent_comm`).
pub const SET_MAP: &str = "pol_rule_in_";

/// The map holding every [`RuleSet::sets`] set of one field: its key is the field's
/// bytes (a string NUL-padded to `key_size`, the longest value's length and its NUL
/// rounded up to 8 bytes: a longer string cannot equal a value, and its first
/// `key_size` bytes hold no NUL where every value's do; or the u64 of an integer), its
/// value one bit per set that holds the key (set `sets[i]` is bit `i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMap {
    pub name: String,
    pub field: &'static str,
    pub key_size: u32,
    /// u64 words of the value.
    pub words: u32,
    pub sets: Vec<usize>,
    /// Each key, and its value's words.
    pub entries: Vec<(super::hir::SetValue, Vec<u64>)>,
}

/// The maps of a rule set's sets, one per field, in the order fields first appear.
pub fn set_maps(set: &RuleSet) -> Vec<SetMap> {
    use super::hir::SetValue;
    let mut out: Vec<SetMap> = Vec::new();
    for (i, s) in set.sets.iter().enumerate() {
        let m = match out.iter_mut().position(|m| m.field == s.field) {
            Some(at) => &mut out[at],
            None => {
                out.push(SetMap {
                    // Map names hold letters, digits and `_` (`argv[1]`: `argv_1_`).
                    name: format!(
                        "{SET_MAP}{}",
                        s.field
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                            .collect::<String>()
                    ),
                    field: s.field,
                    key_size: 8,
                    words: 0,
                    sets: Vec::new(),
                    entries: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        m.sets.push(i);
        for v in &s.values {
            if let SetValue::Str(b) = v {
                m.key_size = m.key_size.max((b.len() as u32 + 1).div_ceil(8) * 8);
            }
        }
    }
    for m in &mut out {
        m.words = (m.sets.len() as u32).div_ceil(64);
        let mut by_key: std::collections::BTreeMap<&SetValue, Vec<u64>> = Default::default();
        for (bit, &i) in m.sets.iter().enumerate() {
            for v in set
                .sets
                .get(i)
                .map(|s| s.values.as_slice())
                .unwrap_or_default()
            {
                let w = by_key.entry(v).or_insert_with(|| vec![0; m.words as usize]);
                if let Some(word) = w.get_mut(bit / 64) {
                    *word |= 1 << (bit % 64);
                }
            }
        }
        m.entries = by_key.into_iter().map(|(k, v)| (k.clone(), v)).collect();
    }
    out
}

/// Kernel structure members every record reads (the process's parent).
const COMMON_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "real_parent"),
    ("task_struct", "tgid"),
    ("task_struct", "comm"),
    ("task_struct", "cred"),
    ("cred", "euid"),
];

/// And exec records (argv from the new `mm`, the path from `bprm`).
const EXEC_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "mm"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("linux_binprm", "filename"),
];

/// And exec records' `exe.*` flags: the program's file, its dentry (hashed unless
/// unlinked) and its mount's and superblock's flags.
const EXE_MEMBERS: &[(&str, &str)] = &[
    ("linux_binprm", "file"),
    ("file", "f_path"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("dentry", "d_hash"),
    ("hlist_bl_node", "pprev"),
    ("vfsmount", "mnt_flags"),
    ("vfsmount", "mnt_sb"),
    ("super_block", "s_flags"),
];

/// And exit records (how it ended).
const EXIT_MEMBERS: &[(&str, &str)] = &[("task_struct", "exit_code")];

/// `stdin.socket`, `stdout.socket`: the file behind fd 0 and 1, and its inode's mode.
const STDIO_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("file", "f_inode"),
    ("inode", "i_mode"),
];

/// `cgroup.name`: the default hierarchy's cgroup of the task, and its kernfs name.
const CGROUP_NAME_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "cgroups"),
    ("css_set", "dfl_cgrp"),
    ("cgroup", "kn"),
    ("kernfs_node", "name"),
];

fn uses_stdio(set: &RuleSet, kind: Kind) -> bool {
    set.uses(kind, "stdin.socket") || set.uses(kind, "stdout.socket")
}

/// Fields that cost helper calls to fill, in groups filled together (in this order: a
/// group may read an earlier one's field, `parent.path` the `ppid`). A program fills
/// the groups its rules test before the rules, and the others only once a rule matched
/// (for the alert). Fields read straight from the context (open's flags, connect's
/// address, system call arguments) are filled on every event: a load each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Pid,
    Ids,
    Cgroup,
    Comm,
    Parent,
    Euid,
    Ancestors,
    Stdio,
    CgroupName,
    ParentPath,
    Path,
    Argv,
    Exit,
    Exe,
}

impl Group {
    const ALL: [Group; 14] = [
        Group::Pid,
        Group::Ids,
        Group::Cgroup,
        Group::Comm,
        Group::Parent,
        Group::Euid,
        Group::Ancestors,
        Group::Stdio,
        Group::CgroupName,
        Group::ParentPath,
        Group::Path,
        Group::Argv,
        Group::Exit,
        Group::Exe,
    ];

    fn fields(self) -> &'static [&'static str] {
        match self {
            Group::Pid => &["pid"],
            Group::Ids => &["uid", "gid"],
            Group::Cgroup => &["cgroup"],
            Group::Comm => &["comm"],
            Group::Parent => &["ppid", "parent.comm"],
            Group::Euid => &["euid"],
            Group::Ancestors => &["ancestor.comm"],
            Group::Stdio => &["stdin.socket", "stdout.socket"],
            Group::CgroupName => &["cgroup.name"],
            Group::ParentPath => &["parent.path"],
            Group::Path => &["path"],
            Group::Argv => &[
                "argv", "argv[0]", "argv[1]", "argv[2]", "argv[3]", "argv[4]", "argv[5]",
                "argv[6]", "argv[7]",
            ],
            Group::Exit => &["code", "signal"],
            Group::Exe => &["exe.deleted", "exe.writable_mount"],
        }
    }

    /// Whether records of `kind` have the group's fields at all (the costly optional
    /// ones only when a rule tests or prints them).
    fn present(self, set: &RuleSet, kind: Kind) -> bool {
        match self {
            Group::Pid | Group::Ids | Group::Cgroup | Group::Comm | Group::Parent | Group::Euid => {
                true
            }
            Group::Ancestors | Group::Stdio | Group::CgroupName | Group::ParentPath => self
                .fields()
                .iter()
                .any(|f| set.uses(kind, f) && (self != Group::ParentPath || uses_procs(set))),
            Group::Path => matches!(kind, Kind::Exec | Kind::Open),
            Group::Argv | Group::Exe => kind == Kind::Exec,
            Group::Exit => kind == Kind::Exit,
        }
    }

    /// Whether a rule of `kind` tests one of the group's fields (or one of a later
    /// tested group needs it).
    fn tested(self, set: &RuleSet, kind: Kind) -> bool {
        let t = |g: Group| g.fields().iter().any(|f| super::shape::tests(set, kind, f));
        self.present(set, kind)
            && (t(self)
                || (self == Group::Parent
                    && Group::ParentPath.present(set, kind)
                    && t(Group::ParentPath)))
    }
}

/// And the process table's programs.
const TRACK_MEMBERS: &[(&str, &str)] = &[
    ("linux_binprm", "filename"),
    ("task_struct", "tgid"),
    ("task_struct", "pid"),
];

/// A kernel structure member the running kernel's BTF does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the kernel's BTF has no `{strukt}.{member}`")]
pub struct MissingMember {
    pub kind: Kind,
    pub strukt: &'static str,
    pub member: &'static str,
}

/// One program of a kind: where it attaches and how it reads its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `tp_btf/sched_process_exec`.
    Exec,
    /// `tracepoint/syscalls/sys_enter_openat` (dfd, filename, flags, mode).
    Openat,
    /// `sys_enter_open` (filename, flags, mode).
    Open,
    /// `sys_enter_creat` (pathname, mode): flags O_CREAT | O_WRONLY | O_TRUNC.
    Creat,
    /// `sys_enter_openat2` (dfd, filename, struct open_how *how, size).
    Openat2,
    /// `cgroup/connect4`, `cgroup/connect6`, `cgroup/bind4`, `cgroup/bind6`.
    Connect4,
    Connect6,
    Bind4,
    Bind6,
    /// `cgroup/sendmsg4`, `cgroup/sendmsg6` (the same context as connect's).
    Sendmsg4,
    Sendmsg6,
    /// `sys_enter_setuid` (uid), `setreuid` (ruid, euid), `setresuid` (ruid, euid, suid),
    /// and the same for gids.
    Setuid,
    Setreuid,
    Setresuid,
    Setgid,
    Setregid,
    Setresgid,
    /// `sys_enter_ptrace` (request, pid, addr, data).
    Ptrace,
    /// `tp_btf/sched_process_exit` (struct task_struct *p, bool group_dead).
    Exit,
    /// The process table [`PROCS_MAP`] `parent.path` reads, kept by three programs of
    /// its own: a process's program at exec (`sched_process_exec`), a new process's
    /// copied from its parent at fork (`sched_process_fork`), removed at exit.
    TrackExec,
    TrackFork,
    TrackExit,
}

impl Entry {
    /// The programs of a kind.
    pub fn of(kind: Kind) -> &'static [Entry] {
        match kind {
            Kind::Exec => &[Entry::Exec],
            Kind::Open => &[Entry::Openat, Entry::Open, Entry::Creat, Entry::Openat2],
            Kind::Connect => &[Entry::Connect4, Entry::Connect6],
            Kind::Bind => &[Entry::Bind4, Entry::Bind6],
            Kind::Setuid => &[Entry::Setuid, Entry::Setreuid, Entry::Setresuid],
            Kind::Setgid => &[Entry::Setgid, Entry::Setregid, Entry::Setresgid],
            Kind::Ptrace => &[Entry::Ptrace],
            Kind::Exit => &[Entry::Exit],
            Kind::Sendmsg => &[Entry::Sendmsg4, Entry::Sendmsg6],
        }
    }

    /// For cgroup hooks, the attach name (`connect4`): the section is `cgroup/NAME`.
    pub fn cgroup(self) -> Option<&'static str> {
        match self {
            Entry::Connect4 => Some("connect4"),
            Entry::Connect6 => Some("connect6"),
            Entry::Bind4 => Some("bind4"),
            Entry::Bind6 => Some("bind6"),
            Entry::Sendmsg4 => Some("sendmsg4"),
            Entry::Sendmsg6 => Some("sendmsg6"),
            _ => None,
        }
    }

    /// The program's symbol.
    pub fn symbol(self) -> String {
        if let Some(c) = self.cgroup() {
            return format!("rule_{c}");
        }
        let sys = self.tracepoint().trim_start_matches("sys_enter_");
        match self {
            Entry::Exec => "rule_exec".into(),
            Entry::Exit => "rule_exit".into(),
            Entry::TrackExec => "rule_track_exec".into(),
            Entry::TrackFork => "rule_track_fork".into(),
            Entry::TrackExit => "rule_track_exit".into(),
            Entry::Openat | Entry::Open | Entry::Creat | Entry::Openat2 => {
                format!("rule_open_{sys}")
            }
            _ => format!("rule_{sys}"),
        }
    }

    /// The tracepoint's name (a BTF-typed one for exec, `syscalls:NAME` otherwise).
    pub fn tracepoint(self) -> &'static str {
        match self {
            Entry::Exec | Entry::TrackExec => "sched_process_exec",
            Entry::TrackFork => "sched_process_fork",
            Entry::TrackExit => "sched_process_exit",
            Entry::Openat => "sys_enter_openat",
            Entry::Open => "sys_enter_open",
            Entry::Creat => "sys_enter_creat",
            Entry::Openat2 => "sys_enter_openat2",
            Entry::Setuid => "sys_enter_setuid",
            Entry::Setreuid => "sys_enter_setreuid",
            Entry::Setresuid => "sys_enter_setresuid",
            Entry::Setgid => "sys_enter_setgid",
            Entry::Setregid => "sys_enter_setregid",
            Entry::Setresgid => "sys_enter_setresgid",
            Entry::Ptrace => "sys_enter_ptrace",
            Entry::Exit => "sched_process_exit",
            Entry::Connect4
            | Entry::Connect6
            | Entry::Bind4
            | Entry::Bind6
            | Entry::Sendmsg4
            | Entry::Sendmsg6 => "",
        }
    }

    pub fn btf(self) -> bool {
        matches!(
            self,
            Entry::Exec | Entry::Exit | Entry::TrackExec | Entry::TrackFork | Entry::TrackExit
        )
    }

    /// Every program of a rule set: each kind's, then the process table's when a rule
    /// reads `parent.path`.
    pub fn all(set: &RuleSet) -> Vec<Entry> {
        let mut out: Vec<Entry> = set
            .kinds()
            .iter()
            .flat_map(|k| Entry::of(*k))
            .copied()
            .collect();
        if uses_procs(set) {
            out.extend([Entry::TrackExec, Entry::TrackFork, Entry::TrackExit]);
        }
        out
    }

    fn hook(self) -> Hook {
        if let Some(c) = self.cgroup() {
            Hook::CgroupSockAddr(c.into())
        } else if self.btf() {
            Hook::TpBtf(self.tracepoint().into())
        } else {
            Hook::Tracepoint {
                category: "syscalls".into(),
                name: self.tracepoint().into(),
            }
        }
    }
}

/// The hooks a kind's rules run at, for messages.
pub fn hook_names(kind: Kind) -> String {
    Entry::of(kind)
        .iter()
        .map(|e| {
            if let Some(c) = e.cgroup() {
                format!("cgroup/{c}")
            } else if e.btf() {
                format!("tp_btf/{}", e.tracepoint())
            } else {
                format!("syscalls:{}", e.tracepoint())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn helper(name: &str) -> u32 {
    helpers::by_name(name).map_or(0, |h| h.id)
}

/// The MIR module of a rule set: ring buffer, lost counter and scratch maps, then one
/// program per kind in [`RuleSet::kinds`] order (a record's kind word is that index).
pub fn lower(set: &RuleSet, kt: &dyn KernelTypes) -> Result<Module, MissingMember> {
    let mut m = Module::default();
    let crate::probe::ring::Ring { ring, lost } = crate::probe::ring::add_maps(&mut m);
    let kinds = set.kinds();
    let size = kinds.iter().map(|k| k.record_size()).max().unwrap_or(8);
    let scratch = m.add_map(MapDef {
        name: SCRATCH_MAP.into(),
        kind: MapKind::PercpuArray,
        key_size: 4,
        value_size: size,
        max_entries: 1,
        flags: 0,
    });
    let mode = set.rules.iter().any(|r| r.kill || r.deny).then(|| {
        m.add_map(MapDef {
            name: MODE_MAP.into(),
            kind: MapKind::Array,
            key_size: 4,
            value_size: 8,
            // The file's mode, then each rule's.
            max_entries: 1 + set.rules.len() as u32,
            flags: 0,
        })
    });
    let rate = m.add_map(MapDef {
        name: RATE_MAP.into(),
        kind: MapKind::PercpuArray,
        key_size: 4,
        value_size: 16,
        max_entries: set.rules.len().max(1) as u32,
        flags: 0,
    });
    let limit = m.add_map(MapDef {
        name: LIMIT_MAP.into(),
        kind: MapKind::Array,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        flags: 0,
    });
    let plans = set_maps(set);
    let mut set_at = vec![(0usize, 0u32); set.sets.len()];
    let mut sets = Vec::new();
    for (mi, p) in plans.iter().enumerate() {
        let id = m.add_map(MapDef {
            name: p.name.clone(),
            kind: MapKind::Hash,
            key_size: p.key_size,
            value_size: 8 * p.words,
            max_entries: p.entries.len().max(1) as u32,
            flags: 0,
        });
        sets.push((id, p.key_size, p.words));
        for (bit, &i) in p.sets.iter().enumerate() {
            if let Some(at) = set_at.get_mut(i) {
                *at = (mi, bit as u32);
            }
        }
    }
    let procs = uses_procs(set).then(|| {
        m.add_map(MapDef {
            name: PROCS_MAP.into(),
            kind: MapKind::LruHash,
            key_size: 4,
            value_size: super::hir::PATH_MAX,
            max_entries: PROCS_MAX,
            flags: 0,
        })
    });
    let maps = Maps {
        ring,
        lost,
        scratch,
        mode,
        rate,
        limit,
        sets,
        set_at,
        procs,
    };
    for (index, kind) in kinds.iter().enumerate() {
        let kind = *kind;
        let mut cx = KindCx {
            index,
            tested: Group::ALL
                .into_iter()
                .filter(|g| g.tested(set, kind))
                .collect(),
            present: Group::ALL
                .into_iter()
                .filter(|g| g.present(set, kind))
                .collect(),
            members: members(kind, kt, set)?,
            hits: Vec::new(),
            arg_slots: super::hir::ARG_NAMES.iter().any(|n| set.uses(kind, n)),
            path_zero: compared_past_nul(set, kind, "path", &plans),
        };
        for r in set.rules.iter().filter(|r| r.kind == kind) {
            let acts = (r.kill, r.deny);
            if !cx.hits.iter().any(|(a, _)| *a == acts) {
                let f = Lower::hit_function(kind, r.kill, r.deny, &cx, &maps);
                cx.hits.push((acts, m.add_func(f)));
            }
        }
        for entry in Entry::of(kind) {
            m.add_func(Lower::program(set, kind, *entry, &cx, &maps));
        }
    }
    if let Some(procs) = procs {
        let kind = set.kinds().first().copied().unwrap_or(Kind::Exec);
        let members: Members = TRACK_MEMBERS
            .iter()
            .map(|&(strukt, member)| {
                kt.member(strukt, member)
                    .map(|m| (format!("{strukt}.{member}"), m))
                    .ok_or(MissingMember {
                        kind,
                        strukt,
                        member,
                    })
            })
            .collect::<Result<_, _>>()?;
        for entry in [Entry::TrackExec, Entry::TrackFork, Entry::TrackExit] {
            m.add_func(track(entry, procs, scratch, &members));
        }
    }
    Ok(m)
}

/// Offsets of the members `kind` reads, by `struct.member`.
type Members = std::collections::HashMap<String, Member>;

fn members(kind: Kind, kt: &dyn KernelTypes, set: &RuleSet) -> Result<Members, MissingMember> {
    let exe: &[(&str, &str)] = if kind == Kind::Exec { EXE_MEMBERS } else { &[] };
    let extra: &[(&str, &str)] = match kind {
        Kind::Exec => EXEC_MEMBERS,
        Kind::Exit => EXIT_MEMBERS,
        _ => &[],
    };
    let stdio: &[(&str, &str)] = if uses_stdio(set, kind) {
        STDIO_MEMBERS
    } else {
        &[]
    };
    let cgroup: &[(&str, &str)] = if set.uses(kind, "cgroup.name") {
        CGROUP_NAME_MEMBERS
    } else {
        &[]
    };
    COMMON_MEMBERS
        .iter()
        .chain(extra)
        .chain(exe)
        .chain(stdio)
        .chain(cgroup)
        .map(|&(strukt, member)| {
            kt.member(strukt, member)
                .map(|m| (format!("{strukt}.{member}"), m))
                .ok_or(MissingMember {
                    kind,
                    strukt,
                    member,
                })
        })
        .collect()
}

/// The maps every program uses (`mode` when some rule kills or denies).
struct Maps {
    ring: MapId,
    lost: MapId,
    scratch: MapId,
    mode: Option<MapId>,
    rate: MapId,
    limit: MapId,
    /// The set maps: id, key size, value words.
    sets: Vec<(MapId, u32, u32)>,
    /// Each set's map (an index into `sets`) and bit.
    set_at: Vec<(usize, u32)>,
    /// The process table, when a rule reads `parent.path`.
    procs: Option<MapId>,
}

/// A program keeping the process table: at exec, `procs[tgid] = bprm->filename` (read
/// into the scratch value, zeroed first); at fork of a new process (not a thread),
/// `procs[child] = procs[parent]`; at the exit of a process's last thread, the entry is
/// deleted.
fn track(entry: Entry, procs: MapId, scratch: MapId, members: &Members) -> Function {
    let off = |name: &str| members.get(name).map_or(0, |m| m.offset);
    let mut f = Function::new(
        &entry.symbol(),
        Some(entry.hook()),
        vec![Type::Ptr(PtrKind::Ctx)],
        IntTy::I64,
    );
    let exit = f.add_block();
    let zero = f.iconst(exit, IntTy::I64, 0);
    f.set_term(exit, Term::Return(zero));
    let b = f.entry();
    let ctx = f.block(b).params[0];
    let kslot = f.add_slot(8, 8);
    let kp = f.push(b, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
    let pt = f.push(
        b,
        Op::Call(helper("get_current_pid_tgid"), vec![]),
        Type::U64,
    );
    let tgid = f.push(b, Op::Binary(BinOp::Lshr, pt, Operand::Imm(32)), Type::U64);
    f.push_void(
        b,
        Op::Store {
            ty: IntTy::U64,
            ptr: kp,
            off: 0,
            val: tgid.into(),
        },
    );
    let pref = f.push(b, Op::MapRef(procs), Type::Ptr(PtrKind::Map(procs)));
    let br = |f: &mut Function, from: Block, a: Value, t: Block, e: Block| {
        f.set_term(
            from,
            Term::Br {
                cond: MCond::Eq,
                a,
                b: Operand::Imm(0),
                then: to(t),
                els: to(e),
            },
        );
    };
    match entry {
        Entry::TrackExec => {
            let sref = f.push(b, Op::MapRef(scratch), Type::Ptr(PtrKind::Map(scratch)));
            let z = f.add_slot(4, 4);
            let zp = f.push(b, Op::SlotAddr(z), Type::Ptr(PtrKind::Stack));
            f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U32,
                    ptr: zp,
                    off: 0,
                    val: Operand::Imm(0),
                },
            );
            let r = f.push(
                b,
                Op::Call(helper("map_lookup_elem"), vec![sref, zp]),
                Type::Ptr(PtrKind::MapValueOrNull(scratch)),
            );
            let body = f.add_block();
            br(&mut f, b, r, exit, body);
            let v = f.push(
                body,
                Op::PtrAdd(r, Operand::Imm(0)),
                Type::Ptr(PtrKind::MapValue(scratch)),
            );
            for i in 0..(super::hir::PATH_MAX / 8) as i16 {
                f.push_void(
                    body,
                    Op::Store {
                        ty: IntTy::U64,
                        ptr: v,
                        off: 8 * i,
                        val: Operand::Imm(0),
                    },
                );
            }
            // tp_btf/sched_process_exec: (task, old_pid, bprm).
            let bprm = f.push(body, Op::Load { ptr: ctx, off: 16 }, Type::U64);
            let a = f.push(
                body,
                Op::Binary(
                    BinOp::Add,
                    bprm,
                    Operand::Imm(i64::from(off("linux_binprm.filename"))),
                ),
                Type::U64,
            );
            let w = f.add_slot(8, 8);
            let wp = f.push(body, Op::SlotAddr(w), Type::Ptr(PtrKind::Stack));
            f.push_void(
                body,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: wp,
                    off: 0,
                    val: Operand::Imm(0),
                },
            );
            let n8 = f.iconst(body, IntTy::U64, 8);
            f.push(
                body,
                Op::Call(helper("probe_read_kernel"), vec![wp, n8, a]),
                Type::I64,
            );
            let name = f.push(body, Op::Load { ptr: wp, off: 0 }, Type::U64);
            let n = f.iconst(body, IntTy::U64, i64::from(super::hir::PATH_MAX));
            f.push(
                body,
                Op::Call(helper("probe_read_kernel_str"), vec![v, n, name]),
                Type::I64,
            );
            let flags = f.iconst(body, IntTy::U64, 0);
            f.push(
                body,
                Op::Call(helper("map_update_elem"), vec![pref, kp, v, flags]),
                Type::I64,
            );
            f.set_term(body, Term::Jump(to(exit)));
        }
        Entry::TrackFork => {
            // tp_btf/sched_process_fork: (parent, child); the current task is the parent.
            let child = f.push(b, Op::Load { ptr: ctx, off: 8 }, Type::U64);
            let ids = f.add_slot(8, 8);
            let ip = f.push(b, Op::SlotAddr(ids), Type::Ptr(PtrKind::Stack));
            f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: ip,
                    off: 0,
                    val: Operand::Imm(0),
                },
            );
            let n4 = f.iconst(b, IntTy::U64, 4);
            for (at, member) in [(0i16, "task_struct.tgid"), (4, "task_struct.pid")] {
                let a = f.push(
                    b,
                    Op::Binary(BinOp::Add, child, Operand::Imm(i64::from(off(member)))),
                    Type::U64,
                );
                let dst = f.push(
                    b,
                    Op::PtrAdd(ip, Operand::Imm(i64::from(at))),
                    Type::Ptr(PtrKind::Stack),
                );
                f.push(
                    b,
                    Op::Call(helper("probe_read_kernel"), vec![dst, n4, a]),
                    Type::I64,
                );
            }
            let ctgid = f.push(b, Op::Load { ptr: ip, off: 0 }, Type::U32);
            let ctgid = f.push(b, Op::Ext(ExtOp::Zext, ctgid), Type::U64);
            let cpid = f.push(b, Op::Load { ptr: ip, off: 4 }, Type::U32);
            let cpid = f.push(b, Op::Ext(ExtOp::Zext, cpid), Type::U64);
            // A new thread shares its process's entry.
            let process = f.add_block();
            f.set_term(
                b,
                Term::Br {
                    cond: MCond::Ne,
                    a: ctgid,
                    b: cpid.into(),
                    then: to(exit),
                    els: to(process),
                },
            );
            let v = f.push(
                process,
                Op::Call(helper("map_lookup_elem"), vec![pref, kp]),
                Type::Ptr(PtrKind::MapValueOrNull(procs)),
            );
            let found = f.add_block();
            br(&mut f, process, v, exit, found);
            let v = f.push(
                found,
                Op::PtrAdd(v, Operand::Imm(0)),
                Type::Ptr(PtrKind::MapValue(procs)),
            );
            let ck = f.add_slot(8, 8);
            let cp = f.push(found, Op::SlotAddr(ck), Type::Ptr(PtrKind::Stack));
            f.push_void(
                found,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: cp,
                    off: 0,
                    val: ctgid.into(),
                },
            );
            let flags = f.iconst(found, IntTy::U64, 0);
            f.push(
                found,
                Op::Call(helper("map_update_elem"), vec![pref, cp, v, flags]),
                Type::I64,
            );
            f.set_term(found, Term::Jump(to(exit)));
        }
        _ => {
            // tp_btf/sched_process_exit: (task, group_dead): the process's last thread.
            let dead = f.push(b, Op::Load { ptr: ctx, off: 8 }, Type::U64);
            let dead = f.push(
                b,
                Op::Binary(BinOp::And, dead, Operand::Imm(0xff)),
                Type::U64,
            );
            let gone = f.add_block();
            br(&mut f, b, dead, exit, gone);
            f.push(
                gone,
                Op::Call(helper("map_delete_elem"), vec![pref, kp]),
                Type::I64,
            );
            f.set_term(gone, Term::Jump(to(exit)));
        }
    }
    f
}

struct Lower {
    f: Function,
    /// The scratch record (a non-null map value).
    rec: Value,
    scratch: MapId,
    /// The lost counter's key (0), one slot for every rule: a slot per rule would grow
    /// the frame with the number of rules (1,000 rules needed 4,048 bytes).
    lost_key: Option<crate::mir::Slot>,
    /// A u64: non-zero when the rules run in audit mode (read once per event).
    audit: Option<crate::mir::Slot>,
    /// A u64: non-zero once an enforcing `deny` rule matched (cgroup hooks).
    verdict: Option<crate::mir::Slot>,
    /// The value of a set map looked up with the field at this offset (zeros when
    /// absent), read once per event before the rules: by (set map, offset).
    members: std::collections::HashMap<(usize, u32), crate::mir::Slot>,
    /// Each set's map and bit (as [`Maps::set_at`]).
    set_at: Vec<(usize, u32)>,
    /// A u64 stack word kernel reads go through (each read is loaded at once).
    tmp: Option<crate::mir::Slot>,
}

/// What a kind's programs share: the kind's index (a record's kind word), the groups of
/// fields filled before the rules (`tested`) and all its records have (`present`), the
/// kernel members they read, and the subprograms a matched rule calls, by (kill, deny).
struct KindCx {
    index: usize,
    tested: Vec<Group>,
    present: Vec<Group>,
    members: Members,
    hits: Vec<((bool, bool), FuncId)>,
    /// Whether a rule tests `argv[i]` (the argument slots are filled).
    arg_slots: bool,
    /// Bytes of `path` the rules compare past its NUL (see [`compared_past_nul`]).
    path_zero: u32,
}

/// Bytes of string field `name` that the tests of `kind`'s rules compare past the
/// string's NUL, so a fill before the rules must zero them: the words of an `==`
/// literal and a set map's key. Prefixes, globs and suffixes stop at the NUL (a pattern
/// byte never matches it), so they need none.
fn compared_past_nul(set: &RuleSet, kind: Kind, name: &str, plans: &[SetMap]) -> u32 {
    fn walk(c: &Cond, name: &str, plans: &[SetMap], n: &mut u32) {
        match c {
            Cond::And(a, b) | Cond::Or(a, b) => {
                walk(a, name, plans, n);
                walk(b, name, plans, n);
            }
            Cond::Not(a) => walk(a, name, plans, n),
            Cond::Str {
                field,
                pat: StrPat::Eq(lit),
            } if field.name == name => *n = (*n).max((lit.len() as u32 + 1).div_ceil(8) * 8),
            Cond::Member { field, .. } if field.name == name => {
                let key = plans
                    .iter()
                    .find(|p| p.field == name)
                    .map_or(0, |p| p.key_size);
                *n = (*n).max(key);
            }
            _ => {}
        }
    }
    let mut n = 0;
    for r in set.rules.iter().filter(|r| r.kind == kind) {
        walk(&r.cond, name, plans, &mut n);
    }
    n.min(super::hir::PATH_MAX)
}

fn to(b: Block) -> BlockCall {
    BlockCall::new(b, vec![])
}

impl Lower {
    /// A new lowering of `f`, whose record pointer is not known yet.
    fn new(f: Function, scratch: MapId, set_at: Vec<(usize, u32)>) -> Lower {
        Lower {
            rec: Value::from_index(0),
            f,
            scratch,
            lost_key: None,
            audit: None,
            verdict: None,
            members: std::collections::HashMap::new(),
            set_at,
            tmp: None,
        }
    }

    /// Looks the scratch record up (key 0 in the slot `kp` points at), going to `exit`
    /// when it cannot; sets `self.rec` and returns the block that continues.
    fn scratch_record(&mut self, b: Block, kp: Value, exit: Block) -> Block {
        let scratch = self.scratch;
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U32,
                ptr: kp,
                off: 0,
                val: Operand::Imm(0),
            },
        );
        let (body, r) = self.lookup(b, scratch, kp, exit);
        // The checked pointer, typed non-null for the accesses below.
        self.rec = self.f.push(
            body,
            Op::PtrAdd(r, Operand::Imm(0)),
            Type::Ptr(PtrKind::MapValue(scratch)),
        );
        body
    }

    fn program(set: &RuleSet, kind: Kind, entry: Entry, cx: &KindCx, maps: &Maps) -> Function {
        let f = Function::new(
            &entry.symbol(),
            Some(entry.hook()),
            vec![Type::Ptr(PtrKind::Ctx)],
            IntTy::I64,
        );
        // Cgroup hooks return 1 to let the call through, 0 to refuse it (EPERM).
        let sock = entry.cgroup().is_some();
        let mut l = Lower::new(f, maps.scratch, maps.set_at.clone());
        let exit = l.f.add_block();
        let zero = l.f.iconst(exit, IntTy::I64, i64::from(sock));
        l.f.set_term(exit, Term::Return(zero));
        let start = l.f.entry();
        let ctx = l.f.block(start).params[0];
        let kslot = l.f.add_slot(4, 4);
        let kp =
            l.f.push(start, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let mut cur = l.scratch_record(start, kp, exit);
        // A thread that is not the process's last: not an `exit` event.
        if entry == Entry::Exit {
            let dead = l.f.push(cur, Op::Load { ptr: ctx, off: 8 }, Type::U64);
            let dead = l.f.push(
                cur,
                Op::Binary(BinOp::And, dead, Operand::Imm(0xff)),
                Type::U64,
            );
            let go = l.f.add_block();
            l.br(cur, MCond::Eq, dead, Operand::Imm(0), exit, go);
            cur = go;
        }
        if sock {
            let v = l.f.add_slot(8, 8);
            l.verdict = Some(v);
            l.slot_store(cur, v, Operand::Imm(0));
        }
        l.store(cur, OFF_KIND, Operand::Imm(cx.index as i64));
        l.store(cur, super::hir::off_filled(kind), Operand::Imm(0));
        // What the context holds, a load each; the rest only as the rules need it.
        cur = match entry {
            Entry::Exec => {
                // tp_btf/sched_process_exec: (struct task_struct *p, pid_t old_pid,
                // struct linux_binprm *bprm), one u64 each.
                let bprm = l.f.push(cur, Op::Load { ptr: ctx, off: 16 }, Type::U64);
                l.store(cur, super::hir::off_source(kind), bprm.into());
                cur
            }
            Entry::Connect4 | Entry::Bind4 | Entry::Sendmsg4 => l.fill_sock(cur, ctx, false),
            Entry::Connect6 | Entry::Bind6 | Entry::Sendmsg6 => l.fill_sock(cur, ctx, true),
            // The effective id: setuid's only argument, setre*id's and setres*id's second.
            Entry::Setuid | Entry::Setgid => l.fill_args(cur, ctx, &[(0, true)]),
            Entry::Setreuid | Entry::Setresuid | Entry::Setregid | Entry::Setresgid => {
                l.fill_args(cur, ctx, &[(1, true)])
            }
            Entry::Ptrace => l.fill_args(cur, ctx, &[(0, false), (1, false)]),
            Entry::Exit => cur,
            open => l.fill_open(cur, ctx, open, kind),
        };
        for g in &cx.tested {
            cur = l.fill(cur, *g, kind, cx, maps, true);
        }
        cur = l.look_up_sets(cur, set, kind, maps);
        let rules: Vec<(usize, &super::hir::Rule)> = set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == kind)
            .collect();
        let mut at = 0;
        while let Some(&(_, first)) = rules.get(at) {
            // Rules that each need a bit of one looked-up word: skipped together when
            // the word is zero (set-shaped rules cost a compare per 64 when none match).
            let word = l.required_word(&first.cond);
            let len = rules
                .get(at..)
                .unwrap_or_default()
                .iter()
                .take_while(|(_, r)| word.is_some() && l.required_word(&r.cond) == word)
                .count()
                .max(1);
            let after = l.f.add_block();
            if let (Some((slot, w)), true) = (word, len > 1) {
                let v = l.slot_word(cur, slot, w);
                let group = l.f.add_block();
                l.br(cur, MCond::Eq, v, Operand::Imm(0), after, group);
                cur = group;
            }
            for &(i, rule) in rules.get(at..at + len).unwrap_or_default() {
                let hit = l.f.add_block();
                let next = l.f.add_block();
                l.cond(cur, &rule.cond, hit, next);
                let func = cx
                    .hits
                    .iter()
                    .find(|(acts, _)| *acts == (rule.kill, rule.deny))
                    .map(|(_, f)| *f)
                    .unwrap_or(FuncId::from_index(0));
                let k = l.u64c(hit, i as u64);
                let denied = l.f.push(hit, Op::CallFn(func, vec![k]), Type::U64);
                if let (true, Some(v)) = (rule.deny, l.verdict) {
                    let refuse = l.f.add_block();
                    l.br(hit, MCond::Ne, denied, Operand::Imm(0), refuse, next);
                    l.slot_store(refuse, v, Operand::Imm(1));
                    l.jump(refuse, next);
                } else {
                    l.jump(hit, next);
                }
                cur = next;
            }
            l.jump(cur, after);
            cur = after;
            at += len;
        }
        match l.verdict {
            Some(v) => {
                let denied = l.slot_load(cur, v);
                let refuse = l.f.add_block();
                let no = l.f.iconst(refuse, IntTy::I64, 0);
                l.f.set_term(refuse, Term::Return(no));
                l.br(cur, MCond::Ne, denied, Operand::Imm(0), refuse, exit);
            }
            None => l.jump(cur, exit),
        }
        l.f
    }

    /// The subprogram a matched rule of `kind` calls with its index (rules that kill
    /// and deny as `kill`, `deny` say): fills the fields the rules did not test (once an
    /// event), then acts as the rule's and the file's mode say, and sends the alert
    /// within the rate limit. Returns 1 when the call is to be refused. One copy for
    /// every rule: a rule costs its test and a call.
    fn hit_function(kind: Kind, kill: bool, deny: bool, cx: &KindCx, maps: &Maps) -> Function {
        let name = format!(
            "rule_{}_hit{}{}",
            kind.name(),
            if kill { "_kill" } else { "" },
            if deny { "_deny" } else { "" }
        );
        let mut f = Function::new(&name, None, vec![Type::U64], IntTy::U64);
        f.global = true;
        let mut l = Lower::new(f, maps.scratch, maps.set_at.clone());
        let exit = l.f.add_block();
        let zero = l.f.iconst(exit, IntTy::U64, 0);
        l.f.set_term(exit, Term::Return(zero));
        let start = l.f.entry();
        let index = l.f.block(start).params[0];
        let kslot = l.key_slot();
        let kp =
            l.f.push(start, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        let mut cur = l.scratch_record(start, kp, exit);
        if let (true, Some(mode)) = (kill || deny, maps.mode) {
            cur = l.read_mode(cur, kp, mode);
        }
        if deny {
            let v = l.f.add_slot(8, 8);
            l.verdict = Some(v);
            l.slot_store(cur, v, Operand::Imm(0));
        }
        // The fields no rule tested, once an event (a second match finds them filled).
        let rest: Vec<Group> = cx
            .present
            .iter()
            .filter(|g| !cx.tested.contains(g))
            .copied()
            .collect();
        if !rest.is_empty() {
            let filled = l.load(cur, super::hir::off_filled(kind), IntTy::U64);
            let mut fill = l.f.add_block();
            let join = l.f.add_block();
            l.br(cur, MCond::Eq, filled, Operand::Imm(0), fill, join);
            for g in rest {
                fill = l.fill(fill, g, kind, cx, maps, false);
            }
            l.store(fill, super::hir::off_filled(kind), Operand::Imm(1));
            l.jump(fill, join);
            cur = join;
        }
        l.store(cur, OFF_RULE, index.into());
        let send = if kill || deny {
            l.act(cur, kill, deny, index, maps.mode)
        } else {
            l.store(cur, OFF_FLAGS, Operand::Imm(0));
            cur
        };
        let done = l.f.add_block();
        let send = l.rate_limit(send, index, maps, done);
        let sent = l.output(send, maps.ring, maps.lost, kind.record_size());
        l.jump(sent, done);
        match l.verdict {
            Some(v) => {
                let d = l.slot_load(done, v);
                l.f.set_term(done, Term::Return(d));
            }
            None => {
                let z = l.f.iconst(done, IntTy::U64, 0);
                l.f.set_term(done, Term::Return(z));
            }
        }
        l.f
    }

    /// The looked-up word a condition cannot hold without (its set's slot and word),
    /// when it has one.
    fn required_word(&self, c: &Cond) -> Option<(crate::mir::Slot, u32)> {
        let (field, set) = super::shape::required_set(c)?;
        let (map, bit) = self.set_at.get(set).copied()?;
        let slot = self.members.get(&(map, field.offset)).copied()?;
        Some((slot, bit / 64))
    }

    /// `map_lookup_elem(map, key)` at the end of `b`, going to `absent` when the map
    /// has no such key; returns the block that continues and the value pointer (null-
    /// checked on the way there, so loads and stores through it verify).
    fn lookup(&mut self, b: Block, map: MapId, key: Value, absent: Block) -> (Block, Value) {
        let mref = self
            .f
            .push(b, Op::MapRef(map), Type::Ptr(PtrKind::Map(map)));
        let v = self.call(
            b,
            "map_lookup_elem",
            vec![mref, key],
            Type::Ptr(PtrKind::MapValueOrNull(map)),
        );
        let found = self.f.add_block();
        self.br(b, MCond::Eq, v, Operand::Imm(0), absent, found);
        (found, v)
    }

    /// Word `w` of a looked-up set value.
    fn slot_word(&mut self, b: Block, slot: crate::mir::Slot, w: u32) -> Value {
        let p = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        self.f.push(
            b,
            Op::Load {
                ptr: p,
                off: 8 * w as i16,
            },
            Type::U64,
        )
    }

    /// Looks each set map the kind's rules test up once, with the field its rules test
    /// (each slot of `ancestor.comm` once), into a stack slot of the value's words.
    fn look_up_sets(&mut self, mut b: Block, set: &RuleSet, kind: Kind, maps: &Maps) -> Block {
        let mut wanted: Vec<(usize, u32)> = Vec::new();
        for r in set.rules.iter().filter(|r| r.kind == kind) {
            r.cond.members(&mut |field, s| {
                if let Some(&(map, _)) = maps.set_at.get(s) {
                    if !wanted.contains(&(map, field.offset)) {
                        wanted.push((map, field.offset));
                    }
                }
            });
        }
        for (map, offset) in wanted {
            let Some(&(id, _, words)) = maps.sets.get(map) else {
                continue;
            };
            let slot = self.f.add_slot(8 * words, 8);
            self.members.insert((map, offset), slot);
            let key = self.at(b, offset);
            let sp = self
                .f
                .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
            let absent = self.f.add_block();
            let (found, v) = self.lookup(b, id, key, absent);
            let join = self.f.add_block();
            for w in 0..words as i16 {
                let x = self
                    .f
                    .push(found, Op::Load { ptr: v, off: 8 * w }, Type::U64);
                for (blk, val) in [(found, Operand::Value(x)), (absent, Operand::Imm(0))] {
                    self.f.push_void(
                        blk,
                        Op::Store {
                            ty: IntTy::U64,
                            ptr: sp,
                            off: 8 * w,
                            val,
                        },
                    );
                }
            }
            self.jump(found, join);
            self.jump(absent, join);
            b = join;
        }
        b
    }

    /// Counts an alert of rule `index` against the limit: continues at the returned block
    /// to send it, or counts it suppressed and goes to `skip`.
    fn rate_limit(&mut self, b: Block, index: Value, maps: &Maps, skip: Block) -> Block {
        let slot = self.key_slot();
        let kp = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U32,
                ptr: kp,
                off: 0,
                val: Operand::Imm(0),
            },
        );
        let send = self.f.add_block();
        let (got, lp) = self.lookup(b, maps.limit, kp, send);
        let limit = self.f.push(got, Op::Load { ptr: lp, off: 0 }, Type::U64);
        let limited = self.f.add_block();
        self.br(got, MCond::Eq, limit, Operand::Imm(0), send, limited);
        // The rule's slot: key = index (the key slot is reused).
        let b = limited;
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U32,
                ptr: kp,
                off: 0,
                val: index.into(),
            },
        );
        let (b, rp) = self.lookup(b, maps.rate, kp, send);
        let now = self.call(b, "ktime_get_ns", vec![], Type::U64);
        let window = self.f.push(
            b,
            Op::Binary(BinOp::Lshr, now, Operand::Imm(WINDOW_SHIFT)),
            Type::U64,
        );
        let packed = self.f.push(b, Op::Load { ptr: rp, off: 0 }, Type::U64);
        let was = self.f.push(
            b,
            Op::Binary(BinOp::Lshr, packed, Operand::Imm(32)),
            Type::U64,
        );
        // A new window starts with nothing sent.
        let fresh = self.f.add_block();
        let join = self.f.add_block();
        let cur = self.f.add_block_param(join, Type::U64);
        self.f.set_term(
            b,
            Term::Br {
                cond: MCond::Eq,
                a: was,
                b: window.into(),
                then: BlockCall::new(join, vec![packed]),
                els: to(fresh),
            },
        );
        let reset = self.f.push(
            fresh,
            Op::Binary(BinOp::Shl, window, Operand::Imm(32)),
            Type::U64,
        );
        self.f
            .set_term(fresh, Term::Jump(BlockCall::new(join, vec![reset])));
        let b = join;
        let low = self.u64c(b, 0xffff_ffff);
        let sent = self
            .f
            .push(b, Op::Binary(BinOp::And, cur, low.into()), Type::U64);
        let under = self.f.add_block();
        let over = self.f.add_block();
        self.br(b, MCond::Ult, sent, limit.into(), under, over);
        let next = self.f.push(
            under,
            Op::Binary(BinOp::Add, cur, Operand::Imm(1)),
            Type::U64,
        );
        self.f.push_void(
            under,
            Op::Store {
                ty: IntTy::U64,
                ptr: rp,
                off: 0,
                val: next.into(),
            },
        );
        self.jump(under, send);
        self.f.push_void(
            over,
            Op::Store {
                ty: IntTy::U64,
                ptr: rp,
                off: 0,
                val: cur.into(),
            },
        );
        let n = self.f.push(over, Op::Load { ptr: rp, off: 8 }, Type::U64);
        let n = self
            .f
            .push(over, Op::Binary(BinOp::Add, n, Operand::Imm(1)), Type::U64);
        self.f.push_void(
            over,
            Op::Store {
                ty: IntTy::U64,
                ptr: rp,
                off: 8,
                val: n.into(),
            },
        );
        self.jump(over, skip);
        send
    }

    /// Reads the mode map into the audit slot (enforce when it cannot be read); the key
    /// slot `kp` holds 0.
    fn read_mode(&mut self, b: Block, kp: Value, mode: MapId) -> Block {
        let slot = self.f.add_slot(8, 8);
        self.audit = Some(slot);
        self.slot_store(b, slot, Operand::Imm(0));
        let join = self.f.add_block();
        let (got, p) = self.lookup(b, mode, kp, join);
        let v = self.f.push(got, Op::Load { ptr: p, off: 0 }, Type::U64);
        self.slot_store(got, slot, v.into());
        self.jump(got, join);
        join
    }

    /// The u32 stack slot every map key of the hit paths uses (one, whatever the number
    /// of rules).
    fn key_slot(&mut self) -> crate::mir::Slot {
        match self.lost_key {
            Some(s) => s,
            None => {
                let s = self.f.add_slot(4, 4);
                self.lost_key = Some(s);
                s
            }
        }
    }

    /// A new stack slot of `words` u64s, zeroed (helpers may leave it unwritten); its
    /// address.
    fn zeroed_slot(&mut self, b: Block, words: i16) -> Value {
        let slot = self.f.add_slot(8 * words as u32, 8);
        let p = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        for i in 0..words {
            self.f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U64,
                    ptr: p,
                    off: 8 * i,
                    val: Operand::Imm(0),
                },
            );
        }
        p
    }

    fn slot_store(&mut self, b: Block, slot: crate::mir::Slot, val: Operand) {
        let p = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val,
            },
        );
    }

    fn slot_load(&mut self, b: Block, slot: crate::mir::Slot) -> Value {
        let p = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        self.f.push(b, Op::Load { ptr: p, off: 0 }, Type::U64)
    }

    /// A matched rule that kills or denies: in enforce mode sends SIGKILL / marks the
    /// call refused, in audit mode only flags the alert. Returns the block after.
    fn act(
        &mut self,
        hit: Block,
        kill: bool,
        deny: bool,
        index: Value,
        mode: Option<MapId>,
    ) -> Block {
        let join = self.f.add_block();
        let enforce = self.f.add_block();
        let audit = self.f.add_block();
        self.store(audit, OFF_FLAGS, Operand::Imm(FLAG_AUDIT as i64));
        self.jump(audit, join);
        // The rule's own mode (slot index + 1: 0 as the file, 1 audit, 2 enforce), read
        // only when it matched; then the file's, read once per event.
        let as_file = self.f.add_block();
        match mode {
            Some(mode) => {
                let slot = self.key_slot();
                let kp = self
                    .f
                    .push(hit, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
                let key = self.f.push(
                    hit,
                    Op::Binary(BinOp::Add, index, Operand::Imm(1)),
                    Type::U64,
                );
                self.f.push_void(
                    hit,
                    Op::Store {
                        ty: IntTy::U32,
                        ptr: kp,
                        off: 0,
                        val: key.into(),
                    },
                );
                let (got, p) = self.lookup(hit, mode, kp, as_file);
                let v = self.f.push(got, Op::Load { ptr: p, off: 0 }, Type::U64);
                let not_audit = self.f.add_block();
                self.br(
                    got,
                    MCond::Eq,
                    v,
                    Operand::Imm(MODE_AUDIT as i64),
                    audit,
                    not_audit,
                );
                self.br(
                    not_audit,
                    MCond::Eq,
                    v,
                    Operand::Imm(RULE_ENFORCE as i64),
                    enforce,
                    as_file,
                );
            }
            None => self.jump(hit, as_file),
        }
        match self.audit {
            Some(slot) => {
                let a = self.slot_load(as_file, slot);
                self.br(as_file, MCond::Ne, a, Operand::Imm(0), audit, enforce);
            }
            None => self.jump(as_file, enforce),
        }
        let mut flags = 0;
        if kill {
            let sig = self.u64c(enforce, 9);
            self.call(enforce, "send_signal", vec![sig], Type::I64);
            flags |= FLAG_KILLED;
        }
        if let (true, Some(v)) = (deny, self.verdict) {
            self.slot_store(enforce, v, Operand::Imm(1));
            flags |= FLAG_DENIED;
        }
        self.store(enforce, OFF_FLAGS, Operand::Imm(flags as i64));
        self.jump(enforce, join);
        join
    }

    /// `stdin.socket` and `stdout.socket`: whether `task->files->fdt->fd[0]` (and `[1]`)
    /// is a socket (`f_inode->i_mode & S_IFMT == S_IFSOCK`), with a fixed number of
    /// reads; a closed fd reads as a null file, so as 0.
    fn fill_stdio(&mut self, mut b: Block, off: impl Fn(&str) -> u32, tail: u32) -> Block {
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let a = self.plus(b, task, off("task_struct.files"));
        let files = self.read_kernel_u64(b, a);
        let a = self.plus(b, files, off("files_struct.fdt"));
        let fdt = self.read_kernel_u64(b, a);
        let a = self.plus(b, fdt, off("fdtable.fd"));
        let fds = self.read_kernel_u64(b, a);
        for (fd, at) in [(0u32, super::hir::T_STDIN), (1, super::hir::T_STDOUT)] {
            let a = self.plus(b, fds, 8 * fd);
            let file = self.read_kernel_u64(b, a);
            let a = self.plus(b, file, off("file.f_inode"));
            let inode = self.read_kernel_u64(b, a);
            let a = self.plus(b, inode, off("inode.i_mode"));
            let mode = self.read_kernel_u64(b, a);
            let fmt = self.f.push(
                b,
                Op::Binary(BinOp::And, mode, Operand::Imm(0o170000)),
                Type::U64,
            );
            // 1 when S_IFSOCK (0o140000), without a branch: (fmt ^ S_IFSOCK) == 0.
            let x = self.f.push(
                b,
                Op::Binary(BinOp::Xor, fmt, Operand::Imm(0o140000)),
                Type::U64,
            );
            let yes = self.f.add_block();
            let join = self.f.add_block();
            self.br(b, MCond::Eq, x, Operand::Imm(0), yes, join);
            self.store(yes, tail + at, Operand::Imm(1));
            self.jump(yes, join);
            b = join;
        }
        b
    }

    /// `cgroup.name`: `task->cgroups->dfl_cgrp->kn->name`, the last part of the
    /// process's cgroup v2 path.
    fn fill_cgroup_name(&mut self, b: Block, off: impl Fn(&str) -> u32, tail: u32) {
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let mut p = task;
        for member in [
            "task_struct.cgroups",
            "css_set.dfl_cgrp",
            "cgroup.kn",
            "kernfs_node.name",
        ] {
            let a = self.plus(b, p, off(member));
            p = self.read_kernel_u64(b, a);
        }
        let dst = self.at(b, tail + super::hir::T_CGROUP_NAME);
        let n = self.u64c(b, u64::from(super::hir::CGROUP_NAME_MAX));
        self.call(b, "probe_read_kernel_str", vec![dst, n, p], Type::I64);
    }

    /// `parent.path`: the process table's entry of the parent (its tgid is the record's
    /// `ppid`, whose low 4 bytes are the key), copied word by word into the record;
    /// empty when the table has none.
    fn parent_path(&mut self, b: Block, tail: u32, procs: MapId) -> Block {
        let key = self.at(b, OFF_PPID);
        let absent = self.f.add_block();
        let (found, v) = self.lookup(b, procs, key, absent);
        let join = self.f.add_block();
        self.zero(absent, tail + super::hir::PARENT_PATH, super::hir::PATH_MAX);
        self.jump(absent, join);
        let v = self.f.push(
            found,
            Op::PtrAdd(v, Operand::Imm(0)),
            Type::Ptr(PtrKind::MapValue(procs)),
        );
        for i in 0..super::hir::PATH_MAX / 8 {
            let w = self.f.push(
                found,
                Op::Load {
                    ptr: v,
                    off: 8 * i as i16,
                },
                Type::U64,
            );
            self.store(found, tail + super::hir::PARENT_PATH + 8 * i, w.into());
        }
        self.jump(found, join);
        join
    }

    /// Fills an exit record from `task->exit_code`: `(status & 0xff) << 8` for an exit,
    /// the signal number (and 0x80 for a core dump) for a death by signal.
    fn fill_exit(&mut self, b: Block, off: impl Fn(&str) -> u32) -> Block {
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let a = self.plus(b, task, off("task_struct.exit_code"));
        let p = self.zeroed_slot(b, 1);
        let n = self.u64c(b, 4);
        self.call(b, "probe_read_kernel", vec![p, n, a], Type::I64);
        let code = self.f.push(b, Op::Load { ptr: p, off: 0 }, Type::U64);
        let status = self
            .f
            .push(b, Op::Binary(BinOp::Lshr, code, Operand::Imm(8)), Type::U64);
        let status = self.f.push(
            b,
            Op::Binary(BinOp::And, status, Operand::Imm(0xff)),
            Type::U64,
        );
        let sig = self.f.push(
            b,
            Op::Binary(BinOp::And, code, Operand::Imm(0x7f)),
            Type::U64,
        );
        self.store(b, super::hir::OFF_ARG0, status.into());
        self.store(b, super::hir::OFF_ARG1, sig.into());
        b
    }

    /// Copies system call arguments (`(index, is an id)`, at `16 + 8 * index` of the
    /// tracepoint record) into the record's argument words, ids cut to their 32 bits.
    fn fill_args(&mut self, b: Block, ctx: Value, args: &[(i16, bool)]) -> Block {
        for (slot, &(i, id)) in args.iter().enumerate() {
            let mut v = self.f.push(
                b,
                Op::Load {
                    ptr: ctx,
                    off: 16 + 8 * i,
                },
                Type::U64,
            );
            if id {
                let k = self.u64c(b, 0xffff_ffff);
                v = self
                    .f
                    .push(b, Op::Binary(BinOp::And, v, k.into()), Type::U64);
            }
            let at = super::hir::OFF_ARG0 + 8 * slot as u32;
            self.store(b, at, v.into());
        }
        b
    }

    /// Fills a connect or bind record from `struct bpf_sock_addr`: user_family (0),
    /// user_ip4 (4), user_ip6 (8..24), user_port (24, network order), protocol (36).
    fn fill_sock(&mut self, b: Block, ctx: Value, v6: bool) -> Block {
        let ctx_u32 = |l: &mut Lower, b: Block, off: i16| {
            let v = l.f.push(b, Op::Load { ptr: ctx, off }, Type::U32);
            l.f.push(b, Op::Ext(ExtOp::Zext, v), Type::U64)
        };
        let store32 = |l: &mut Lower, b: Block, off: u32, v: Operand| {
            l.f.push_void(
                b,
                Op::Store {
                    ty: IntTy::U32,
                    ptr: l.rec,
                    off: off as i16,
                    val: v,
                },
            );
        };
        // The port's two bytes, swapped to host order.
        let p = ctx_u32(self, b, 24);
        let lo = self
            .f
            .push(b, Op::Binary(BinOp::And, p, Operand::Imm(0xff)), Type::U64);
        let lo = self
            .f
            .push(b, Op::Binary(BinOp::Shl, lo, Operand::Imm(8)), Type::U64);
        let hi = self
            .f
            .push(b, Op::Binary(BinOp::Lshr, p, Operand::Imm(8)), Type::U64);
        let hi = self
            .f
            .push(b, Op::Binary(BinOp::And, hi, Operand::Imm(0xff)), Type::U64);
        let port = self
            .f
            .push(b, Op::Binary(BinOp::Or, lo, hi.into()), Type::U64);
        self.store(b, OFF_PORT, port.into());
        let proto = ctx_u32(self, b, 36);
        self.store(b, OFF_PROTOCOL, proto.into());
        if !v6 {
            self.store(b, OFF_FAMILY, Operand::Imm(AF_INET as i64));
            self.zero(b, OFF_ADDR, 16);
            let a = ctx_u32(self, b, 4);
            store32(self, b, OFF_ADDR, a.into());
            return b;
        }
        let mut w = Vec::new();
        for i in 0..4u32 {
            let v = ctx_u32(self, b, 8 + 4 * i as i16);
            store32(self, b, OFF_ADDR + 4 * i, v.into());
            w.push(v);
        }
        self.store(b, OFF_FAMILY, Operand::Imm(AF_INET6 as i64));
        // `::ffff:a.b.c.d` (words 0, 0, 0xffff0000 as loaded): recorded as IPv4.
        let join = self.f.add_block();
        let t1 = self.f.add_block();
        let t2 = self.f.add_block();
        let mapped = self.f.add_block();
        self.br(b, MCond::Eq, w[0], Operand::Imm(0), t1, join);
        self.br(t1, MCond::Eq, w[1], Operand::Imm(0), t2, join);
        let k = self.u64c(t2, 0xffff_0000);
        self.br(t2, MCond::Eq, w[2], k.into(), mapped, join);
        self.store(mapped, OFF_FAMILY, Operand::Imm(AF_INET as i64));
        store32(self, mapped, OFF_ADDR, w[3].into());
        for i in 1..4 {
            store32(self, mapped, OFF_ADDR + 4 * i, Operand::Imm(0));
        }
        self.jump(mapped, join);
        join
    }

    fn jump(&mut self, from: Block, to_: Block) {
        self.f.set_term(from, Term::Jump(to(to_)));
    }

    fn br(&mut self, from: Block, cond: MCond, a: Value, b: Operand, t: Block, e: Block) {
        self.f.set_term(
            from,
            Term::Br {
                cond,
                a,
                b,
                then: to(t),
                els: to(e),
            },
        );
    }

    fn u64c(&mut self, b: Block, c: u64) -> Value {
        self.f.iconst(b, IntTy::U64, c as i64)
    }

    fn call(&mut self, b: Block, name: &str, args: Vec<Value>, ty: Type) -> Value {
        self.f.push(b, Op::Call(helper(name), args), ty)
    }

    fn store(&mut self, b: Block, off: u32, val: Operand) {
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U64,
                ptr: self.rec,
                off: off as i16,
                val,
            },
        );
    }

    /// A pointer `off` bytes into the record.
    fn at(&mut self, b: Block, off: u32) -> Value {
        self.f.push(
            b,
            Op::PtrAdd(self.rec, Operand::Imm(i64::from(off))),
            Type::Ptr(PtrKind::MapValue(self.scratch)),
        )
    }

    fn load(&mut self, b: Block, off: u32, ty: IntTy) -> Value {
        let v = self.f.push(
            b,
            Op::Load {
                ptr: self.rec,
                off: off as i16,
            },
            Type::Int(ty),
        );
        if ty == IntTy::U64 {
            v
        } else {
            self.f.push(b, Op::Ext(ExtOp::Zext, v), Type::U64)
        }
    }

    /// `*(u64 *)addr` of kernel memory, through a stack word (0 when unreadable).
    fn read_kernel_u64(&mut self, b: Block, addr: Value) -> Value {
        self.read_kernel_word(b, addr, Type::U64)
    }

    /// A word of kernel memory as `ty` (0 when unreadable).
    fn read_kernel_word(&mut self, b: Block, addr: Value, ty: Type) -> Value {
        let slot = match self.tmp {
            Some(s) => s,
            None => {
                let s = self.f.add_slot(8, 8);
                self.tmp = Some(s);
                s
            }
        };
        let p = self
            .f
            .push(b, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
        self.f.push_void(
            b,
            Op::Store {
                ty: IntTy::U64,
                ptr: p,
                off: 0,
                val: Operand::Imm(0),
            },
        );
        let n = self.u64c(b, 8);
        self.call(b, "probe_read_kernel", vec![p, n, addr], Type::I64);
        self.f.push(b, Op::Load { ptr: p, off: 0 }, ty)
    }

    fn plus(&mut self, b: Block, v: Value, off: u32) -> Value {
        self.f.push(
            b,
            Op::Binary(BinOp::Add, v, Operand::Imm(i64::from(off))),
            Type::U64,
        )
    }

    /// Zeroes `bytes` of the record from `off` (reads of strings leave the bytes after
    /// the NUL unwritten, and tests compare whole words).
    fn zero(&mut self, b: Block, off: u32, bytes: u32) {
        for at in (off..off + bytes).step_by(8) {
            self.store(b, at, Operand::Imm(0));
        }
    }

    /// Fills the fields of group `g` of a `kind` record; returns the block that
    /// continues.
    /// `tested`: before the rules, where `path` is zeroed only as far as the tests
    /// compare it (the alert's decoder stops at the NUL).
    fn fill(
        &mut self,
        b: Block,
        g: Group,
        kind: Kind,
        cx: &KindCx,
        maps: &Maps,
        tested: bool,
    ) -> Block {
        let members = &cx.members;
        use super::hir::{ANCESTORS, COMM_LEN, PATH_MAX, T_ANCESTORS, T_STDIN, T_STDOUT};
        let off = |name: &str| members.get(name).map_or(0, |m| m.offset);
        let tail = kind.tail();
        match g {
            Group::Pid => {
                let pt = self.call(b, "get_current_pid_tgid", vec![], Type::U64);
                let pid = self
                    .f
                    .push(b, Op::Binary(BinOp::Lshr, pt, Operand::Imm(32)), Type::U64);
                self.store(b, OFF_PID, pid.into());
            }
            Group::Ids => {
                let ug = self.call(b, "get_current_uid_gid", vec![], Type::U64);
                let gid = self
                    .f
                    .push(b, Op::Binary(BinOp::Lshr, ug, Operand::Imm(32)), Type::U64);
                let uid32 = self.f.push(b, Op::Ext(ExtOp::Trunc, ug), Type::U32);
                let uid = self.f.push(b, Op::Ext(ExtOp::Zext, uid32), Type::U64);
                self.store(b, OFF_UID, uid.into());
                self.store(b, OFF_GID, gid.into());
            }
            Group::Cgroup => {
                let cg = self.call(b, "get_current_cgroup_id", vec![], Type::U64);
                self.store(b, OFF_CGROUP, cg.into());
            }
            Group::Comm => {
                // The helper pads the name with NULs.
                let p = self.at(b, OFF_COMM);
                let n = self.u64c(b, u64::from(COMM_LEN));
                self.call(b, "get_current_comm", vec![p, n], Type::I64);
            }
            Group::Parent => {
                self.zero(b, OFF_PPID, 8);
                self.zero(b, OFF_PARENT_COMM, COMM_LEN);
                let parent = self.parent_task(b, &off);
                let p = self.at(b, OFF_PPID);
                let n = self.u64c(b, 4);
                let a = self.plus(b, parent, off("task_struct.tgid"));
                self.call(b, "probe_read_kernel", vec![p, n, a], Type::I64);
                let p = self.at(b, OFF_PARENT_COMM);
                let n = self.u64c(b, u64::from(COMM_LEN));
                let a = self.plus(b, parent, off("task_struct.comm"));
                self.call(b, "probe_read_kernel_str", vec![p, n, a], Type::I64);
            }
            Group::Euid => {
                // task->cred->euid, a u32 into the zeroed u64.
                self.zero(b, tail, 8);
                let task = self.call(b, "get_current_task", vec![], Type::U64);
                let a = self.plus(b, task, off("task_struct.cred"));
                let cred = self.read_kernel_u64(b, a);
                let p = self.at(b, tail);
                let n = self.u64c(b, 4);
                let a = self.plus(b, cred, off("cred.euid"));
                self.call(b, "probe_read_kernel", vec![p, n, a], Type::I64);
            }
            Group::Ancestors => {
                // Up `real_parent`, a fixed number of straight-line reads (no loop): past
                // init the reads repeat it (its parent is the idle task) or fail (zeros).
                self.zero(b, tail + T_ANCESTORS, ANCESTORS * COMM_LEN);
                let mut t = self.parent_task(b, &off);
                for i in 0..ANCESTORS {
                    if i > 0 {
                        let a = self.plus(b, t, off("task_struct.real_parent"));
                        t = self.read_kernel_u64(b, a);
                    }
                    let p = self.at(b, tail + T_ANCESTORS + i * COMM_LEN);
                    let n = self.u64c(b, u64::from(COMM_LEN));
                    let a = self.plus(b, t, off("task_struct.comm"));
                    self.call(b, "probe_read_kernel_str", vec![p, n, a], Type::I64);
                }
            }
            Group::Stdio => {
                self.store(b, tail + T_STDIN, Operand::Imm(0));
                self.store(b, tail + T_STDOUT, Operand::Imm(0));
                return self.fill_stdio(b, off, tail);
            }
            Group::CgroupName => {
                self.zero(
                    b,
                    tail + super::hir::T_CGROUP_NAME,
                    super::hir::CGROUP_NAME_MAX,
                );
                self.fill_cgroup_name(b, off, tail);
            }
            Group::ParentPath => {
                if let Some(procs) = maps.procs {
                    return self.parent_path(b, tail, procs);
                }
            }
            Group::Path => {
                let n = if tested { cx.path_zero } else { PATH_MAX };
                self.zero(b, OFF_PATH, n);
                let src = self.load(b, super::hir::off_source(kind), IntTy::U64);
                if kind == Kind::Exec {
                    // bprm->filename, a kernel string.
                    let a = self.plus(b, src, off("linux_binprm.filename"));
                    let name = self.read_kernel_u64(b, a);
                    return self.read_path(b, name, false);
                }
                return self.read_path(b, src, true);
            }
            Group::Argv => {
                let b = if cx.arg_slots {
                    self.fill_arg_slots(b, &off)
                } else {
                    b
                };
                return self.fill_argv(b, &off);
            }
            Group::Exit => return self.fill_exit(b, off),
            Group::Exe => return self.fill_exe(b, &off, kind),
        }
        b
    }

    /// `exe.deleted` and `exe.writable_mount` from `bprm->file`: its dentry is not
    /// hashed once the file was unlinked (a memfd's never is); its mount is read-only
    /// when the mount (`MNT_READONLY`) or its superblock (`SB_RDONLY`) says so.
    fn fill_exe(&mut self, b: Block, off: &impl Fn(&str) -> u32, kind: Kind) -> Block {
        use super::hir::{OFF_EXE_DELETED, OFF_EXE_WRITABLE};
        const MNT_READONLY: i64 = 0x40;
        const SB_RDONLY: i64 = 1;
        let bprm = self.load(b, super::hir::off_source(kind), IntTy::U64);
        let a = self.plus(b, bprm, off("linux_binprm.file"));
        let file = self.read_kernel_u64(b, a);
        let a = self.plus(b, file, off("file.f_path") + off("path.dentry"));
        let dentry = self.read_kernel_u64(b, a);
        let a = self.plus(b, dentry, off("dentry.d_hash") + off("hlist_bl_node.pprev"));
        let pprev = self.read_kernel_u64(b, a);
        let a = self.plus(b, file, off("file.f_path") + off("path.mnt"));
        let mnt = self.read_kernel_u64(b, a);
        let a = self.plus(b, mnt, off("vfsmount.mnt_flags"));
        let mflags = self.read_kernel_u64(b, a);
        let a = self.plus(b, mnt, off("vfsmount.mnt_sb"));
        let sb = self.read_kernel_u64(b, a);
        let a = self.plus(b, sb, off("super_block.s_flags"));
        let sflags = self.read_kernel_u64(b, a);
        let m = self.f.push(
            b,
            Op::Binary(BinOp::And, mflags, Operand::Imm(MNT_READONLY)),
            Type::U64,
        );
        let s = self.f.push(
            b,
            Op::Binary(BinOp::And, sflags, Operand::Imm(SB_RDONLY)),
            Type::U64,
        );
        let ro = self
            .f
            .push(b, Op::Binary(BinOp::Or, m, s.into()), Type::U64);
        self.store(b, OFF_EXE_DELETED, Operand::Imm(0));
        self.store(b, OFF_EXE_WRITABLE, Operand::Imm(0));
        let deleted = self.f.add_block();
        let mid = self.f.add_block();
        self.br(b, MCond::Eq, pprev, Operand::Imm(0), deleted, mid);
        self.store(deleted, OFF_EXE_DELETED, Operand::Imm(1));
        self.jump(deleted, mid);
        let writable = self.f.add_block();
        let join = self.f.add_block();
        self.br(mid, MCond::Eq, ro, Operand::Imm(0), writable, join);
        self.store(writable, OFF_EXE_WRITABLE, Operand::Imm(1));
        self.jump(writable, join);
        join
    }

    /// The current task's `real_parent`.
    fn parent_task(&mut self, b: Block, off: &impl Fn(&str) -> u32) -> Value {
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let a = self.plus(b, task, off("task_struct.real_parent"));
        self.read_kernel_u64(b, a)
    }

    /// Reads the path string at `src` (user or kernel memory) into the record, and its
    /// length with the NUL (1, the empty string, when the read failed).
    fn read_path(&mut self, b: Block, src: Value, user: bool) -> Block {
        let p = self.at(b, OFF_PATH);
        let n = self.u64c(b, u64::from(super::hir::PATH_MAX));
        let helper = if user {
            "probe_read_user_str"
        } else {
            "probe_read_kernel_str"
        };
        let got = self.call(b, helper, vec![p, n, src], Type::I64);
        let ok = self.f.add_block();
        let failed = self.f.add_block();
        let join = self.f.add_block();
        let len = self.f.add_block_param(join, Type::I64);
        self.f.set_term(
            b,
            Term::Br {
                cond: MCond::Sgt,
                a: got,
                b: Operand::Imm(0),
                then: to(ok),
                els: to(failed),
            },
        );
        let g = self.f.push(
            ok,
            Op::Binary(BinOp::And, got, Operand::Imm(0x1ff)),
            Type::I64,
        );
        self.f
            .set_term(ok, Term::Jump(BlockCall::new(join, vec![g])));
        let one = self.f.iconst(failed, IntTy::I64, 1);
        self.f
            .set_term(failed, Term::Jump(BlockCall::new(join, vec![one])));
        self.store(join, OFF_PATH_LEN, len.into());
        join
    }

    /// Fills an open record's flags, mode and `write` from a `sys_enter_*` tracepoint's
    /// arguments (at 16 + 8 * i), and keeps the file name's user pointer for `path`.
    fn fill_open(&mut self, b: Block, ctx: Value, entry: Entry, kind: Kind) -> Block {
        let arg = |i: i16| 16 + 8 * i;
        let (name_at, flags, mode) = match entry {
            Entry::Open => (arg(0), Some(arg(1)), arg(2)),
            Entry::Creat => (arg(0), None, arg(1)),
            _ => (arg(1), Some(arg(2)), arg(3)),
        };
        let name = self.f.push(
            b,
            Op::Load {
                ptr: ctx,
                off: name_at,
            },
            Type::U64,
        );
        let (flags, mode) = if entry == Entry::Openat2 {
            // struct open_how { u64 flags; u64 mode; u64 resolve; } in user memory.
            let how = self.f.push(
                b,
                Op::Load {
                    ptr: ctx,
                    off: arg(2),
                },
                Type::U64,
            );
            let p = self.zeroed_slot(b, 2);
            let n = self.u64c(b, 16);
            self.call(b, "probe_read_user", vec![p, n, how], Type::I64);
            let f = self.f.push(b, Op::Load { ptr: p, off: 0 }, Type::U64);
            let m = self.f.push(b, Op::Load { ptr: p, off: 8 }, Type::U64);
            (f, m)
        } else {
            let f = match flags {
                Some(at) => {
                    let v = self.f.push(b, Op::Load { ptr: ctx, off: at }, Type::U32);
                    self.f.push(b, Op::Ext(ExtOp::Zext, v), Type::U64)
                }
                // creat(2): O_WRONLY | O_CREAT | O_TRUNC.
                None => self.u64c(b, 0o1 | 0o100 | 0o1000),
            };
            let m = self.f.push(
                b,
                Op::Load {
                    ptr: ctx,
                    off: mode,
                },
                Type::U64,
            );
            (f, m)
        };
        self.store(b, super::hir::OFF_FLAGS_ARG, flags.into());
        self.store(b, super::hir::OFF_MODE, mode.into());
        // `write` is 1 when any write flag is set (the record was zeroed: only set it).
        let bits = self.f.push(
            b,
            Op::Binary(
                BinOp::And,
                flags,
                Operand::Imm(super::hir::WRITE_FLAGS as i64),
            ),
            Type::U64,
        );
        self.store(b, super::hir::OFF_WRITE, Operand::Imm(0));
        self.store(b, super::hir::off_source(kind), name.into());
        let set = self.f.add_block();
        let join = self.f.add_block();
        self.br(b, MCond::Ne, bits, Operand::Imm(0), set, join);
        self.store(set, super::hir::OFF_WRITE, Operand::Imm(1));
        self.jump(set, join);
        join
    }

    /// Fills the `argv[i]` slots: each argument read (up to 255 bytes, into the raw
    /// argv buffer, which [`Lower::fill_argv`] fills afterwards) and its first 63 bytes
    /// copied into its slot, with 0xff in the slot's last byte when it was longer. A
    /// fixed number of reads, each at the end of the last: it stops at `arg_end`, at a
    /// read that fails, and after an argument of 255 bytes or more (its end is not
    /// known), leaving the later slots empty.
    fn fill_arg_slots(&mut self, b: Block, off: &impl Fn(&str) -> u32) -> Block {
        use super::hir::{ARGS, ARGV_MAX, ARG_LEN, OFF_ARGS};
        let raw = Kind::Exec.field("argv").map_or(0, |f| f.offset);
        self.zero(b, OFF_ARGS, ARGS * ARG_LEN);
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let a = self.plus(b, task, off("task_struct.mm"));
        let mmp = self.read_kernel_u64(b, a);
        let a = self.plus(b, mmp, off("mm_struct.arg_start"));
        // Signed, as the lengths the reads return: `p` steps by them.
        let mut p = self.read_kernel_word(b, a, Type::I64);
        let a = self.plus(b, mmp, off("mm_struct.arg_end"));
        let end = self.read_kernel_word(b, a, Type::I64);
        let done = self.f.add_block();
        let mut cur = b;
        for i in 0..ARGS {
            let go = self.f.add_block();
            self.br(cur, MCond::Uge, p, end.into(), done, go);
            self.zero(go, raw, ARG_LEN);
            let dst = self.at(go, raw);
            let n = self.u64c(go, u64::from(ARGV_MAX));
            let got = self.call(go, "probe_read_user_str", vec![dst, n, p], Type::I64);
            let read = self.f.add_block();
            self.br(go, MCond::Sle, got, Operand::Imm(0), done, read);
            for w in 0..ARG_LEN / 8 {
                let v = self.load(read, raw + 8 * w, IntTy::U64);
                self.store(read, OFF_ARGS + i * ARG_LEN + 8 * w, v.into());
            }
            let cut = self.f.add_block();
            let whole = self.f.add_block();
            self.br(
                read,
                MCond::Sgt,
                got,
                Operand::Imm(i64::from(ARG_LEN)),
                cut,
                whole,
            );
            let last = OFF_ARGS + (i + 1) * ARG_LEN - 1;
            self.f.push_void(
                cut,
                Op::Store {
                    ty: IntTy::U8,
                    ptr: self.rec,
                    off: last as i16,
                    val: Operand::Imm(0xff),
                },
            );
            // 255 bytes and its NUL, or more: where the next argument starts is unknown.
            self.br(
                cut,
                MCond::Sge,
                got,
                Operand::Imm(i64::from(ARGV_MAX)),
                done,
                whole,
            );
            p = self
                .f
                .push(whole, Op::Binary(BinOp::Add, p, got.into()), Type::I64);
            cur = whole;
        }
        self.jump(cur, done);
        done
    }

    /// Fills an exec record's argv from the new `mm`'s `arg_start..arg_end`.
    fn fill_argv(&mut self, b: Block, off: &impl Fn(&str) -> u32) -> Block {
        let len_at = |name: &str| Kind::Exec.field(name).and_then(|f| f.len_at).unwrap_or(0);
        let field = |name: &str| Kind::Exec.field(name).map_or(0, |f| f.offset);
        self.zero(b, field("argv"), super::hir::ARGV_MAX);
        let task = self.call(b, "get_current_task", vec![], Type::U64);
        let a = self.plus(b, task, off("task_struct.mm"));
        let mmp = self.read_kernel_u64(b, a);
        let a = self.plus(b, mmp, off("mm_struct.arg_start"));
        let start = self.read_kernel_u64(b, a);
        let a = self.plus(b, mmp, off("mm_struct.arg_end"));
        let end = self.read_kernel_u64(b, a);
        let span = self
            .f
            .push(b, Op::Binary(BinOp::Sub, end, start.into()), Type::U64);
        // At most ARGV_MAX - 1 bytes, so the last stays NUL.
        let max = u64::from(super::hir::ARGV_MAX - 1);
        let clamp = self.f.add_block();
        let join = self.f.add_block();
        let n = self.f.add_block_param(join, Type::U64);
        let vmax = self.u64c(b, max);
        self.f.set_term(
            b,
            Term::Br {
                cond: MCond::Ugt,
                a: span,
                b: vmax.into(),
                then: to(clamp),
                els: BlockCall::new(join, vec![span]),
            },
        );
        let c = self.u64c(clamp, max);
        self.f
            .set_term(clamp, Term::Jump(BlockCall::new(join, vec![c])));
        let b = join;
        let n = self.f.push(
            b,
            Op::Binary(BinOp::And, n, Operand::Imm(max as i64)),
            Type::U64,
        );
        self.store(b, len_at("argv"), n.into());
        let p = self.at(b, field("argv"));
        self.call(b, "probe_read_user", vec![p, n, start], Type::I64);
        b
    }

    /// `ringbuf_output` of the record; a full buffer counts a lost record.
    fn output(&mut self, b: Block, ring: MapId, lost: MapId, size: u32) -> Block {
        let rref = self
            .f
            .push(b, Op::MapRef(ring), Type::Ptr(PtrKind::Map(ring)));
        let n = self.u64c(b, u64::from(size));
        let flags = self.u64c(b, 0);
        let rec = self.rec;
        let ret = self.call(b, "ringbuf_output", vec![rref, rec, n, flags], Type::I64);
        let full = self.f.add_block();
        let join = self.f.add_block();
        self.br(b, MCond::Eq, ret, Operand::Imm(0), join, full);
        let kslot = self.key_slot();
        let kp = self
            .f
            .push(full, Op::SlotAddr(kslot), Type::Ptr(PtrKind::Stack));
        self.f.push_void(
            full,
            Op::Store {
                ty: IntTy::U32,
                ptr: kp,
                off: 0,
                val: Operand::Imm(0),
            },
        );
        let (bump, c) = self.lookup(full, lost, kp, join);
        let old = self.f.push(bump, Op::Load { ptr: c, off: 0 }, Type::U64);
        let new = self.f.push(
            bump,
            Op::Binary(BinOp::Add, old, Operand::Imm(1)),
            Type::U64,
        );
        self.f.push_void(
            bump,
            Op::Store {
                ty: IntTy::U64,
                ptr: c,
                off: 0,
                val: new.into(),
            },
        );
        self.jump(bump, join);
        join
    }

    /// Branches to `t` when `c` holds for the record, else to `e`.
    fn cond(&mut self, cur: Block, c: &Cond, t: Block, e: Block) {
        match c {
            Cond::True => self.jump(cur, t),
            Cond::Not(a) => self.cond(cur, a, e, t),
            Cond::And(a, b) => {
                let mid = self.f.add_block();
                self.cond(cur, a, mid, e);
                self.cond(mid, b, t, e);
            }
            Cond::Or(a, b) => {
                let mid = self.f.add_block();
                self.cond(cur, a, t, mid);
                self.cond(mid, b, t, e);
            }
            Cond::Int {
                field,
                mask,
                op,
                value,
            } => {
                let mut v = self.load(cur, field.offset, IntTy::U64);
                if let Some(mask) = mask {
                    let k = self.u64c(cur, *mask);
                    v = self
                        .f
                        .push(cur, Op::Binary(BinOp::And, v, k.into()), Type::U64);
                }
                let k = self.u64c(cur, *value);
                let c = match op {
                    IntOp::Eq => MCond::Eq,
                    IntOp::Ne => MCond::Ne,
                    IntOp::Lt => MCond::Ult,
                    IntOp::Le => MCond::Ule,
                    IntOp::Gt => MCond::Ugt,
                    IntOp::Ge => MCond::Uge,
                };
                self.br(cur, c, v, k.into(), t, e);
            }
            Cond::Str { field, pat } => self.str_test(cur, *field, pat, t, e),
            Cond::Member { field, set } => {
                let (map, bit) = self.set_at.get(*set).copied().unwrap_or_default();
                let Some(&slot) = self.members.get(&(map, field.offset)) else {
                    // Not looked up: cannot happen (every member test's map is).
                    self.jump(cur, e);
                    return;
                };
                let p = self
                    .f
                    .push(cur, Op::SlotAddr(slot), Type::Ptr(PtrKind::Stack));
                let w = self.f.push(
                    cur,
                    Op::Load {
                        ptr: p,
                        off: 8 * (bit / 64) as i16,
                    },
                    Type::U64,
                );
                let k = self.u64c(cur, 1u64 << (bit % 64));
                let v = self
                    .f
                    .push(cur, Op::Binary(BinOp::And, w, k.into()), Type::U64);
                self.br(cur, MCond::Ne, v, Operand::Imm(0), t, e);
            }
            Cond::Addr {
                field,
                v6,
                bytes,
                prefix,
            } => {
                let fam = self.load(cur, OFF_FAMILY, IntTy::U64);
                let want = if *v6 { AF_INET6 } else { AF_INET };
                let mut at = self.f.add_block();
                self.br(cur, MCond::Eq, fam, Operand::Imm(want as i64), at, e);
                // Word by word, each masked to the prefix bits it holds (network order).
                for i in 0..4usize {
                    let bits = u32::from(*prefix).saturating_sub(32 * i as u32).min(32);
                    if bits == 0 {
                        break;
                    }
                    let mut m = [0u8; 4];
                    for (j, b) in m.iter_mut().enumerate() {
                        let in_byte = bits.saturating_sub(8 * j as u32).min(8);
                        *b = (0xffu16 << (8 - in_byte)) as u8;
                    }
                    let mask = u32::from_le_bytes(m);
                    let mut wb = [0u8; 4];
                    wb.copy_from_slice(&bytes[4 * i..4 * i + 4]);
                    let want = u32::from_le_bytes(wb) & mask;
                    let mut v = self.load(at, field.offset + 4 * i as u32, IntTy::U32);
                    if mask != u32::MAX {
                        v = self.f.push(
                            at,
                            Op::Binary(BinOp::And, v, Operand::Imm(i64::from(mask))),
                            Type::U64,
                        );
                    }
                    let next = self.f.add_block();
                    let k = self.u64c(at, u64::from(want));
                    self.br(at, MCond::Eq, v, k.into(), next, e);
                    at = next;
                }
                self.jump(at, t);
            }
        }
    }

    /// Compares byte `i` of `field` (at `base`, or at `base + var` when given) with `c`,
    /// continuing at a new block when equal; returns it.
    fn byte_is(
        &mut self,
        cur: Block,
        ptr: Value,
        off: u32,
        want: u8,
        equal: bool,
        e: Block,
    ) -> Block {
        let v = self.f.push(
            cur,
            Op::Load {
                ptr,
                off: off as i16,
            },
            Type::Int(IntTy::U8),
        );
        let v = self.f.push(cur, Op::Ext(ExtOp::Zext, v), Type::U64);
        let next = self.f.add_block();
        let c = if equal { MCond::Eq } else { MCond::Ne };
        self.br(cur, c, v, Operand::Imm(i64::from(want)), next, e);
        next
    }

    /// `pat` bytes (`None`: any byte but NUL) at `ptr + off`.
    fn bytes_match(
        &mut self,
        mut cur: Block,
        ptr: Value,
        off: u32,
        pat: &[Option<u8>],
        e: Block,
    ) -> Block {
        for (i, c) in pat.iter().enumerate() {
            let at = off + i as u32;
            cur = match c {
                Some(c) => self.byte_is(cur, ptr, at, *c, true, e),
                None => self.byte_is(cur, ptr, at, 0, false, e),
            };
        }
        cur
    }

    fn str_test(&mut self, cur: Block, field: Field, pat: &StrPat, t: Block, e: Block) {
        let rec = self.rec;
        let cap = match field.ty {
            FieldTy::Str(n) | FieldTy::Args(n) => n,
            FieldTy::Int | FieldTy::Addr => 8,
            FieldTy::Comms(_) => super::hir::COMM_LEN,
        };
        match pat {
            StrPat::Eq(lit) => {
                // Word by word up to and including the NUL: the buffer is zeroed past it.
                let mut bytes = lit.clone();
                let words = (bytes.len() + 1).div_ceil(8);
                bytes.resize(words * 8, 0);
                let mut at = cur;
                for (i, chunk) in bytes.chunks(8).enumerate() {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(chunk);
                    let have = self.load(at, field.offset + 8 * i as u32, IntTy::U64);
                    let want = self.u64c(at, u64::from_le_bytes(w));
                    let next = if i + 1 == words {
                        t
                    } else {
                        self.f.add_block()
                    };
                    self.br(at, MCond::Eq, have, want.into(), next, e);
                    at = next;
                }
            }
            StrPat::Prefix(p) => {
                let end = self.bytes_match(cur, rec, field.offset, p, e);
                self.jump(end, t);
            }
            StrPat::Exact(p) => {
                let end = self.bytes_match(cur, rec, field.offset, p, e);
                let end = self.byte_is(end, rec, field.offset + p.len() as u32, 0, true, e);
                self.jump(end, t);
            }
            StrPat::Suffix(s) => {
                let (cur, len) = self.strlen(cur, field, cap);
                let end = self.suffix(cur, field, cap, len, s, 0, e);
                self.jump(end, t);
            }
            StrPat::Glob { prefix, suffix } => {
                let (cur, len) = self.strlen(cur, field, cap);
                let end = self.bytes_match(cur, rec, field.offset, prefix, e);
                let end = self.suffix(end, field, cap, len, suffix, prefix.len(), e);
                self.jump(end, t);
            }
        }
    }

    /// Tests that the string of length `len` ends with `s`, and is at least `min_head`
    /// bytes longer than it (a glob's prefix, which the suffix may not overlap).
    #[allow(clippy::too_many_arguments)]
    fn suffix(
        &mut self,
        cur: Block,
        field: Field,
        cap: u32,
        len: Value,
        s: &[Option<u8>],
        min_head: usize,
        e: Block,
    ) -> Block {
        let need = (s.len() + min_head) as i64;
        let long_enough = self.f.add_block();
        self.br(cur, MCond::Uge, len, Operand::Imm(need), long_enough, e);
        let b = long_enough;
        let start = self.f.push(
            b,
            Op::Binary(BinOp::Sub, len, Operand::Imm(s.len() as i64)),
            Type::U64,
        );
        // The mask is the identity (len < cap, a power of two) and bounds the offset for
        // the verifier: field.offset + cap - 1 + s.len() stays inside the record.
        let start = self.f.push(
            b,
            Op::Binary(BinOp::And, start, Operand::Imm(i64::from(cap - 1))),
            Type::U64,
        );
        let p = self.f.push(
            b,
            Op::PtrAdd(self.rec, Operand::Value(start)),
            Type::Ptr(PtrKind::MapValue(self.scratch)),
        );
        self.bytes_match(b, p, field.offset, s, e)
    }

    /// The string's length without its NUL: the kept length word when the field has
    /// one, else found by a binary search over the NUL-padded buffer (non-NUL bytes, then
    /// only NULs) in log2(cap) compares.
    fn strlen(&mut self, cur: Block, field: Field, cap: u32) -> (Block, Value) {
        if let Some(at) = field.len_at {
            let n = self.load(cur, at, IntTy::U64);
            let l = self
                .f
                .push(cur, Op::Binary(BinOp::Sub, n, Operand::Imm(1)), Type::U64);
            return (cur, l);
        }
        let join = self.f.add_block();
        let out = self.f.add_block_param(join, Type::U64);
        // The last byte is always NUL, so lengths run from 0 to cap - 1.
        self.search(cur, field.offset, 0, cap, join);
        (join, out)
    }

    /// Jumps to `join` with the length, knowing it lies in `lo..hi`.
    fn search(&mut self, cur: Block, base: u32, lo: u32, hi: u32, join: Block) {
        if hi - lo <= 1 {
            let v = self.u64c(cur, u64::from(lo));
            self.f
                .set_term(cur, Term::Jump(BlockCall::new(join, vec![v])));
            return;
        }
        let mid = lo + (hi - lo) / 2;
        // Byte mid-1 is non-NUL iff the length is at least mid.
        let v = self.f.push(
            cur,
            Op::Load {
                ptr: self.rec,
                off: (base + mid - 1) as i16,
            },
            Type::Int(IntTy::U8),
        );
        let v = self.f.push(cur, Op::Ext(ExtOp::Zext, v), Type::U64);
        let upper = self.f.add_block();
        let lower = self.f.add_block();
        self.br(cur, MCond::Ne, v, Operand::Imm(0), upper, lower);
        self.search(upper, base, mid, hi, join);
        self.search(lower, base, lo, mid, join);
    }
}
