//! The random pol file of one differential case (named sets, one or two filters, sometimes
//! a long run of same-shaped rules) and its rendering as pol source text.

use crate::rules::*;
use std::fmt::Write as _;
use std::net::IpAddr;

/// A file: 0–4 named sets, then one filter (sometimes two, sharing the sets).
pub fn file(rng: &mut Rng) -> File {
    let mut f = File::default();
    for i in 0..rng.range(0, 4) {
        let s = set(rng, i as usize, &mut f.hints);
        f.sets.push(s);
    }
    let n = if rng.chance(20) { 2 } else { 1 };
    for k in 0..n {
        let filter = filter(rng, k, &f.sets, &mut f.hints);
        f.filters.push(filter);
    }
    f
}

fn set(rng: &mut Rng, i: usize, hints: &mut Hints) -> SetDecl {
    use SetKind::*;
    let kind = rng.pick(&[Port, Port, U8, U16, Cidr, Cidr, Cidr]);
    // Most named sets have more than 8 elements, so they become maps.
    let n = match rng.range(0, 19) {
        0 => rng.range(100, 400),
        1..=5 => rng.range(1, 8),
        _ => rng.range(9, 40),
    };
    let mut s = SetDecl {
        name: format!("s{i}"),
        kind,
        ints: vec![],
        nets: vec![],
    };
    let field = match kind {
        Port => IntField::TcpDport,
        U8 => rng.pick(&[IntField::IpProto, IntField::IpTtl, IntField::IcmpType]),
        U16 => IntField::VlanId,
        Cidr => {
            // All exact (a hash map), one family, or mixed prefixes (LPM tries).
            let mode = rng.range(0, 3);
            for _ in 0..n {
                let fam = if mode == 1 { Fam::V4 } else { Fam::Any };
                let mut net = net(rng, fam, hints);
                if mode == 0 {
                    net.prefix = if net.addr.is_ipv4() { 32 } else { 128 };
                }
                s.nets.push(net);
            }
            return s;
        }
    };
    for _ in 0..n {
        // Sets of one kind draw from the pools of all fields of that width.
        let f = if kind == U8 {
            rng.pick(&[IntField::IpProto, IntField::IpTtl, field])
        } else {
            field
        };
        let a = f.value(rng, hints);
        if rng.chance(15) {
            let b = f.value(rng, hints);
            s.ints.push((a.min(b), a.max(b)));
        } else {
            s.ints.push((a, a));
        }
    }
    s
}

fn filter(rng: &mut Rng, k: usize, sets: &[SetDecl], hints: &mut Hints) -> FilterDef {
    let hook = rng.pick(&[Hook::Xdp, Hook::Xdp, Hook::TcIngress, Hook::TcEgress]);
    let n = if rng.chance(50) {
        rng.range(1, 12)
    } else {
        rng.range(1, 60)
    };
    let mut g = Gen { rng, sets, hints };
    let mut rules: Vec<Rule> = (0..n).map(|_| g.rule()).collect();
    if g.rng.chance(12) {
        let at = g.rng.range(0, rules.len() as u64) as usize;
        let run = g.run();
        rules.splice(at..at, run);
    } else if g.rng.chance(14) {
        let at = g.rng.range(0, rules.len() as u64) as usize;
        let run = g.conj_run();
        rules.splice(at..at, run);
    }
    let malformed = match rng.range(0, 9) {
        0..=1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    FilterDef {
        name: format!("f{k}"),
        hook,
        rules,
        default_pass: rng.chance(50),
        malformed,
    }
}

struct Gen<'a> {
    rng: &'a mut Rng,
    sets: &'a [SetDecl],
    hints: &'a mut Hints,
}

