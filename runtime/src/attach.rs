//! Attaching loaded programs where the layout says, and detaching them — completely — on drop.
//!
//! [`attach_all`] attaches every program of an object in order and returns an
//! [`Attachment`] that owns the links. If one attach fails, everything attached before it is
//! rolled back (the partial `Attachment` is dropped) before the error is returned.
//!
//! - XDP: a BPF link (kernel 5.9+), native (driver) mode first and generic (skb) mode when
//!   the driver has no XDP support, unless a mode is forced. An XDP program already on the
//!   interface is refused unless `replace` is set. Links die with the process, so even a
//!   SIGKILL leaves no XDP program behind.
//! - TC: a TCX link (kernel 6.6+, no qdisc needed, dies with the process) or, with
//!   [`TcMode::Netlink`] or on older kernels, a cls_bpf filter under a clsact qdisc, which is
//!   created when missing and deleted on detach only if it was created here (through raw
//!   rtnetlink in [`crate::sys::netlink`], since aya 0.13 cannot delete qdiscs). The filter
//!   carries pol's tag, priority [`TC_PRIO`] and handle [`TC_HANDLE`], so what a killed run
//!   leaves is recognisable ([`crate::hooks`]).
//! - `replace` detaches another XDP program but keeps an fd of it, and puts it back on
//!   detach.
//!
//! [`attach_all`] attaches programs loaded through aya ([`Loaded`]); [`attach_all_fds`]
//! attaches programs loaded by [`crate::direct`] by their fds, with BPF_LINK_CREATE (XDP
//! links and TCX links), under the same rules, rollback and detach-on-drop.

use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::xdp::XdpLink;
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpFlags};
use aya::util::KernelVersion;
use pol_compiler::obj::{AttachSpec, ObjectSpec, ProgramSpec, TcDirection};

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::direct::Object;
use crate::load::Loaded;
use crate::sys::link::{self, AttachType};
use crate::sys::netlink::{self, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use crate::sys::SysError;

/// The priority (`tc filter show`: `pref`) of pol's cls_bpf filters: "po".
pub const TC_PRIO: u16 = 0x706f;
/// The handle of pol's cls_bpf filters: "pol".
pub const TC_HANDLE: u32 = 0x0070_6f6c;

/// Which XDP mode to attach in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native where the driver supports it, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

/// How to attach TC programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcMode {
    /// TCX links where the kernel has them (6.6+), else netlink.
    #[default]
    Auto,
    /// A cls_bpf filter under a clsact qdisc (`tc filter show` lists it).
    Netlink,
}

#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Attach every program to this interface instead of the one in the file.
    pub iface: Option<String>,
    pub xdp_mode: XdpMode,
    pub tc_mode: TcMode,
    /// Detach an XDP program already on the interface instead of refusing.
    pub replace: bool,
}

/// One attached program, for the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub program: String,
    pub iface: String,
    /// `xdp native`, `xdp generic`, `tc ingress (tcx)`, `tc egress (clsact)`, ...
    pub how: String,
    /// Something the user should know (a replaced program, a fallback), as a sentence.
    pub note: Option<String>,
}

/// Why a program could not be attached; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no interface `{iface}` here (see `ip link`); use --iface to attach filter `{program}` to another one")]
    NoInterface { iface: String, program: String },
    #[error("interface `{iface}` already has an XDP program (id {prog_id}{name}); detach it first (`ip link set dev {iface} xdp off`) or run with --replace")]
    XdpBusy {
        iface: String,
        prog_id: u32,
        name: String,
    },
    #[error("the XDP program on `{iface}` (id {prog_id}{name}) is held by a BPF link of another process (another `pol run`?); stop that process first, --replace cannot remove it")]
    XdpHeld {
        iface: String,
        prog_id: u32,
        name: String,
    },
    #[error("cannot attach filter `{program}` to `{iface}` ({how}): {message}{hint}")]
    Attach {
        program: String,
        iface: String,
        how: String,
        message: String,
        hint: String,
    },
    #[error("cannot add a clsact qdisc to `{iface}` for filter `{program}`: {error}")]
    Qdisc {
        iface: String,
        program: String,
        error: std::io::Error,
    },
    #[error("the object has no program `{0}`")]
    NoProgram(String),
    #[error("`pol run` cannot attach {kind} programs yet (program `{program}`)")]
    Unsupported { program: String, kind: String },
}

