//! Random pol rule lists for the differential test: a small PRNG, value pools, the rule
//! structures the reference evaluates, the generator, and rendering as pol source.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// splitmix64: deterministic, no dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next_u64() % xs.len() as u64) as usize]
    }
}

// ---- value pools: small, so that packets hit rules ----

pub const V4_NETS: [[u8; 3]; 4] = [[10, 0, 0], [10, 0, 1], [192, 168, 7], [203, 0, 113]];
pub const V6_NETS: [[u16; 4]; 4] = [
    [0x2001, 0xdb8, 0, 1],
    [0x2001, 0xdb8, 0, 2],
    [0x2001, 0xdb8, 0xff, 0],
    [0xfe80, 0, 0, 0],
];
pub const HOSTS: [u8; 8] = [1, 2, 3, 7, 9, 100, 200, 254];
pub const PORTS: [u16; 12] = [0, 22, 23, 53, 80, 443, 1023, 1024, 2000, 8080, 40000, 65535];
pub const TTLS: [u8; 8] = [0, 1, 2, 63, 64, 65, 128, 255];
pub const PROTOS: [u8; 6] = [1, 6, 17, 58, 47, 0];
pub const ICMP_TYPES: [u8; 8] = [0, 3, 8, 11, 1, 128, 129, 135];
pub const VLANS: [u16; 6] = [0, 1, 10, 20, 100, 4095];

pub fn v4(rng: &mut Rng, wide: bool) -> Ipv4Addr {
    let [a, b, c] = rng.pick(&V4_NETS);
    let c = if wide && rng.chance(30) {
        rng.range(0, 7) as u8
    } else {
        c
    };
    let h = if wide || rng.chance(15) {
        rng.range(0, 255) as u8
    } else {
        rng.pick(&HOSTS)
    };
    Ipv4Addr::new(a, b, c, h)
}

pub fn v6(rng: &mut Rng, wide: bool) -> Ipv6Addr {
    let [a, b, c, d] = rng.pick(&V6_NETS);
    let h = if wide {
        rng.range(0, 0xffff) as u16
    } else {
        u16::from(rng.pick(&HOSTS))
    };
    let mid = if rng.chance(15) {
        rng.range(1, 0xffff) as u16
    } else {
        0
    };
    Ipv6Addr::new(a, b, c, d, mid, 0, 0, h)
}