impl Gen<'_> {
    fn rule(&mut self) -> Rule {
        let depth = self.rng.range(0, 3);
        Rule {
            pass: self.rng.chance(50),
            cond: self.cond(depth),
        }
    }

    fn cond(&mut self, depth: u64) -> Cond {
        if depth == 0 || self.rng.chance(30) {
            let a = self.atom();
            return if self.rng.chance(12) {
                Cond::Not(Box::new(a))
            } else {
                a
            };
        }
        let sub = |g: &mut Self| Box::new(g.cond(depth - 1));
        match self.rng.range(0, 9) {
            0..=3 => Cond::And(sub(self), sub(self)),
            4..=6 => Cond::Or(sub(self), sub(self)),
            7 => Cond::Not(sub(self)),
            _ => Cond::Paren(sub(self)),
        }
    }

    fn atom(&mut self) -> Cond {
        match self.rng.range(0, 20) {
            0..=8 => self.int_atom(),
            9..=15 => self.addr_atom(),
            16 => self.mac_atom(),
            17 if self.rng.chance(60) => self.payload_atom(),
            _ => {
                let flag = self.rng.pick(&FLAGS);
                let cmp = if self.rng.chance(25) {
                    Some((self.rng.chance(50), self.rng.chance(50)))
                } else {
                    None
                };
                Cond::Flag(flag, FlagForm { cmp })
            }
        }
    }

    fn int_atom(&mut self) -> Cond {
        use IntField::*;
        // Ports twice as often as the rest.
        let f = if self.rng.chance(40) {
            self.rng
                .pick(&[TcpSport, TcpDport, UdpSport, UdpDport, L4Sport, L4Dport])
        } else {
            self.rng.pick(&INT_FIELDS)
        };
        let eligible: Vec<usize> = (0..self.sets.len())
            .filter(|&i| match self.sets[i].kind {
                SetKind::Cidr => false,
                SetKind::U8 => true,
                // Lengths (u32) take no port or u16 sets.
                SetKind::Port | SetKind::U16 => f.max() == 65535,
            })
            .collect();
        let test = match self.rng.range(0, 9) {
            4 => {
                let (a, b) = (f.value(self.rng, self.hints), f.value(self.rng, self.hints));
                IntTest::Range(a.min(b), a.max(b))
            }
            5 | 6 => {
                let n = if self.rng.chance(70) {
                    self.rng.range(1, 8)
                } else {
                    self.rng.range(9, 24)
                };
                let elems = (0..n)
                    .map(|_| {
                        let a = f.value(self.rng, self.hints);
                        if self.rng.chance(20) {
                            let b = f.value(self.rng, self.hints);
                            (a.min(b), a.max(b))
                        } else {
                            (a, a)
                        }
                    })
                    .collect();
                IntTest::Lit(elems)
            }
            7 | 8 if !eligible.is_empty() => IntTest::Set(self.rng.pick(&eligible)),
            9 => {
                // A mask: one to a few bits of the field, compared with a masked value.
                let bits = 64 - f.max().leading_zeros() as u64;
                let mut mask = 0;
                for _ in 0..self.rng.range(1, 4) {
                    mask |= 1 << self.rng.range(0, bits - 1);
                }
                if self.rng.chance(20) {
                    mask = f.max() & !(1 << self.rng.range(0, bits - 1));
                }
                let v = f.value(self.rng, self.hints)
                    & if self.rng.chance(80) { mask } else { f.max() };
                IntTest::Masked(mask, self.rng.pick(&OPS), v)
            }
            _ => IntTest::Cmp(self.rng.pick(&OPS), f.value(self.rng, self.hints)),
        };
        Cond::Int(f, test)
    }

    fn mac_atom(&mut self) -> Cond {
        let f = self.rng.pick(&MAC_FIELDS);
        let test = match self.rng.range(0, 3) {
            0 | 1 => MacTest::Eq(self.rng.pick(&MACS)),
            2 => MacTest::Ne(self.rng.pick(&MACS)),
            _ => {
                let n = self.rng.range(1, 12);
                MacTest::Lit((0..n).map(|_| self.rng.pick(&MACS)).collect())
            }
        };
        Cond::Mac(f, test)
    }

    /// The generator fills payloads with 0xab: most values match where the payload is
    /// long enough, some differ in one byte.
    fn payload_atom(&mut self) -> Cond {
        let len = self.rng.range(1, 8) as u8;
        let mut value = u64::MAX >> (64 - 8 * u32::from(len)) & 0xabab_abab_abab_abab;
        if self.rng.chance(25) {
            value ^= 1 << (8 * self.rng.range(0, u64::from(len) - 1));
        }
        Cond::Payload {
            tcp: self.rng.pick(&[None, None, Some(true), Some(false)]),
            start: self.rng.range(0, 31) as u8,
            len,
            value,
            eq: self.rng.chance(75),
        }
    }

    fn addr_atom(&mut self) -> Cond {
        use AddrField::*;
        let f = self
            .rng
            .pick(&[IpSrc, IpSrc, IpDst, IpDst, Ip4Src, Ip4Dst, Ip6Src, Ip6Dst]);
        let fam = f.fam();
        let cidr: Vec<usize> = (0..self.sets.len())
            .filter(|&i| self.sets[i].kind == SetKind::Cidr)
            .collect();
        let exact = |g: &mut Self| {
            let mut n = net(g.rng, fam, g.hints);
            if g.rng.chance(75) {
                n.prefix = if n.addr.is_ipv4() { 32 } else { 128 };
            }
            n
        };
        let test = match self.rng.range(0, 9) {
            0..=2 => AddrTest::Eq(exact(self)),
            3 => AddrTest::Ne(exact(self)),
            4 | 5 => AddrTest::In(net(self.rng, fam, self.hints)),
            6 | 7 => {
                let n = if self.rng.chance(75) {
                    self.rng.range(1, 8)
                } else {
                    self.rng.range(9, 16)
                };
                let mut nets: Vec<Net> = (0..n).map(|_| net(self.rng, fam, self.hints)).collect();
                // A prefix of the other family is allowed when one fits; it never matches.
                if fam != Fam::Any && self.rng.chance(15) {
                    let other = if fam == Fam::V4 { Fam::V6 } else { Fam::V4 };
                    nets.push(net(self.rng, other, self.hints));
                }
                AddrTest::Lit(nets)
            }
            _ if !cidr.is_empty() => AddrTest::Set(self.rng.pick(&cidr)),
            _ => AddrTest::In(net(self.rng, fam, self.hints)),
        };
        Cond::Addr(f, test)
    }

    /// 40–400 conjunctions for the classifier (issue 11): protocol (a layer, `ip.proto`
    /// or a port field's) × source prefix × destination prefix × source port range ×
    /// destination port range, any part left out, from a few networks so prefixes nest
    /// and overlap; some rules repeat an earlier one's condition (shadowing).
    fn conj_run(&mut self) -> Vec<Rule> {
        use AddrField::*;
        let n = self.rng.range(40, 400);
        let main = self.rng.chance(50);
        let mut rules: Vec<Rule> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let pass = if self.rng.chance(30) { !main } else { main };
            if !rules.is_empty() && self.rng.chance(8) {
                let k = self.rng.range(0, rules.len() as u64 - 1) as usize;
                let cond = rules[k].cond.clone();
                rules.push(Rule { pass, cond });
                continue;
            }
            let rng = &mut *self.rng;
            let v6 = rng.chance(15);
            let mut atoms: Vec<Cond> = Vec::new();
            let ports = match rng.range(0, 9) {
                0..=3 => Some((IntField::TcpSport, IntField::TcpDport)),
                4..=5 => Some((IntField::UdpSport, IntField::UdpDport)),
                6 => Some((IntField::L4Sport, IntField::L4Dport)),
                7 => {
                    let p = rng.pick(&PROTOS);
                    atoms.push(Cond::Int(
                        IntField::IpProto,
                        IntTest::Cmp(Op::Eq, u64::from(p)),
                    ));
                    None
                }
                _ => None,
            };
            for (f, f6) in [(Ip4Src, Ip6Src), (Ip4Dst, Ip6Dst)] {
                if rng.chance(25) {
                    continue;
                }
                let (addr, prefix) = if v6 {
                    let a = IpAddr::V6(crate::rules::v6(rng, true));
                    (a, rng.pick(&[32, 48, 64, 96, 128]))
                } else {
                    (
                        IpAddr::V4(v4(rng, true)),
                        rng.pick(&[8, 16, 20, 24, 24, 28, 32, 32]),
                    )
                };
                self.hints.addrs.push(addr);
                let field = match (v6, rng.chance(50)) {
                    (true, _) => f6,
                    (false, true) => f,
                    (false, false) if f == Ip4Src => IpSrc,
                    (false, false) => IpDst,
                };
                atoms.push(Cond::Addr(field, AddrTest::In(Net { addr, prefix })));
            }
            if let Some((sf, df)) = ports {
                for (f, chance) in [(sf, 25), (df, 80)] {
                    if !rng.chance(chance) {
                        continue;
                    }
                    let p = if rng.chance(40) {
                        rng.pick(&PORTS)
                    } else {
                        rng.range(0, 65535) as u16
                    };
                    self.hints.ports.push(p);
                    let test = match rng.range(0, 5) {
                        0 | 1 => IntTest::Cmp(Op::Eq, u64::from(p)),
                        2 => {
                            IntTest::Cmp(rng.pick(&[Op::Lt, Op::Le, Op::Gt, Op::Ge]), u64::from(p))
                        }
                        _ => {
                            let hi = (u64::from(p) + rng.range(1, 2000)).min(65535);
                            self.hints.ports.push(hi as u16);
                            IntTest::Range(u64::from(p), hi)
                        }
                    };
                    atoms.push(Cond::Int(f, test));
                }
            }
            if atoms.len() < 2 {
                atoms.push(Cond::Int(
                    IntField::IpProto,
                    IntTest::Cmp(Op::Eq, u64::from(rng.pick(&[6u8, 17]))),
                ));
            }
            let first = atoms.remove(0);
            let cond = atoms
                .into_iter()
                .fold(first, |a, b| Cond::And(Box::new(a), Box::new(b)));
            rules.push(Rule { pass, cond });
        }
        rules
    }

    /// 200–2000 rules of one shape, as the map lowering sees them: exact addresses,
    /// overlapping prefixes or ports, with duplicates, shadowing, pass and drop mixed.
    fn run(&mut self) -> Vec<Rule> {
        use AddrField::*;
        let n = self.rng.range(200, 2000);
        let shape = self.rng.range(0, 3);
        let main = self.rng.chance(50);
        let addr_f = match shape {
            0 => self.rng.pick(&[IpSrc, IpDst, Ip4Src]),
            1 => self.rng.pick(&[Ip4Src, Ip4Dst, IpSrc]),
            _ => self.rng.pick(&[Ip6Src, Ip6Dst, IpDst]),
        };
        let port_f = self
            .rng
            .pick(&[IntField::TcpDport, IntField::UdpDport, IntField::L4Dport]);
        let mut rules = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let pass = if self.rng.chance(15) { !main } else { main };
            let rng = &mut *self.rng;
            let cond = match shape {
                0 => {
                    let a = if addr_f == Ip4Src || rng.chance(60) {
                        IpAddr::V4(v4(rng, true))
                    } else {
                        IpAddr::V6(v6(rng, true))
                    };
                    self.hints.addrs.push(a);
                    let prefix = if a.is_ipv4() { 32 } else { 128 };
                    Cond::Addr(addr_f, AddrTest::Eq(Net { addr: a, prefix }))
                }
                1 => {
                    let a = IpAddr::V4(v4(rng, true));
                    self.hints.addrs.push(a);
                    let prefix = rng.pick(&[8, 16, 20, 24, 24, 24, 25, 26, 28, 30, 32, 32]);
                    Cond::Addr(addr_f, AddrTest::In(Net { addr: a, prefix }))
                }
                2 => {
                    let p = if rng.chance(10) {
                        rng.pick(&PORTS)
                    } else {
                        rng.range(0, 65535) as u16
                    };
                    self.hints.ports.push(p);
                    Cond::Int(port_f, IntTest::Cmp(Op::Eq, u64::from(p)))
                }
                _ => {
                    let a = IpAddr::V6(v6(rng, true));
                    self.hints.addrs.push(a);
                    let prefix = rng.pick(&[32, 48, 64, 64, 64, 96, 112, 120, 128, 128]);
                    Cond::Addr(addr_f, AddrTest::In(Net { addr: a, prefix }))
                }
            };
            rules.push(Rule { pass, cond });
        }
        rules
    }
}