enum Link {
    Xdp(#[allow(dead_code)] XdpLink),
    Tc(#[allow(dead_code)] SchedClassifierLink),
    /// A BPF link created on a program fd; closing it detaches.
    Fd(#[allow(dead_code)] OwnedFd),
}

/// An XDP program `replace` detached, to put back on detach.
struct Replaced {
    iface: String,
    ifindex: u32,
    mode: u32,
    prog_id: u32,
    prog: OwnedFd,
}

/// Everything attached; dropping it detaches all programs, deletes the qdiscs it added and
/// puts back the XDP programs it replaced.
#[derive(Default)]
pub struct Attachment {
    links: Vec<Link>,
    /// clsact qdiscs created here: (interface, ifindex).
    qdiscs: Vec<(String, u32)>,
    replaced: Vec<Replaced>,
    pub attached: Vec<Attached>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("attached", &self.attached)
            .field("qdiscs", &self.qdiscs)
            .finish()
    }
}

impl Attachment {
    /// Detaches everything now. Returns what could not be cleaned up, as sentences.
    pub fn detach(mut self) -> Vec<String> {
        self.cleanup()
    }

    /// The BPF link of each attached program, by program name (XDP and TCX links made by
    /// [`attach_all_fds`]), to pin them.
    pub fn link_fds(&self) -> Vec<(&str, BorrowedFd<'_>)> {
        self.attached
            .iter()
            .zip(&self.links)
            .filter_map(|(a, l)| match l {
                Link::Fd(fd) => Some((a.program.as_str(), fd.as_fd())),
                _ => None,
            })
            .collect()
    }

    /// Whether the clsact qdisc of `ifindex` was created by this attachment.
    pub fn qdisc_created(&self, ifindex: u32) -> bool {
        self.qdiscs.iter().any(|(_, i)| *i == ifindex)
    }

    /// The programs it will put back on detach: (interface, program id).
    pub fn to_restore(&self) -> Vec<(String, u32)> {
        self.replaced
            .iter()
            .map(|r| (r.iface.clone(), r.prog_id))
            .collect()
    }

    fn cleanup(&mut self) -> Vec<String> {
        // Links first (their drop detaches), newest first, then the qdiscs under them.
        while self.links.pop().is_some() {}
        let mut problems = Vec::new();
        for (iface, ifindex) in self.qdiscs.drain(..).rev() {
            match netlink::qdisc_del_clsact(ifindex) {
                Ok(()) => {}
                // Gone with its interface, or removed by someone else.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT)) => {}
                Err(e) => problems.push(format!(
                    "could not delete the clsact qdisc pol added to `{iface}` ({e}); \
                     remove it with `tc qdisc del dev {iface} clsact`"
                )),
            }
        }
        for r in self.replaced.drain(..).rev() {
            if let Err(e) = netlink::xdp_attach(r.ifindex, r.prog.as_fd(), r.mode) {
                problems.push(format!(
                    "could not put back XDP program {} on `{}` ({e})",
                    r.prog_id, r.iface
                ));
            }
        }
        problems
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        for p in self.cleanup() {
            // Not eprintln!: after SIGHUP stderr may be gone, and a panic here would abort.
            let _ = writeln!(std::io::stderr(), "warning: {p}");
        }
    }
}

/// The interface each program goes to (after `--iface`), in object order.
pub fn targets(spec: &ObjectSpec, opts: &AttachOptions) -> Vec<(String, Option<String>)> {
    spec.programs
        .iter()
        .map(|p| {
            let iface = match &p.attach {
                AttachSpec::Xdp { iface } | AttachSpec::Tc { iface, .. } => Some(iface.clone()),
                AttachSpec::Tracepoint { .. } => None,
            };
            let iface = match (&opts.iface, iface) {
                (Some(o), Some(_)) => Some(o.clone()),
                (_, i) => i,
            };
            (p.name.clone(), iface)
        })
        .collect()
}

/// The interface program `p` goes to (after `--iface`) and its index; tracepoints are
/// refused, as is an interface that does not exist.
fn program_iface(p: &ProgramSpec, opts: &AttachOptions) -> Result<(String, u32), AttachError> {
    let iface = match &p.attach {
        AttachSpec::Xdp { iface } | AttachSpec::Tc { iface, .. } => {
            opts.iface.clone().unwrap_or_else(|| iface.clone())
        }
        AttachSpec::Tracepoint { .. } => {
            return Err(AttachError::Unsupported {
                program: p.name.clone(),
                kind: "tracepoint".into(),
            })
        }
    };
    let Some(ifindex) = netlink::ifindex(&iface) else {
        return Err(AttachError::NoInterface {
            iface,
            program: p.name.clone(),
        });
    };
    Ok((iface, ifindex))
}

/// Attaches every program of `spec` (already loaded in `loaded`). On error nothing stays
/// attached.
pub fn attach_all(
    loaded: &mut Loaded,
    spec: &ObjectSpec,
    opts: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let mut att = Attachment::default();
    for p in &spec.programs {
        let (iface, ifindex) = program_iface(p, opts)?;
        let program = loaded
            .ebpf_mut()
            .program_mut(&p.name)
            .ok_or_else(|| AttachError::NoProgram(p.name.clone()))?;
        match &p.attach {
            AttachSpec::Xdp { .. } => {
                let xdp: &mut Xdp = program
                    .try_into()
                    .map_err(|_| AttachError::NoProgram(p.name.clone()))?;
                attach_xdp(&mut att, xdp, &p.name, &iface, ifindex, opts)?;
            }
            AttachSpec::Tc { direction, .. } => {
                let cls: &mut SchedClassifier = program
                    .try_into()
                    .map_err(|_| AttachError::NoProgram(p.name.clone()))?;
                attach_tc(&mut att, cls, &p.name, &iface, ifindex, *direction, opts)?;
            }
            AttachSpec::Tracepoint { .. } => {}
        }
    }
    Ok(att)
}

fn prog_name(id: u32) -> String {
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(|n| format!(" `{n}`")))
        .unwrap_or_default()
}

fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

fn message(e: &ProgramError) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        text.push_str(&format!(": {c}"));
        cur = c.source();
    }
    text
}