/// A prefix; `addr` may have host bits set (the compiler clears them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, a: IpAddr) -> bool {
        fn bits(x: &[u8], y: &[u8], n: usize) -> bool {
            (0..n).all(|i| (x[i / 8] >> (7 - i % 8)) & 1 == (y[i / 8] >> (7 - i % 8)) & 1)
        }
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => bits(&n.octets(), &a.octets(), self.prefix as usize),
            (IpAddr::V6(n), IpAddr::V6(a)) => bits(&n.octets(), &a.octets(), self.prefix as usize),
            _ => false,
        }
    }
    pub fn render(&self) -> String {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        // Full-length prefixes are written both ways: bare, and with `/32` or `/128`.
        let last = match self.addr {
            IpAddr::V4(a) => a.octets()[3],
            IpAddr::V6(a) => a.octets()[15],
        };
        if self.prefix == full && last % 2 == 1 {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fam {
    V4,
    V6,
    Any,
}

pub fn net(rng: &mut Rng, fam: Fam, hints: &mut Hints) -> Net {
    let six = match fam {
        Fam::V4 => false,
        Fam::V6 => true,
        Fam::Any => rng.chance(40),
    };
    let n = if six {
        let p = rng.pick(&[128, 128, 128, 64, 64, 48, 56, 63, 65, 96, 120, 127, 32, 0]);
        Net {
            addr: IpAddr::V6(v6(rng, false)),
            prefix: p,
        }
    } else {
        let p = rng.pick(&[32, 32, 32, 24, 24, 16, 8, 23, 25, 28, 30, 31, 0]);
        Net {
            addr: IpAddr::V4(v4(rng, false)),
            prefix: p,
        }
    };
    hints.addrs.push(n.addr);
    n
}

/// Values seen in the rules, for the packet generator.
#[derive(Debug, Default)]
pub struct Hints {
    pub addrs: Vec<IpAddr>,
    pub ports: Vec<u16>,
    pub small: Vec<u8>,
    pub vlans: Vec<u16>,
}

// ---- rule structures ----

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IntField {
    TcpSport,
    TcpDport,
    UdpSport,
    UdpDport,
    SctpSport,
    SctpDport,
    L4Sport,
    L4Dport,
    TcpFlags,
    IpProto,
    Ip4Proto,
    Ip6Next,
    Ip6FirstNext,
    IpTtl,
    Ip4Ttl,
    Ip6Hoplimit,
    IpLen,
    Ip4Ihl,
    Ip4Dscp,
    Ip4Ecn,
    Ip4Id,
    Ip4FragOffset,
    IcmpType,
    IcmpCode,
    Icmp6Type,
    Icmp6Code,
    VlanId,
    VlanInner,
    VlanDepth,
    VlanTpid,
    FrameLen,
}

pub const INT_FIELDS: [IntField; 31] = {
    use IntField::*;
    [
        TcpSport,
        TcpDport,
        UdpSport,
        UdpDport,
        SctpSport,
        SctpDport,
        L4Sport,
        L4Dport,
        TcpFlags,
        IpProto,
        Ip4Proto,
        Ip6Next,
        Ip6FirstNext,
        IpTtl,
        Ip4Ttl,
        Ip6Hoplimit,
        IpLen,
        Ip4Ihl,
        Ip4Dscp,
        Ip4Ecn,
        Ip4Id,
        Ip4FragOffset,
        IcmpType,
        IcmpCode,
        Icmp6Type,
        Icmp6Code,
        VlanId,
        VlanInner,
        VlanDepth,
        VlanTpid,
        FrameLen,
    ]
};

/// Values of the fields with pools of their own (lengths, header fields the packets vary).
pub const LENGTHS: [u16; 14] = [0, 14, 20, 28, 34, 40, 48, 54, 60, 64, 68, 80, 100, 1500];
pub const TPIDS: [u16; 5] = [0x8100, 0x88a8, 0x9100, 0x9200, 0];
pub const IDS: [u16; 5] = [0, 1, 0x1234, 0x8000, 0xffff];
pub const TCP_FLAGS: [u8; 8] = [0, 0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0xff];
pub const TOS: [u8; 6] = [0, 1, 2, 3, 0xb8, 0x28];

impl IntField {
    pub fn name(self) -> &'static str {
        use IntField::*;
        match self {
            TcpSport => "tcp.sport",
            TcpDport => "tcp.dport",
            UdpSport => "udp.sport",
            UdpDport => "udp.dport",
            SctpSport => "sctp.sport",
            SctpDport => "sctp.dport",
            L4Sport => "l4.sport",
            L4Dport => "l4.dport",
            TcpFlags => "tcp.flags",
            IpProto => "ip.proto",
            Ip4Proto => "ip4.proto",
            Ip6Next => "ip6.next",
            Ip6FirstNext => "ip6.first_next",
            IpTtl => "ip.ttl",
            Ip4Ttl => "ip4.ttl",
            Ip6Hoplimit => "ip6.hoplimit",
            IpLen => "ip.len",
            Ip4Ihl => "ip4.ihl",
            Ip4Dscp => "ip4.dscp",
            Ip4Ecn => "ip4.ecn",
            Ip4Id => "ip4.id",
            Ip4FragOffset => "ip4.frag_offset",
            IcmpType => "icmp.type",
            IcmpCode => "icmp.code",
            Icmp6Type => "icmp6.type",
            Icmp6Code => "icmp6.code",
            VlanId => "vlan.id",
            VlanInner => "vlan.inner",
            VlanDepth => "vlan.depth",
            VlanTpid => "vlan.tpid",
            FrameLen => "frame.len",
        }
    }
    /// The largest value of the field's type.
    pub fn max(self) -> u64 {
        use IntField::*;
        match self {
            IpLen | FrameLen => u64::from(u32::MAX),
            TcpSport | TcpDport | UdpSport | UdpDport | SctpSport | SctpDport | L4Sport
            | L4Dport | VlanId | VlanInner | VlanTpid | Ip4Id | Ip4FragOffset => 65535,
            _ => 255,
        }
    }
    pub fn value(self, rng: &mut Rng, hints: &mut Hints) -> u64 {
        use IntField::*;
        let v = match self {
            TcpSport | TcpDport | UdpSport | UdpDport | SctpSport | SctpDport | L4Sport
            | L4Dport => {
                let p = if rng.chance(10) {
                    rng.range(0, 65535) as u16
                } else {
                    rng.pick(&PORTS)
                };
                hints.ports.push(p);
                return u64::from(p);
            }
            VlanId | VlanInner => {
                let v = rng.pick(&VLANS);
                hints.vlans.push(v);
                return u64::from(v);
            }
            // Lengths near what the generator builds, and some far from it.
            IpLen | FrameLen => {
                let v = u64::from(rng.pick(&LENGTHS));
                return if rng.chance(30) {
                    v + rng.range(0, 40)
                } else {
                    v
                };
            }
            VlanTpid => return u64::from(rng.pick(&TPIDS)),
            Ip4Id => return u64::from(rng.pick(&IDS)),
            Ip4FragOffset => return rng.pick(&[0, 1, 100, 200, 8191]),
            TcpFlags => rng.pick(&TCP_FLAGS),
            Ip4Ihl => rng.pick(&[0, 4, 5, 6, 7, 15]),
            Ip4Dscp => rng.pick(&TOS) >> 2,
            Ip4Ecn => rng.range(0, 3) as u8,
            IcmpCode | Icmp6Code => rng.range(0, 4) as u8,
            Ip6FirstNext => rng.pick(&[0, 6, 17, 43, 44, 51, 58, 60, 132]),
            VlanDepth => rng.range(0, 3) as u8,
            IpProto | Ip4Proto | Ip6Next => rng.pick(&PROTOS),
            IpTtl | Ip4Ttl | Ip6Hoplimit => rng.pick(&TTLS),
            IcmpType | Icmp6Type => rng.pick(&ICMP_TYPES),
        };
        hints.small.push(v);
        u64::from(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AddrField {
    IpSrc,
    IpDst,
    Ip4Src,
    Ip4Dst,
    Ip6Src,
    Ip6Dst,
}

impl AddrField {
    pub fn name(self) -> &'static str {
        use AddrField::*;
        match self {
            IpSrc => "ip.src",
            IpDst => "ip.dst",
            Ip4Src => "ip4.src",
            Ip4Dst => "ip4.dst",
            Ip6Src => "ip6.src",
            Ip6Dst => "ip6.dst",
        }
    }
    pub fn fam(self) -> Fam {
        use AddrField::*;
        match self {
            IpSrc | IpDst => Fam::Any,
            Ip4Src | Ip4Dst => Fam::V4,
            Ip6Src | Ip6Dst => Fam::V6,
        }
    }
    pub fn is_src(self) -> bool {
        matches!(
            self,
            AddrField::IpSrc | AddrField::Ip4Src | AddrField::Ip6Src
        )
    }
}

/// MAC addresses the rules and packets draw from: unicast (locally administered and not),
/// broadcast, IPv4 and IPv6 multicast, zero.
pub const MACS: [u64; 8] = [
    0x0200_0000_0001,
    0x0200_0000_0002,
    0x02aa_bbcc_ddee,
    0x0050_56c0_0001,
    0xffff_ffff_ffff,
    0x0100_5e00_0001,
    0x3333_0000_0001,
    0,
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MacField {
    EthSrc,
    EthDst,
    ArpSha,
    ArpTha,
}

pub const MAC_FIELDS: [MacField; 4] = [
    MacField::EthSrc,
    MacField::EthDst,
    MacField::ArpSha,
    MacField::ArpTha,
];

impl MacField {
    pub fn name(self) -> &'static str {
        match self {
            MacField::EthSrc => "eth.src",
            MacField::EthDst => "eth.dst",
            MacField::ArpSha => "arp.sha",
            MacField::ArpTha => "arp.tha",
        }
    }
}

/// `==`, `!=` or `in { .. }` of a MAC field.
#[derive(Debug, Clone, PartialEq)]
pub enum MacTest {
    Eq(u64),
    Ne(u64),
    Lit(Vec<u64>),
}

/// A MAC address as pol writes it.
pub fn mac_text(m: u64) -> String {
    let b = m.to_be_bytes();
    b[2..]
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Boolean fields and layers used as conditions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flag {
    TcpSyn,
    TcpAck,
    TcpFin,
    TcpRst,
    Fragment,
    LaterFragment,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ip4,
    Ip6,
    Vlan,
    Sctp,
    Ip4Df,
    Ip4Mf,
    EthBroadcast,
    EthMulticast,
}

pub const FLAGS: [Flag; 18] = {
    use Flag::*;
    [
        TcpSyn,
        TcpAck,
        TcpFin,
        TcpRst,
        Fragment,
        LaterFragment,
        Tcp,
        Udp,
        Icmp,
        Icmp6,
        Ip4,
        Ip6,
        Vlan,
        Sctp,
        Ip4Df,
        Ip4Mf,
        EthBroadcast,
        EthMulticast,
    ]
};

impl Flag {
    pub fn name(self) -> &'static str {
        use Flag::*;
        match self {
            TcpSyn => "tcp.syn",
            TcpAck => "tcp.ack",
            TcpFin => "tcp.fin",
            TcpRst => "tcp.rst",
            Fragment => "ip.fragment",
            LaterFragment => "ip.later_fragment",
            Tcp => "tcp",
            Udp => "udp",
            Icmp => "icmp",
            Icmp6 => "icmp6",
            Ip4 => "ip4",
            Ip6 => "ip6",
            Vlan => "vlan",
            Sctp => "sctp",
            Ip4Df => "ip4.df",
            Ip4Mf => "ip4.mf",
            EthBroadcast => "eth.broadcast",
            EthMulticast => "eth.multicast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

pub const OPS: [Op; 6] = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge];

impl Op {
    pub fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum IntTest {
    Cmp(Op, u64),
    /// `in a..b`
    Range(u64, u64),
    /// `in { .. }`: single values are (v, v).
    Lit(Vec<(u64, u64)>),
    /// `in NAME`: index into `File::sets`.
    Set(usize),
    /// `FIELD & MASK OP VALUE`
    Masked(u64, Op, u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum AddrTest {
    Eq(Net),
    Ne(Net),
    In(Net),
    Lit(Vec<Net>),
    Set(usize),
}

/// `tcp.syn`, `tcp.syn == true`, `tcp.syn != false`, ...: `Some(b)` compares with `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlagForm {
    pub cmp: Option<(bool, bool)>, // (is `==`, value)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Int(IntField, IntTest),
    Addr(AddrField, AddrTest),
    Flag(Flag, FlagForm),
    Mac(MacField, MacTest),
    /// `payload[start..start + len] == value` (big-endian; `!=` when not `eq`) of the TCP
    /// or UDP payload (`Some(true)`: `tcp.payload`, `Some(false)`: `udp.payload`).
    Payload {
        tcp: Option<bool>,
        start: u8,
        len: u8,
        value: u64,
        eq: bool,
    },
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    /// Redundant parentheses (rendering only).
    Paren(Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SetKind {
    Port,
    U8,
    U16,
    Cidr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetDecl {
    pub name: String,
    pub kind: SetKind,
    pub ints: Vec<(u64, u64)>,
    pub nets: Vec<Net>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hook {
    Xdp,
    TcIngress,
    TcEgress,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub pass: bool,
    pub cond: Cond,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterDef {
    pub name: String,
    pub hook: Hook,
    pub rules: Vec<Rule>,
    pub default_pass: bool,
    /// `malformed pass|drop` when written; drop when not.
    pub malformed: Option<bool>,
}

#[derive(Debug, Default)]
pub struct File {
    pub sets: Vec<SetDecl>,
    pub filters: Vec<FilterDef>,
    pub hints: Hints,
}
