//! The HIR as compact text, for golden files and `pol` debugging.

use super::{Action, CmpOp, Cond, Hir, Hook, Test, Value};
use crate::packet::record::*;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

pub fn dump(hir: &Hir) -> String {
    let mut s = String::new();
    for set in &hir.sets {
        let vals: Vec<String> = set.values.iter().map(value).collect();
        let _ = writeln!(
            s,
            "set {}: {} = {{ {} }}",
            set.name,
            set.elem,
            vals.join(", ")
        );
    }
    for c in &hir.counters {
        let key = c.key.map(|f| format!("[{}]", f.name)).unwrap_or_default();
        let _ = writeln!(s, "counter {}{key}", c.name);
    }
    for f in &hir.filters {
        let hook = match &f.hook {
            Hook::Xdp { iface } => format!("xdp({iface:?})"),
            Hook::Tc { iface, ingress } => format!(
                "tc({iface:?}, {})",
                if *ingress { "ingress" } else { "egress" }
            ),
        };
        let n = super::needs::needs(hir, f);
        let parsed: Vec<&str> = [
            ("ip4", n.ip4),
            ("ip6", n.ip6),
            ("frag4", n.frag4),
            ("frag6", n.frag6),
            ("tcp4", n.tcp4),
            ("tcp6", n.tcp6),
            ("udp4", n.udp4),
            ("udp6", n.udp6),
            ("sctp4", n.sctp4),
            ("sctp6", n.sctp6),
            ("icmp", n.icmp),
            ("icmp6", n.icmp6),
            ("arp", n.arp),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect();
        let _ = writeln!(
            s,
            "filter {} on {hook} (parser reads: eth vlan {})",
            f.name,
            parsed.join(" ")
        );
        for r in &f.rules {
            let _ = writeln!(
                s,
                "  rule {} (line {}): {} if {}",
                r.index,
                r.line,
                action(hir, &r.action),
                cond(hir, &r.cond)
            );
        }
        let _ = writeln!(s, "  default: {}", action(hir, &f.default));
        let _ = writeln!(s, "  malformed: {}", action(hir, &f.malformed));
    }
    s
}

fn action(hir: &Hir, a: &Action) -> String {
    let mut s = crate::driver::verdict_word(a.verdict).to_string();
    for &c in &a.counts {
        s.push_str(&format!(" count {}", hir.counters[c].name));
    }
    if a.log {
        s.push_str(" log");
    }
    s
}

pub fn value(v: &Value) -> String {
    match *v {
        Value::Int { lo, hi } if lo == hi => lo.to_string(),
        Value::Int { lo, hi } => format!("{lo}..{hi}"),
        Value::Net {
            v6: false,
            addr,
            prefix,
        } => format!(
            "{}/{prefix}",
            Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
        ),
        Value::Net {
            v6: true,
            addr,
            prefix,
        } => format!("{}/{prefix}", Ipv6Addr::from(addr)),
    }
}

fn layers(mask: u32) -> String {
    let names = [
        (F_VLAN, "vlan"),
        (F_IP4, "ip4"),
        (F_IP6, "ip6"),
        (F_TCP, "tcp"),
        (F_UDP, "udp"),
        (F_SCTP, "sctp"),
        (F_ICMP, "icmp"),
        (F_ICMP6, "icmp6"),
        (F_FRAG, "fragment"),
        (F_FRAG_LATER, "later_fragment"),
        (F_ARP, "arp"),
        (F_MPLS, "mpls"),
        (F_PPPOE, "pppoe"),
        (F_TUNNEL, "tunnel"),
    ];
    let mut v: Vec<String> = names
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    // Inner layers: the outer names, `inner.`-prefixed.
    v.extend(
        names
            .iter()
            .filter(|(b, _)| (mask >> INNER_SHIFT) & b & INNER_LAYERS != 0)
            .map(|(_, n)| format!("inner.{n}")),
    );
    v.join("|")
}

pub fn cond(hir: &Hir, c: &Cond) -> String {
    let join = |cs: &[Cond], op: &str| match cs {
        [one] => cond(hir, one),
        _ => format!(
            "({})",
            cs.iter().map(|c| cond(hir, c)).collect::<Vec<_>>().join(op)
        ),
    };
    match c {
        Cond::Const(b) => b.to_string(),
        Cond::And(cs) => join(cs, " and "),
        Cond::Or(cs) => join(cs, " or "),
        Cond::Not(c) => format!("not {}", cond(hir, c)),
        Cond::Test(t) => match t {
            Test::Layer(m) => format!("layer {}", layers(*m)),
            Test::Int { field, op, value } => format!("{} {} {value}", field.name, op_text(*op)),
            Test::Masked {
                field,
                mask,
                op,
                value,
            } => format!("{} & {mask:#x} {} {value}", field.name, op_text(*op)),
            Test::Bits { field, mask } => format!("{} (bits {mask:#x})", field.name),
            Test::Net { field, net } => format!("{} in {}", field.name, value(net)),
            Test::InSet { field, set } => format!("{} in set {}", field.name, hir.sets[*set].name),
            Test::Payload {
                layer,
                start,
                len,
                bytes,
                eq,
            } => {
                let hex: String = bytes[..*len as usize]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let op = if *eq { "==" } else { "!=" };
                format!(
                    "payload of {} [{start}..{}] {op} 0x{hex}",
                    layers(*layer),
                    start + len
                )
            }
            Test::Ct { mask } => format!("ct & {mask:#x}"),
            Test::L7(t) => crate::l7::print(hir, t),
            Test::Rate { rate, over } => {
                let r = &hir.rates[*rate];
                let keys: Vec<&str> = r.keys.iter().map(|f| f.name).collect();
                format!(
                    "rate({}) {} 1/{}ns burst {} [{}]",
                    keys.join(", "),
                    if *over { ">" } else { "<=" },
                    r.interval_ns,
                    r.burst,
                    r.map
                )
            }
        },
    }
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}