/// Before attaching an XDP program: refuses an interface that already has one, unless
/// `replace`, in which case the old one is detached (a program held by another process's
/// BPF link cannot be). Returns the note to show about a replaced program.
fn xdp_prepare(
    att: &mut Attachment,
    iface: &str,
    ifindex: u32,
    opts: &AttachOptions,
) -> Result<Option<String>, AttachError> {
    let mut note = None;
    if let Ok(Some(cur)) = netlink::xdp_query(ifindex) {
        let name = prog_name(cur.prog_id);
        if !opts.replace {
            return Err(AttachError::XdpBusy {
                iface: iface.into(),
                prog_id: cur.prog_id,
                name,
            });
        }
        let modes = if cur.mode == 0 {
            vec![XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE]
        } else {
            vec![cur.mode]
        };
        // An fd keeps the program loaded once detached, to put it back on exit.
        let keep = link::prog_fd_by_id(cur.prog_id).ok();
        for mode in modes {
            if let Err(e) = netlink::xdp_detach(ifindex, mode) {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    return Err(AttachError::XdpHeld {
                        iface: iface.into(),
                        prog_id: cur.prog_id,
                        name,
                    });
                }
            }
        }
        let back = match keep {
            Some(prog) => {
                att.replaced.push(Replaced {
                    iface: iface.into(),
                    ifindex,
                    mode: if cur.mode == 0 {
                        XDP_FLAGS_SKB_MODE
                    } else {
                        cur.mode
                    },
                    prog_id: cur.prog_id,
                    prog,
                });
                "it is put back on exit"
            }
            None => "it cannot be put back on exit (no access to it by id)",
        };
        note = Some(format!(
            "replaced XDP program {}{name} on `{iface}`; {back}",
            cur.prog_id
        ));
    }
    Ok(note)
}

