//! Interfaces and rtnetlink: interface indices, the XDP program on an interface, detaching
//! and re-attaching an XDP program, deleting a clsact qdisc (aya 0.13 can add one but not
//! remove it), listing and deleting the tc filters under clsact.
//!
//! Requests are built by hand (nlmsghdr + ifinfomsg/tcmsg + rtattrs) and sent on a fresh
//! `NETLINK_ROUTE` socket in the caller's network namespace; every request asks for an ack.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;
const NLM_F_DUMP: u16 = 0x300;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TC_H_MIN_INGRESS: u32 = 0xFFF2;
const TC_H_MIN_EGRESS: u32 = 0xFFF3;
const ETH_P_ALL: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const TCA_KIND: u16 = 1;
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// `XDP_FLAGS_SKB_MODE`, `XDP_FLAGS_DRV_MODE`, `XDP_FLAGS_HW_MODE`.
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
pub const XDP_FLAGS_DRV_MODE: u32 = 4;
pub const XDP_FLAGS_HW_MODE: u32 = 8;

/// The index of interface `name` in this network namespace, or `None` when there is none.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The XDP program attached to an interface, as rtnetlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttached {
    pub prog_id: u32,
    /// `XDP_FLAGS_*_MODE` of the attachment (driver, skb or hardware); 0 when several.
    pub mode: u32,
}

/// The XDP program on interface `ifindex`, if any.
pub fn xdp_query(ifindex: u32) -> std::io::Result<Option<XdpAttached>> {
    let mut msg = header(RTM_GETLINK, NLM_F_REQUEST);
    ifinfomsg(&mut msg, ifindex);
    let replies = request(&msg)?;
    for (ty, body) in replies {
        if ty != RTM_NEWLINK || body.len() < 16 {
            continue;
        }
        for (aty, data) in attrs(&body[16..]) {
            if aty != IFLA_XDP {
                continue;
            }
            let (mut attached, mut prog_id) = (0u8, 0u32);
            for (xty, xdata) in attrs(data) {
                match xty {
                    IFLA_XDP_ATTACHED => attached = xdata.first().copied().unwrap_or(0),
                    IFLA_XDP_PROG_ID => prog_id = read_u32(xdata).unwrap_or(0),
                    _ => {}
                }
            }
            if attached == 0 {
                return Ok(None);
            }
            let mode = match attached {
                1 => XDP_FLAGS_DRV_MODE,
                2 => XDP_FLAGS_SKB_MODE,
                3 => XDP_FLAGS_HW_MODE,
                _ => 0,
            };
            return Ok(Some(XdpAttached { prog_id, mode }));
        }
    }
    Ok(None)
}

/// Detaches the XDP program attached in `mode` (`XDP_FLAGS_*_MODE`) from `ifindex`.
/// Fails with EBUSY when it is held by a BPF link (only its owner can remove it).
pub fn xdp_detach(ifindex: u32, mode: u32) -> std::io::Result<()> {
    xdp_set(ifindex, -1, mode)
}

/// Attaches program `prog_fd` to `ifindex` through netlink (not a link), in `mode`, only
/// if the interface has no XDP program then (`XDP_FLAGS_UPDATE_IF_NOEXIST`): how `pol run
/// --replace` puts back the program it replaced.
pub fn xdp_attach(ifindex: u32, prog_fd: BorrowedFd<'_>, mode: u32) -> std::io::Result<()> {
    const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
    xdp_set(
        ifindex,
        prog_fd.as_raw_fd(),
        mode | XDP_FLAGS_UPDATE_IF_NOEXIST,
    )
}

fn xdp_set(ifindex: u32, fd: i32, flags: u32) -> std::io::Result<()> {
    let mut msg = header(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
    ifinfomsg(&mut msg, ifindex);
    let mut nested = Vec::new();
    attr(&mut nested, IFLA_XDP_FD, &fd.to_ne_bytes());
    attr(&mut nested, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    attr(&mut msg, IFLA_XDP | NLA_F_NESTED, &nested);
    request(&msg).map(|_| ())
}

/// One tc filter under the clsact qdisc of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcFilter {
    pub prio: u16,
    pub handle: u32,
    /// `bpf`, `u32`, `flower`, ...
    pub kind: String,
    /// The program name of a cls_bpf filter (`TCA_BPF_NAME`), else empty.
    pub name: String,
}

fn clsact_parent(egress: bool) -> u32 {
    TC_H_CLSACT & 0xFFFF_0000
        | if egress {
            TC_H_MIN_EGRESS
        } else {
            TC_H_MIN_INGRESS
        }
}

fn tcmsg(m: &mut Vec<u8>, ifindex: u32, handle: u32, parent: u32, info: u32) {
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&handle.to_ne_bytes());
    m.extend_from_slice(&parent.to_ne_bytes());
    m.extend_from_slice(&info.to_ne_bytes());
}

