//! Differential test of connection tracking (issue 15): random filters testing `ct.state`
//! and `ct.direction` (with protocol tests beside them), and random sequences of packets
//! along a small pool of flows — TCP with any flags, UDP, ICMP and ICMPv6 echo, ICMP errors
//! quoting pool flows, ARP — both ways, IPv4 and IPv6. A plain Rust reference keeps its own
//! table and says, packet by packet, which rule decides; `pol test` runs the whole sequence
//! through one loaded program (BPF_PROG_TEST_RUN, the table kept between packets) and
//! checks each verdict and the count of the rule that decided.
//!
//! `POL_DIFF_SEED` and `POL_DIFF_CASES` (files) override the defaults; a failure prints the
//! file (its test block is the sequence) and its seed.

mod common;
mod run_support;

use common::TempDir;
use run_support::{pol, text};

const DEFAULT_SEED: u64 = 0x5747_e15e_ed00;
const DEFAULT_CASES: u64 = 40;

// The tracking result's bits, as `hir::state` has them.
const NEW: u32 = 1;
const EST: u32 = 2;
const INVALID: u32 = 4;
const UNTRACKED: u32 = 8;
const RELATED: u32 = 16;
const ORIGINAL: u32 = 1 << 8;
const REPLY: u32 = 1 << 9;
const STATES: [(&str, u32); 5] = [
    ("new", NEW),
    ("established", EST),
    ("related", RELATED),
    ("invalid", INVALID),
    ("untracked", UNTRACKED),
];

/// xorshift64*: the same sequence for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// One condition of a rule: each part must hold.
#[derive(Debug, Clone)]
struct Rule {
    pass: bool,
    /// `ct.state` test: the mask it holds for (after `!=`), and its text.
    state: Option<(u32, String)>,
    /// `ct.direction == original|reply`.
    dir: Option<u32>,
    /// `tcp` or `udp`.
    proto: Option<u8>,
}

impl Rule {
    fn holds(&self, res: u32, proto: Option<u8>) -> bool {
        self.state.as_ref().is_none_or(|(m, _)| res & m != 0)
            && self.dir.is_none_or(|d| res & d != 0)
            && self.proto.is_none_or(|p| proto == Some(p))
    }

    fn render(&self) -> String {
        let mut parts = vec![];
        if let Some((_, t)) = &self.state {
            parts.push(t.clone());
        }
        if let Some(d) = self.dir {
            parts.push(format!(
                "ct.direction == {}",
                if d == ORIGINAL { "original" } else { "reply" }
            ));
        }
        if let Some(p) = self.proto {
            parts.push(if p == 6 { "tcp" } else { "udp" }.to_string());
        }
        parts.join(" and ")
    }
}

fn random_rule(r: &mut Rng) -> Rule {
    let state = if r.chance(85) {
        let (name, bit) = *r.pick(&STATES);
        Some(match r.below(3) {
            0 => (bit, format!("ct.state == {name}")),
            1 => (
                (NEW | EST | RELATED | INVALID | UNTRACKED) & !bit,
                format!("ct.state != {name}"),
            ),
            _ => {
                let i = STATES.iter().position(|(n, _)| *n == name).unwrap_or(0);
                let (n2, b2) = STATES[(i + 1 + r.below(4)) % 5];
                (bit | b2, format!("ct.state in {{ {name}, {n2} }}"))
            }
        })
    } else {
        None
    };
    let dir = r.chance(30).then(|| *r.pick(&[ORIGINAL, REPLY]));
    let proto = r.chance(25).then(|| *r.pick(&[6u8, 17]));
    let mut rule = Rule {
        pass: r.chance(50),
        state,
        dir,
        proto,
    };
    if rule.state.is_none() && rule.dir.is_none() && rule.proto.is_none() {
        rule.dir = Some(REPLY);
    }
    rule
}

/// Whether a rule can tell an ICMP error's result from `untracked` (then the program reads
/// the quote), as `hir::state::tells_related` decides.
fn tells_related(rules: &[Rule]) -> bool {
    const ERR: u32 = RELATED | INVALID | UNTRACKED;
    rules.iter().any(|r| {
        r.dir.is_some()
            || r.state.as_ref().is_some_and(|(m, _)| {
                let m = m & ERR;
                m != 0 && m != ERR
            })
    })
}

/// A flow key: addresses, ports (echo: the id at sport for a request, dport for a reply),
/// protocol, IP version.
type Key = (String, String, u16, u16, u8, u8);