fn attach_xdp(
    att: &mut Attachment,
    xdp: &mut Xdp,
    program: &str,
    iface: &str,
    ifindex: u32,
    opts: &AttachOptions,
) -> Result<(), AttachError> {
    let mut note = xdp_prepare(att, iface, ifindex, opts)?;
    let tries: &[(XdpFlags, &str)] = match opts.xdp_mode {
        XdpMode::Auto => &[
            (XdpFlags::DRV_MODE, "xdp native"),
            (XdpFlags::SKB_MODE, "xdp generic"),
        ],
        XdpMode::Native => &[(XdpFlags::DRV_MODE, "xdp native")],
        XdpMode::Generic => &[(XdpFlags::SKB_MODE, "xdp generic")],
    };
    let mut last = None;
    for (i, (flags, how)) in tries.iter().enumerate() {
        match xdp.attach_to_if_index(ifindex, *flags) {
            Ok(id) => {
                let link = xdp
                    .take_link(id)
                    .map_err(|e| attach_err(program, iface, how, &e))?;
                att.links.push(Link::Xdp(link));
                if i > 0 && note.is_none() {
                    note = Some(format!(
                        "the driver of `{iface}` has no native XDP; using generic (skb) mode"
                    ));
                }
                att.attached.push(Attached {
                    program: program.into(),
                    iface: iface.into(),
                    how: how.to_string(),
                    note,
                });
                return Ok(());
            }
            Err(e) => {
                // Busy means another program, whatever the mode: no point in falling back.
                if matches!(errno(&e), Some(libc::EBUSY | libc::EEXIST)) {
                    return Err(AttachError::XdpBusy {
                        iface: iface.into(),
                        prog_id: 0,
                        name: " attached meanwhile".into(),
                    });
                }
                last = Some((e, *how));
            }
        }
    }
    let (e, how) = last.ok_or_else(|| AttachError::NoProgram(program.into()))?;
    Err(attach_err(program, iface, how, &e))
}

/// What to do about a failed attach, by its errno.
fn attach_hint(errno: Option<i32>, how: &str) -> &'static str {
    match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => "; attaching needs root (CAP_NET_ADMIN)",
        Some(libc::EOPNOTSUPP) | Some(524) if how.contains("native") => {
            "; the driver has no native XDP: use --xdp-mode generic"
        }
        _ => "",
    }
}

fn attach_err(program: &str, iface: &str, how: &str, e: &ProgramError) -> AttachError {
    let hint = attach_hint(errno(e), how);
    AttachError::Attach {
        program: program.into(),
        iface: iface.into(),
        how: how.into(),
        message: message(e),
        hint: hint.into(),
    }
}

fn attach_tc(
    att: &mut Attachment,
    cls: &mut SchedClassifier,
    program: &str,
    iface: &str,
    ifindex: u32,
    direction: TcDirection,
    opts: &AttachOptions,
) -> Result<(), AttachError> {
    let (ty, dir) = match direction {
        TcDirection::Ingress => (TcAttachType::Ingress, "ingress"),
        TcDirection::Egress => (TcAttachType::Egress, "egress"),
    };
    let tcx = opts.tc_mode == TcMode::Auto
        && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    let (result, how) = if tcx {
        (cls.attach(iface, ty), format!("tc {dir} (tcx)"))
    } else {
        match tc::qdisc_add_clsact(iface) {
            Ok(()) => att.qdiscs.push((iface.to_string(), ifindex)),
            // Someone else's qdisc: use it, never delete it.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(error) => {
                return Err(AttachError::Qdisc {
                    iface: iface.into(),
                    program: program.into(),
                    error,
                })
            }
        }
        // pol's tag: what a SIGKILLed run leaves is found by it (crate::hooks).
        let options = TcAttachOptions::Netlink(NlOptions {
            priority: TC_PRIO,
            handle: TC_HANDLE,
        });
        (
            cls.attach_with_options(iface, ty, options),
            format!("tc {dir} (clsact)"),
        )
    };
    let id = result.map_err(|e| attach_err(program, iface, &how, &e))?;
    let link = cls
        .take_link(id)
        .map_err(|e| attach_err(program, iface, &how, &e))?;
    att.links.push(Link::Tc(link));
    att.attached.push(Attached {
        program: program.into(),
        iface: iface.into(),
        how,
        note: None,
    });
    Ok(())
}

