//! Flow events (issue 15): the records a filter rule with `log` sends through the ring
//! buffer `pol_flows`, decoded and printed as `pol run` shows them (aligned columns, or
//! one JSON object per line), and the count of those the event rate suppressed.

use crate::direct::Object;
use aya::maps::{Map, MapData, RingBuf};
use pol_compiler::hir::state::{
    flow_event as ev, CT_ESTABLISHED, CT_INVALID, CT_NEW, CT_ORIGINAL, CT_RELATED, CT_REPLY,
    CT_UNTRACKED, FLOW_LOST, FLOW_RING,
};
use pol_compiler::hir::Hir;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEvent {
    pub time_ns: u64,
    pub ifindex: u32,
    pub filter: u16,
    pub rule: u32,
    pub drop: bool,
    /// 0 XDP, 1 tc ingress, 2 tc egress.
    pub hook: u8,
    pub ct: u32,
    pub version: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

fn u16_at(b: &[u8], off: i16) -> u16 {
    let o = off as usize;
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], off: i16) -> u32 {
    let o = off as usize;
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl FlowEvent {
    /// Decodes one ring-buffer record; `None` when it is not an event of this layout.
    pub fn decode(b: &[u8]) -> Option<FlowEvent> {
        if b.len() < ev::SIZE as usize {
            return None;
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&b[ev::SRC as usize..ev::SRC as usize + 16]);
        dst.copy_from_slice(&b[ev::DST as usize..ev::DST as usize + 16]);
        Some(FlowEvent {
            time_ns: u64::from(u32_at(b, ev::TIME)) | (u64::from(u32_at(b, ev::TIME + 4)) << 32),
            ifindex: u32_at(b, ev::IFINDEX),
            filter: u16_at(b, ev::FILTER),
            rule: u32_at(b, ev::RULE),
            drop: b[ev::VERDICT as usize] != 0,
            hook: b[ev::HOOK as usize],
            ct: u32_at(b, ev::CT),
            version: b[ev::VERSION as usize],
            proto: b[ev::PROTO as usize],
            sport: u16_at(b, ev::SPORT),
            dport: u16_at(b, ev::DPORT),
            src,
            dst,
        })
    }

    fn addr(&self, a: &[u8; 16]) -> Option<IpAddr> {
        match self.version {
            4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(*a))),
            _ => None,
        }
    }

    pub fn direction(&self) -> &'static str {
        match self.hook {
            0 => "xdp",
            1 => "ingress",
            _ => "egress",
        }
    }

    pub fn proto_name(&self) -> String {
        match (self.version, self.proto) {
            (0, _) => "-".into(),
            (_, 6) => "tcp".into(),
            (_, 17) => "udp".into(),
            (_, 1) => "icmp".into(),
            (_, 58) => "icmp6".into(),
            (_, 132) => "sctp".into(),
            (_, p) => p.to_string(),
        }
    }

    /// `new`, `established`, `related`, `invalid`, `untracked`, or `-` without tracking.
    pub fn ct_state(&self) -> &'static str {
        match self.ct & 0xff {
            CT_NEW => "new",
            CT_ESTABLISHED => "established",
            CT_RELATED => "related",
            CT_INVALID => "invalid",
            CT_UNTRACKED => "untracked",
            _ => "-",
        }
    }

    pub fn ct_direction(&self) -> Option<&'static str> {
        if self.ct & CT_REPLY != 0 {
            Some("reply")
        } else if self.ct & CT_ORIGINAL != 0 {
            Some("original")
        } else {
            None
        }
    }

    fn endpoint(&self, a: &[u8; 16], port: u16) -> String {
        let ports = matches!(self.proto, 6 | 17 | 132);
        match (self.addr(a), ports) {
            (Some(IpAddr::V6(x)), true) => format!("[{x}]:{port}"),
            (Some(x), true) => format!("{x}:{port}"),
            (Some(x), false) => x.to_string(),
            (None, _) => "-".into(),
        }
    }
}