/// What the packet is, as the generator made it.
#[derive(Debug, Clone)]
enum Pkt {
    Tcp {
        v6: bool,
        src: usize,
        dst: usize,
        sport: u16,
        dport: u16,
        flags: &'static [&'static str],
    },
    Udp {
        v6: bool,
        src: usize,
        dst: usize,
        sport: u16,
        dport: u16,
    },
    Echo {
        v6: bool,
        src: usize,
        dst: usize,
        request: bool,
        id: u16,
    },
    /// An ICMP error from `from` to the quoted packet's source, quoting it.
    Error {
        from: usize,
        quoted: Box<Pkt>,
    },
    Arp,
}

const V4: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
const V6: [&str; 3] = ["2001:db8::1", "2001:db8::2", "2001:db8::3"];
const PORTS: [u16; 3] = [1000, 2000, 80];
const FLAGS: [&[&str]; 7] = [
    &["syn"],
    &["syn", "ack"],
    &["ack"],
    &["fin", "ack"],
    &["rst"],
    &["psh", "ack"],
    &["syn", "fin"],
];

fn addr(v6: bool, i: usize) -> &'static str {
    if v6 {
        V6[i]
    } else {
        V4[i]
    }
}

fn random_flowish(r: &mut Rng, with_errors: bool) -> Pkt {
    let v6 = r.chance(30);
    let src = r.below(3);
    let dst = (src + 1 + r.below(2)) % 3;
    match r.below(if with_errors { 10 } else { 9 }) {
        0..=3 => Pkt::Tcp {
            v6,
            src,
            dst,
            sport: *r.pick(&PORTS),
            dport: *r.pick(&PORTS),
            flags: FLAGS[r.below(FLAGS.len())],
        },
        4..=6 => Pkt::Udp {
            v6,
            src,
            dst,
            sport: *r.pick(&PORTS),
            dport: *r.pick(&PORTS),
        },
        7 | 8 => Pkt::Echo {
            v6,
            src,
            dst,
            request: r.chance(60),
            id: 1 + r.below(2) as u16,
        },
        _ => {
            let quoted = random_flowish(r, false);
            if matches!(quoted, Pkt::Tcp { .. } | Pkt::Udp { .. } | Pkt::Echo { .. }) {
                Pkt::Error {
                    from: r.below(3),
                    quoted: Box::new(quoted),
                }
            } else {
                Pkt::Arp
            }
        }
    }
}

impl Pkt {
    /// The packet's flow key as it goes, and whether it may start a flow.
    fn key(&self) -> Option<(Key, bool)> {
        let k = |v6: bool, s: usize, d: usize, sp: u16, dp: u16, proto: u8| {
            (
                addr(v6, s).to_string(),
                addr(v6, d).to_string(),
                sp,
                dp,
                proto,
                if v6 { 6 } else { 4 },
            )
        };
        match self {
            Pkt::Tcp {
                v6,
                src,
                dst,
                sport,
                dport,
                flags,
            } => {
                let lone_syn = flags.contains(&"syn") && !flags.contains(&"ack");
                Some((k(*v6, *src, *dst, *sport, *dport, 6), lone_syn))
            }
            Pkt::Udp {
                v6,
                src,
                dst,
                sport,
                dport,
            } => Some((k(*v6, *src, *dst, *sport, *dport, 17), true)),
            Pkt::Echo {
                v6,
                src,
                dst,
                request,
                id,
            } => {
                let proto = if *v6 { 58 } else { 1 };
                let (sp, dp) = if *request { (*id, 0) } else { (0, *id) };
                Some((k(*v6, *src, *dst, sp, dp, proto), *request))
            }
            Pkt::Error { .. } | Pkt::Arp => None,
        }
    }

    fn proto(&self) -> Option<u8> {
        match self {
            Pkt::Tcp { .. } => Some(6),
            Pkt::Udp { .. } => Some(17),
            _ => None,
        }
    }

    fn v6(&self) -> bool {
        match self {
            Pkt::Tcp { v6, .. } | Pkt::Udp { v6, .. } | Pkt::Echo { v6, .. } => *v6,
            Pkt::Error { quoted, .. } => quoted.v6(),
            Pkt::Arp => false,
        }
    }