/// The XDP modes to try, in order, with how each is shown.
fn xdp_tries(mode: XdpMode) -> &'static [(u32, &'static str)] {
    match mode {
        XdpMode::Auto => &[
            (XDP_FLAGS_DRV_MODE, "xdp native"),
            (XDP_FLAGS_SKB_MODE, "xdp generic"),
        ],
        XdpMode::Native => &[(XDP_FLAGS_DRV_MODE, "xdp native")],
        XdpMode::Generic => &[(XDP_FLAGS_SKB_MODE, "xdp generic")],
    }
}

fn link_err(program: &str, iface: &str, how: &str, e: &SysError) -> AttachError {
    let hint = attach_hint(e.errno(), how);
    AttachError::Attach {
        program: program.into(),
        iface: iface.into(),
        how: how.into(),
        message: e.to_string(),
        hint: hint.into(),
    }
}

/// Whether [`attach_all_fds`] can attach every program of `spec` with `opts`: XDP always,
/// TC only as TCX links (`TcMode::Auto` on kernel 6.6+); clsact filters need [`attach_all`].
pub fn fds_can_attach(spec: &ObjectSpec, opts: &AttachOptions) -> bool {
    let tcx = opts.tc_mode == TcMode::Auto
        && KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
    spec.programs.iter().all(|p| match p.attach {
        AttachSpec::Xdp { .. } => true,
        AttachSpec::Tc { .. } => tcx,
        AttachSpec::Tracepoint { .. } => false,
    })
}

/// Attaches every program of `spec`, loaded in `obj`, through BPF links on the program
/// fds: XDP links (native, falling back to generic) and TCX links. On error nothing stays
/// attached. Programs [`fds_can_attach`] rejects are refused with [`AttachError::Unsupported`].
pub fn attach_all_fds(
    obj: &dyn Object,
    spec: &ObjectSpec,
    opts: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let mut att = Attachment::default();
    let tcx = fds_can_attach(spec, opts);
    for p in &spec.programs {
        let (iface, ifindex) = program_iface(p, opts)?;
        let fd = obj
            .program_fd(&p.name)
            .map_err(|_| AttachError::NoProgram(p.name.clone()))?;
        match &p.attach {
            AttachSpec::Xdp { .. } => {
                let mut note = xdp_prepare(&mut att, &iface, ifindex, opts)?;
                let mut last = None;
                for (i, (flags, how)) in xdp_tries(opts.xdp_mode).iter().enumerate() {
                    match link::link_create(fd, ifindex, AttachType::Xdp, *flags) {
                        Ok(l) => {
                            att.links.push(Link::Fd(l));
                            if i > 0 && note.is_none() {
                                note = Some(format!(
                                    "the driver of `{iface}` has no native XDP; using generic (skb) mode"
                                ));
                            }
                            att.attached.push(Attached {
                                program: p.name.clone(),
                                iface: iface.clone(),
                                how: how.to_string(),
                                note: note.take(),
                            });
                            last = None;
                            break;
                        }
                        Err(e) => {
                            if matches!(e.errno(), Some(libc::EBUSY | libc::EEXIST)) {
                                return Err(AttachError::XdpBusy {
                                    iface,
                                    prog_id: 0,
                                    name: " attached meanwhile".into(),
                                });
                            }
                            last = Some(link_err(&p.name, &iface, how, &e));
                        }
                    }
                }
                if let Some(e) = last {
                    return Err(e);
                }
            }
            AttachSpec::Tc { direction, .. } => {
                let (ty, dir) = match direction {
                    TcDirection::Ingress => (AttachType::TcxIngress, "ingress"),
                    TcDirection::Egress => (AttachType::TcxEgress, "egress"),
                };
                let how = format!("tc {dir} (tcx)");
                if !tcx {
                    return Err(AttachError::Unsupported {
                        program: p.name.clone(),
                        kind: "clsact (netlink) TC".into(),
                    });
                }
                let l = link::link_create(fd, ifindex, ty, 0)
                    .map_err(|e| link_err(&p.name, &iface, &how, &e))?;
                att.links.push(Link::Fd(l));
                att.attached.push(Attached {
                    program: p.name.clone(),
                    iface: iface.clone(),
                    how,
                    note: None,
                });
            }
            AttachSpec::Tracepoint { .. } => {}
        }
    }
    Ok(att)
}