/// The filters under clsact ingress (or egress) of `ifindex`; none when there is no clsact.
pub fn tc_filters(ifindex: u32, egress: bool) -> std::io::Result<Vec<TcFilter>> {
    let mut msg = header(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP);
    tcmsg(&mut msg, ifindex, 0, clsact_parent(egress), 0);
    let replies = match request(&msg) {
        Ok(r) => r,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => vec![],
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (ty, body) in replies {
        if ty != RTM_NEWTFILTER || body.len() < 20 {
            continue;
        }
        let handle = read_u32(&body[8..]).unwrap_or(0);
        let info = read_u32(&body[16..]).unwrap_or(0);
        if handle == 0 {
            continue; // the chain head of a priority, not a filter
        }
        let mut f = TcFilter {
            prio: (info >> 16) as u16,
            handle,
            kind: String::new(),
            name: String::new(),
        };
        for (aty, data) in attrs(&body[20..]) {
            match aty {
                TCA_KIND => f.kind = c_string(data),
                TCA_OPTIONS => {
                    for (oty, odata) in attrs(data) {
                        if oty == TCA_BPF_NAME {
                            f.name = c_string(odata);
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(f);
    }
    Ok(out)
}

/// Deletes the cls_bpf filter `prio`/`handle` under clsact ingress (or egress) of `ifindex`.
pub fn tc_filter_del(ifindex: u32, egress: bool, prio: u16, handle: u32) -> std::io::Result<()> {
    let mut msg = header(RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK);
    let info = (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be());
    tcmsg(&mut msg, ifindex, handle, clsact_parent(egress), info);
    attr(&mut msg, TCA_KIND, b"bpf\0");
    request(&msg).map(|_| ())
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Deletes the clsact qdisc of `ifindex` (and with it every tc filter on it).
pub fn qdisc_del_clsact(ifindex: u32) -> std::io::Result<()> {
    let mut msg = header(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK);
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    msg.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    msg.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut msg, TCA_KIND, b"clsact\0");
    request(&msg).map(|_| ())
}

fn header(ty: u16, flags: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `request`
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m
}

fn ifinfomsg(m: &mut Vec<u8>, ifindex: u32) {
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // change
}

fn attr(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(m.len().div_ceil(4) * 4, 0);
}

/// The (type, payload) pairs of a run of rtattrs; stops at the first malformed one.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        buf = buf.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    out
}

fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// Sends one request and collects the replies up to the ack (or the first reply, for a
/// plain get). A negative error in an NLMSG_ERROR becomes the `Err`.
fn request(msg: &[u8]) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
    let mut msg = msg.to_vec();
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    let wants_ack = u16::from_ne_bytes([msg[6], msg[7]]) & NLM_F_ACK != 0;
    let sock = socket()?;
    // SAFETY: `msg` is a live buffer of `msg.len()` bytes; a null address sends to the kernel.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut rest = buf.get(..n as usize).unwrap_or(&[]);
        while rest.len() >= 16 {
            let mlen = read_u32(rest).unwrap_or(0) as usize;
            let ty = u16::from_ne_bytes([rest[4], rest[5]]);
            if mlen < 16 || mlen > rest.len() {
                break;
            }
            let body = &rest[16..mlen];
            match ty {
                NLMSG_ERROR => {
                    let err = read_u32(body).unwrap_or(0) as i32;
                    if err != 0 {
                        return Err(std::io::Error::from_raw_os_error(-err));
                    }
                    return Ok(out);
                }
                NLMSG_DONE => return Ok(out),
                _ => out.push((ty, body.to_vec())),
            }
            rest = rest.get(mlen.div_ceil(4) * 4..).unwrap_or(&[]);
        }
        if !wants_ack && !out.is_empty() {
            return Ok(out);
        }
    }
}

fn socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip() {
        let mut m = Vec::new();
        attr(&mut m, 3, &[1, 2, 3]);
        attr(&mut m, 4, &7u32.to_ne_bytes());
        let a = attrs(&m);
        assert_eq!(a, vec![(3, &[1u8, 2, 3][..]), (4, &7u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn no_such_interface() {
        assert_eq!(ifindex("pol-no-such-if"), None);
        assert_eq!(ifindex("a\0b"), None);
    }
}