    /// The fields of a `packet` test case (without the braces), and its layers.
    fn fields(&self) -> (String, String) {
        let ip = |v6: bool| if v6 { "ip6 " } else { "" };
        match self {
            Pkt::Tcp {
                v6,
                src,
                dst,
                sport,
                dport,
                flags,
            } => (
                format!("{}tcp", ip(*v6)),
                format!(
                    "src: {}, dst: {}, sport: {sport}, dport: {dport}, flags: [{}]",
                    addr(*v6, *src),
                    addr(*v6, *dst),
                    flags.join(", ")
                ),
            ),
            Pkt::Udp {
                v6,
                src,
                dst,
                sport,
                dport,
            } => (
                format!("{}udp", ip(*v6)),
                format!(
                    "src: {}, dst: {}, sport: {sport}, dport: {dport}",
                    addr(*v6, *src),
                    addr(*v6, *dst)
                ),
            ),
            Pkt::Echo {
                v6,
                src,
                dst,
                request,
                id,
            } => {
                let ty = match (v6, request) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                };
                (
                    format!("{}{}", ip(*v6), if *v6 { "icmp6" } else { "icmp" }),
                    format!(
                        "src: {}, dst: {}, type: {ty}, echo: {id}",
                        addr(*v6, *src),
                        addr(*v6, *dst)
                    ),
                )
            }
            Pkt::Error { from, quoted } => {
                let v6 = quoted.v6();
                let (qlayers, qfields) = quoted.fields();
                let kind = qlayers.trim_start_matches("ip6 ");
                let to = match **quoted {
                    Pkt::Tcp { src, .. } | Pkt::Udp { src, .. } | Pkt::Echo { src, .. } => src,
                    _ => 0,
                };
                let ty = if v6 { 1 } else { 3 };
                (
                    format!("{}{}", ip(v6), if v6 { "icmp6" } else { "icmp" }),
                    format!(
                        "src: {}, dst: {}, type: {ty}, code: 3, quote: {{ kind: {kind}, {qfields} }}",
                        addr(v6, *from),
                        addr(v6, to)
                    ),
                )
            }
            Pkt::Arp => ("arp".to_string(), String::new()),
        }
    }
}

/// The reference table: flow key -> established (a reply seen).
struct Table {
    flows: std::collections::HashMap<Key, bool>,
    open: bool,
    related: bool,
}

impl Table {
    /// The tracking result of `p`, updating the table as the program does (no entry
    /// expires or is evicted within one sequence: timeouts are seconds, the table large).
    fn track(&mut self, p: &Pkt) -> u32 {
        if let Pkt::Error { quoted, .. } = p {
            if !self.related {
                return UNTRACKED;
            }
            let Some((q, _)) = quoted.key() else {
                return UNTRACKED;
            };
            let rev = (q.1.clone(), q.0.clone(), q.3, q.2, q.4, q.5);
            return if self.flows.contains_key(&q) {
                RELATED | REPLY
            } else if self.flows.contains_key(&rev) {
                RELATED | ORIGINAL
            } else {
                INVALID
            };
        }
        let Some((k, start)) = p.key() else {
            return UNTRACKED;
        };
        if let Some(est) = self.flows.get(&k) {
            return if *est { EST | ORIGINAL } else { NEW | ORIGINAL };
        }
        let rev = (k.1.clone(), k.0.clone(), k.3, k.2, k.4, k.5);
        if let Some(est) = self.flows.get_mut(&rev) {
            *est = true;
            return EST | REPLY;
        }
        if start {
            self.flows.insert(k, false);
            NEW | ORIGINAL
        } else if self.open {
            self.flows.insert(k, true);
            EST | ORIGINAL
        } else {
            INVALID
        }
    }
}

