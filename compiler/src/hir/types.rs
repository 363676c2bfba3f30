//! The types of pol values and how they are written.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Ty {
    Bool,
    U8,
    U16,
    U32,
    U64,
    /// A TCP/UDP port: 0..=65535.
    Port,
    Ip4,
    Ip6,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A prefix of either family (a plain address is a full-length prefix).
    Cidr,
    /// A MAC (Ethernet) address, `02:00:00:00:00:01`: a 48-bit value, tested for
    /// (in)equality and set membership only.
    Mac,
    /// `str<N>`: parsed, used by probes later.
    Str(u32),
    /// `bytes<N>`
    Bytes(u32),
    /// `dnsname`: a DNS name or `*.` suffix pattern (`dns.qname`, `tls.sni`; issue 13).
    DnsName,
}

impl Ty {
    /// Resolves a type name as written in a declaration.
    pub fn from_name(name: &str, param: Option<u64>) -> Option<Ty> {
        let p = param.and_then(|p| u32::try_from(p).ok());
        Some(match (name, p) {
            ("bool", None) => Ty::Bool,
            ("u8", None) => Ty::U8,
            ("u16", None) => Ty::U16,
            ("u32", None) => Ty::U32,
            ("u64", None) => Ty::U64,
            ("port", None) => Ty::Port,
            ("ip4", None) => Ty::Ip4,
            ("ip6", None) => Ty::Ip6,
            ("ip", None) => Ty::Ip,
            ("cidr", None) => Ty::Cidr,
            ("mac", None) => Ty::Mac,
            ("str", Some(n)) => Ty::Str(n),
            ("bytes", Some(n)) => Ty::Bytes(n),
            ("dnsname", None) => Ty::DnsName,
            _ => return None,
        })
    }

    /// The largest value of an integer type.
    pub fn int_max(self) -> Option<u64> {
        Some(match self {
            Ty::U8 => u8::MAX as u64,
            Ty::U16 | Ty::Port => u16::MAX as u64,
            Ty::U32 => u32::MAX as u64,
            Ty::U64 => u64::MAX,
            _ => return None,
        })
    }

    pub fn is_int(self) -> bool {
        self.int_max().is_some()
    }

    pub fn is_addr(self) -> bool {
        matches!(self, Ty::Ip4 | Ty::Ip6 | Ty::Ip | Ty::Cidr)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => write!(f, "bool"),
            Ty::U8 => write!(f, "u8"),
            Ty::U16 => write!(f, "u16"),
            Ty::U32 => write!(f, "u32"),
            Ty::U64 => write!(f, "u64"),
            Ty::Port => write!(f, "port"),
            Ty::Ip4 => write!(f, "ip4"),
            Ty::Ip6 => write!(f, "ip6"),
            Ty::Ip => write!(f, "ip"),
            Ty::Cidr => write!(f, "cidr"),
            Ty::Mac => write!(f, "mac"),
            Ty::Str(n) => write!(f, "str<{n}>"),
            Ty::Bytes(n) => write!(f, "bytes<{n}>"),
            Ty::DnsName => write!(f, "dnsname"),
        }
    }
}