// ---- rendering ----

pub fn render(f: &File) -> String {
    let mut out = String::new();
    for s in &f.sets {
        let ty = match s.kind {
            SetKind::Port => "port",
            SetKind::U8 => "u8",
            SetKind::U16 => "u16",
            SetKind::Cidr => "cidr",
        };
        let elems: Vec<String> = if s.kind == SetKind::Cidr {
            s.nets.iter().map(Net::render).collect()
        } else {
            s.ints.iter().map(|&e| int_elem(e)).collect()
        };
        let _ = writeln!(out, "set {}: {ty} = {{ {} }}", s.name, elems.join(", "));
    }
    for filt in &f.filters {
        let hook = match filt.hook {
            Hook::Xdp => "xdp(\"eth0\")",
            Hook::TcIngress => "tc(\"eth0\", ingress)",
            Hook::TcEgress => "tc(\"eth0\", egress)",
        };
        let _ = writeln!(out, "\nfilter {} on {hook} {{", filt.name);
        for r in &filt.rules {
            let mut c = String::new();
            cond(&mut c, &r.cond, 0, &f.sets);
            let _ = writeln!(out, "    {} {c}", verdict(r.pass));
        }
        if let Some(m) = filt.malformed {
            let _ = writeln!(out, "    malformed {}", verdict(m));
        }
        let _ = writeln!(out, "    default {}\n}}", verdict(filt.default_pass));
    }
    out
}

pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "drop"
    }
}

fn int_elem((lo, hi): (u64, u64)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}..{hi}")
    }
}

/// Binding strength in the grammar: `or` < `and` < `not` < comparison.
fn prec(c: &Cond) -> u8 {
    match c {
        Cond::Or(..) => 1,
        Cond::And(..) => 2,
        Cond::Not(_) => 3,
        _ => 4,
    }
}

fn cond(out: &mut String, c: &Cond, min: u8, sets: &[SetDecl]) {
    if prec(c) < min {
        out.push('(');
        cond(out, c, 0, sets);
        out.push(')');
        return;
    }
    match c {
        Cond::Or(a, b) => {
            cond(out, a, 1, sets);
            out.push_str(" or ");
            cond(out, b, 2, sets);
        }
        Cond::And(a, b) => {
            cond(out, a, 2, sets);
            out.push_str(" and ");
            cond(out, b, 3, sets);
        }
        Cond::Not(a) => {
            out.push_str("not ");
            cond(out, a, 3, sets);
        }
        Cond::Paren(a) => {
            out.push('(');
            cond(out, a, 0, sets);
            out.push(')');
        }
        Cond::Int(f, t) => {
            let _ = match t {
                IntTest::Cmp(op, v) => write!(out, "{} {} {v}", f.name(), op.text()),
                IntTest::Range(lo, hi) => write!(out, "{} in {lo}..{hi}", f.name()),
                IntTest::Lit(es) => {
                    let es: Vec<String> = es.iter().map(|&e| int_elem(e)).collect();
                    write!(out, "{} in {{ {} }}", f.name(), es.join(", "))
                }
                IntTest::Set(i) => write!(out, "{} in {}", f.name(), sets[*i].name),
                IntTest::Masked(m, op, v) => {
                    write!(out, "{} & {m:#x} {} {v:#x}", f.name(), op.text())
                }
            };
        }
        Cond::Addr(f, t) => {
            let _ = match t {
                AddrTest::Eq(n) => write!(out, "{} == {}", f.name(), n.render()),
                AddrTest::Ne(n) => write!(out, "{} != {}", f.name(), n.render()),
                AddrTest::In(n) => write!(out, "{} in {}", f.name(), n.render()),
                AddrTest::Lit(ns) => {
                    let ns: Vec<String> = ns.iter().map(Net::render).collect();
                    write!(out, "{} in {{ {} }}", f.name(), ns.join(", "))
                }
                AddrTest::Set(i) => write!(out, "{} in {}", f.name(), sets[*i].name),
            };
        }
        Cond::Payload {
            tcp,
            start,
            len,
            value,
            eq,
        } => {
            let name = match tcp {
                None => "payload",
                Some(true) => "tcp.payload",
                Some(false) => "udp.payload",
            };
            let op = if *eq { "==" } else { "!=" };
            // One byte sometimes as `[N]`, else as `[A..B]`.
            let _ = if *len == 1 && start % 2 == 0 {
                write!(out, "{name}[{start}] {op} {value:#x}")
            } else {
                write!(out, "{name}[{start}..{}] {op} {value:#x}", start + len)
            };
        }
        Cond::Mac(f, t) => {
            let _ = match t {
                MacTest::Eq(m) => write!(out, "{} == {}", f.name(), mac_text(*m)),
                MacTest::Ne(m) => write!(out, "{} != {}", f.name(), mac_text(*m)),
                MacTest::Lit(ms) => {
                    let ms: Vec<String> = ms.iter().map(|&m| mac_text(m)).collect();
                    write!(out, "{} in {{ {} }}", f.name(), ms.join(", "))
                }
            };
        }
        Cond::Flag(f, form) => {
            out.push_str(f.name());
            if let Some((eq, v)) = form.cmp {
                let _ = write!(out, " {} {v}", if eq { "==" } else { "!=" });
            }
        }
    }
}