/// One random file: a filter and its test block, every expectation from the reference;
/// `reached` counts the packets of each state (`STATES` order).
fn case(seed: u64, reached: &mut [usize; 5]) -> (String, usize) {
    let mut r = Rng(seed | 1);
    let rules: Vec<Rule> = (0..1 + r.below(6)).map(|_| random_rule(&mut r)).collect();
    let default_pass = r.chance(50);
    let open = r.chance(30);
    let hook = if r.chance(50) {
        "xdp(\"eth0\")"
    } else {
        "tc(\"eth0\", ingress)"
    };
    let mut src = format!(
        "const conntrack = {{ full: {} }}\nfilter diff on {hook} {{\n",
        if open { "open" } else { "closed" }
    );
    for (i, rule) in rules.iter().enumerate() {
        src += &format!(
            "    {} {}    count r{i}\n",
            if rule.pass { "pass" } else { "drop" },
            rule.render()
        );
    }
    src += &format!(
        "    default {}    count dflt\n}}\n",
        if default_pass { "pass" } else { "drop" }
    );
    let mut table = Table {
        flows: Default::default(),
        open,
        related: tells_related(&rules),
    };
    let n = 60 + r.below(90);
    src += "test \"sequence\" on diff {\n";
    // Earlier packets' flows come back, the other way more often than not, so sequences
    // reach every state.
    let mut seen: Vec<Pkt> = vec![];
    for _ in 0..n {
        let p = match seen.len() {
            0 => random_flowish(&mut r, true),
            _ if r.chance(55) => reverse(r.pick(&seen).clone(), &mut r),
            _ if r.chance(3) => Pkt::Arp,
            _ => random_flowish(&mut r, true),
        };
        seen.push(p.clone());
        let res = table.track(&p);
        for (i, (_, bit)) in STATES.iter().enumerate() {
            reached[i] += usize::from(res & bit != 0);
        }
        let hit = rules.iter().position(|rule| rule.holds(res, p.proto()));
        let (pass, count) = match hit {
            Some(i) => (rules[i].pass, format!("r{i}")),
            None => (default_pass, "dflt".to_string()),
        };
        let (layers, fields) = p.fields();
        src += &format!(
            "    packet {layers} {{ {fields} }} => {} count {count}\n",
            if pass { "pass" } else { "drop" }
        );
    }
    src += "}\n";
    (src, n)
}

/// `p` the other way (a reply), with other TCP flags or echo kind sometimes; an error
/// quoting it, now and then.
fn reverse(p: Pkt, r: &mut Rng) -> Pkt {
    let p = match p {
        Pkt::Tcp {
            v6,
            src,
            dst,
            sport,
            dport,
            flags,
        } => Pkt::Tcp {
            v6,
            src: dst,
            dst: src,
            sport: dport,
            dport: sport,
            flags: if r.chance(50) {
                FLAGS[r.below(FLAGS.len())]
            } else {
                flags
            },
        },
        Pkt::Udp {
            v6,
            src,
            dst,
            sport,
            dport,
        } => Pkt::Udp {
            v6,
            src: dst,
            dst: src,
            sport: dport,
            dport: sport,
        },
        Pkt::Echo {
            v6,
            src,
            dst,
            request,
            id,
        } => Pkt::Echo {
            v6,
            src: dst,
            dst: src,
            request: if r.chance(80) { !request } else { request },
            id,
        },
        other => return other,
    };
    if r.chance(12) {
        let from = r.below(3);
        return Pkt::Error {
            from,
            quoted: Box::new(p),
        };
    }
    p
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and bpf(), unavailable at build time (CI=true runs it)"
)]
fn tracking_agrees_with_the_reference_over_random_sequences() {
    common::require_kernel();
    let seed = env_u64("POL_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("POL_DIFF_CASES").unwrap_or(DEFAULT_CASES);
    let dir = TempDir::new("pol_diff_state");
    let mut packets = 0;
    let mut reached = [0usize; 5];
    let mut failures = vec![];
    for i in 0..cases {
        let s = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (src, n) = case(s, &mut reached);
        packets += n;
        let file = dir.path().join(format!("case{i}.pol"));
        std::fs::write(&file, &src).expect("write");
        let o = pol(&["test", file.to_str().expect("utf-8")]);
        let out = text(&o);
        if !o.status.success() || !out.contains(&format!("{n} passed, 0 failed")) {
            failures.push(format!(
                "seed {s:#x} (POL_DIFF_SEED={s:#x} POL_DIFF_CASES=1):\n{out}\n{src}"
            ));
        }
    }
    let states: Vec<String> = STATES
        .iter()
        .zip(reached)
        .map(|((name, _), n)| format!("{n} {name}"))
        .collect();
    eprintln!(
        "differential_state: seed {seed:#x}: {cases} files, {packets} packets in sequence ({}), {} failed",
        states.join(", "),
        failures.len()
    );
    // Every state is reached, so each transition is compared many times.
    assert!(
        cases < 20 || reached.iter().all(|&n| n >= 20),
        "a state the sequences hardly reach: {}",
        states.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} files disagree with the reference; first:\n{}",
        failures.len(),
        failures[0]
    );
}