/// What the printer needs to name things: interface names by index, and each filter's
/// name and rules (line and text; the default and malformed after them).
pub struct Names {
    ifaces: HashMap<u32, String>,
    filters: Vec<(String, Vec<(u32, String)>)>,
}

impl Names {
    /// `ifaces`: the interfaces the filters are attached to, with their indices.
    pub fn new(hir: &Hir, ifaces: &[(u32, String)]) -> Names {
        Names {
            ifaces: ifaces.iter().cloned().collect(),
            filters: hir
                .filters
                .iter()
                .map(|f| {
                    let mut rules: Vec<(u32, String)> =
                        f.rules.iter().map(|r| (r.line, r.text.clone())).collect();
                    rules.push((0, "default".into()));
                    rules.push((0, "malformed".into()));
                    (f.name.clone(), rules)
                })
                .collect(),
        }
    }

    fn iface(&self, i: u32) -> String {
        self.ifaces
            .get(&i)
            .cloned()
            .unwrap_or_else(|| format!("if{i}"))
    }

    fn rule(&self, e: &FlowEvent) -> (&str, u32, &str) {
        let Some((name, rules)) = self.filters.get(e.filter as usize) else {
            return ("?", 0, "?");
        };
        match rules.get(e.rule as usize) {
            Some((line, text)) => (name, *line, text),
            None => (name, 0, "?"),
        }
    }
}

/// The column header of `line`.
pub fn header() -> String {
    format!(
        "{:>9}  {:<8} {:<7} {:<4} {:<6} {:<5} {:<41} {:<41} {}",
        "TIME", "IFACE", "DIR", "VERD", "LINE", "PROTO", "SOURCE", "DESTINATION", "CT"
    )
}

/// One event as an aligned line; `t` is the event's time in seconds since the run began.
pub fn line(e: &FlowEvent, names: &Names, t: f64) -> String {
    let (_, line, _) = names.rule(e);
    let line = if line == 0 {
        if e.rule as usize + 2
            == names
                .filters
                .get(e.filter as usize)
                .map_or(0, |f| f.1.len())
        {
            "dflt".to_string()
        } else {
            "malf".to_string()
        }
    } else {
        line.to_string()
    };
    let ct = match e.ct_direction() {
        Some(d) if e.ct != 0 => format!("{} {d}", e.ct_state()),
        _ => e.ct_state().to_string(),
    };
    format!(
        "{t:>9.3}  {:<8} {:<7} {:<4} {:<6} {:<5} {:<41} {:<41} {ct}",
        names.iface(e.ifindex),
        e.direction(),
        if e.drop { "drop" } else { "pass" },
        line,
        e.proto_name(),
        e.endpoint(&e.src, e.sport),
        e.endpoint(&e.dst, e.dport),
    )
}

/// One event as a JSON object (`"event": "flow"`).
pub fn to_json(e: &FlowEvent, names: &Names, t: f64) -> Value {
    let (filter, line, text) = names.rule(e);
    let mut v = json!({
        "event": "flow",
        "t": (t * 1000.0).round() / 1000.0,
        "iface": names.iface(e.ifindex),
        "dir": e.direction(),
        "verdict": if e.drop { "drop" } else { "pass" },
        "filter": filter,
        "rule": e.rule,
        "line": line,
        "text": text,
        "proto": e.proto_name(),
        "ct": e.ct_state(),
    });
    if let Some(a) = e.addr(&e.src) {
        v["src"] = json!(a.to_string());
    }
    if let Some(a) = e.addr(&e.dst) {
        v["dst"] = json!(a.to_string());
    }
    if matches!(e.proto, 6 | 17 | 132) {
        v["sport"] = json!(e.sport);
        v["dport"] = json!(e.dport);
    }
    if let Some(d) = e.ct_direction() {
        v["ct_dir"] = json!(d);
    }
    v
}

/// The ring buffer of a loaded file that logs flows.
pub struct FlowStream {
    ring: RingBuf<MapData>,
}

impl FlowStream {
    /// `None` when the file logs no flows; an error is a sentence.
    pub fn open(obj: &dyn Object) -> Result<Option<FlowStream>, String> {
        let Ok(fd) = obj.map_fd(FLOW_RING) else {
            return Ok(None);
        };
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| format!("cannot duplicate the flow ring buffer's fd: {e}"))?;
        let data = MapData::from_fd(fd).map_err(|e| format!("flow ring buffer: {e}"))?;
        let ring =
            RingBuf::try_from(Map::RingBuf(data)).map_err(|e| format!("flow ring buffer: {e}"))?;
        Ok(Some(FlowStream { ring }))
    }

    /// Every event waiting in the ring buffer.
    pub fn drain(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(e) = FlowEvent::decode(&item) {
                out.push(e);
            }
        }
        out
    }
}

/// Events the rate limit suppressed so far (summed over CPUs).
pub fn suppressed(obj: &dyn Object) -> u64 {
    obj.map_entries(FLOW_LOST)
        .ok()
        .and_then(|es| es.into_iter().next())
        .and_then(|e| {
            e.1.get(..8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            })
        })
        .unwrap_or(0)
}

/// Places event times (`bpf_ktime_get_ns()`) in the run: the first event is placed when
/// it was read (at most one poll late), the rest after it by their kernel clock.
#[derive(Debug, Default)]
pub struct Clock {
    first: Option<(u64, f64)>,
}

impl Clock {
    /// Seconds since the run began of an event read at `now` (seconds since the run began).
    pub fn at(&mut self, e: &FlowEvent, now: f64) -> f64 {
        let (ns, t) = *self.first.get_or_insert((e.time_ns, now));
        t + (e.time_ns as f64 - ns as f64) / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_decodes_and_prints() {
        let mut b = vec![0u8; ev::SIZE as usize];
        b[ev::IFINDEX as usize] = 7;
        b[ev::RULE as usize] = 1;
        b[ev::VERDICT as usize] = 1;
        b[ev::HOOK as usize] = 1;
        b[ev::CT as usize] = CT_NEW as u8;
        b[ev::CT as usize + 1] = (CT_ORIGINAL >> 8) as u8;
        b[ev::VERSION as usize] = 4;
        b[ev::PROTO as usize] = 6;
        b[ev::SPORT as usize..ev::SPORT as usize + 2].copy_from_slice(&40000u16.to_le_bytes());
        b[ev::DPORT as usize..ev::DPORT as usize + 2].copy_from_slice(&22u16.to_le_bytes());
        b[ev::SRC as usize..ev::SRC as usize + 4].copy_from_slice(&[10, 0, 0, 2]);
        b[ev::DST as usize..ev::DST as usize + 4].copy_from_slice(&[10, 0, 0, 1]);
        let e = FlowEvent::decode(&b).expect("decodes");
        assert_eq!(e.ct_state(), "new");
        assert_eq!(e.ct_direction(), Some("original"));
        let (hir, _) = pol_compiler::hir::check::check(
            &pol_compiler::syntax::parse(
                "filter f on tc(\"eth0\", ingress) {\n    pass tcp.dport == 80\n    drop tcp.dport == 22 log\n    default drop\n}\n",
            )
            .0,
            "",
        );
        let names = Names::new(&hir, &[(7, "eth0".into())]);
        let l = line(&e, &names, 1.5);
        assert!(
            l.contains("eth0") && l.contains("ingress") && l.contains("drop"),
            "{l}"
        );
        assert!(
            l.contains("10.0.0.2:40000") && l.contains("10.0.0.1:22"),
            "{l}"
        );
        assert!(l.ends_with("new original"), "{l}");
        let j = to_json(&e, &names, 1.5);
        assert_eq!(j["verdict"], "drop");
        assert_eq!(j["sport"], 40000);
        assert_eq!(j["ct"], "new");
        assert!(FlowEvent::decode(&b[..10]).is_none());
    }
}
