//! Stateful tests: `rate(KEY, ..., burst(B), size(N)) > N/UNIT`, `ct.state`, `ct.direction`
//! and the `conntrack` settings (docs/stateful.md).

use super::Checker;
use crate::diag::Diagnostic;
use crate::hir::fields::Slot;
use crate::hir::state::{
    CtConfig, RateDef, CT_ESTABLISHED, CT_INVALID, CT_NEW, CT_ORIGINAL, CT_RELATED, CT_REPLY,
    CT_UNTRACKED, RATE_SIZE_DEFAULT, RATE_SIZE_MAX,
};
use crate::hir::{Cond, Test};
use crate::syntax::ast::{self, BinOp, Expr, ExprKind};

const SEC: u64 = 1_000_000_000;

fn rate_error(msg: impl Into<String>, e: &Expr, label: &str) -> Diagnostic {
    Diagnostic::error("E0511", msg, e.span.clone()).with_label(label.to_string())
}

impl Checker<'_> {
    /// `rate(ARGS) OP RHS`.
    pub(super) fn rate(&mut self, e: &Expr, op: BinOp, args: &[Expr], rhs: &Expr) -> Option<Cond> {
        let over = match op {
            BinOp::Gt | BinOp::Ge => true,
            BinOp::Lt | BinOp::Le => false,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        "a rate is compared with `>` (over the rate) or `<=` (within it)",
                        e.span.clone(),
                    )
                    .with_label("not `>`, `>=`, `<` or `<=`")
                    .with_help("write `rate(ip.src) > 100/s`"),
                );
                return None;
            }
        };
        let mut keys = Vec::new();
        let mut burst = None;
        let mut size = None;
        let mut ok = true;
        for a in args {
            match &a.kind {
                ExprKind::Path(p) => {
                    let Some(f) = self.field(p) else {
                        ok = false;
                        continue;
                    };
                    if !matches!(f.slot, Slot::Int { .. } | Slot::Addr { .. }) {
                        self.diags.push(
                            rate_error(
                                format!("`{}` cannot key a rate: it is a {}", f.name, f.ty),
                                a,
                                "not an address or integer field",
                            )
                            .with_help(
                                "key rates by addresses or ports: `rate(ip.src, tcp.dport)`",
                            ),
                        );
                        ok = false;
                    } else if keys
                        .iter()
                        .any(|k: &&crate::hir::fields::Field| k.name == f.name)
                    {
                        self.diags.push(rate_error(
                            format!("`{}` is a key twice", f.name),
                            a,
                            "repeated key",
                        ));
                        ok = false;
                    } else {
                        keys.push(f);
                    }
                }
                ExprKind::Call(p, inner) if matches!(p.dotted().as_str(), "burst" | "size") => {
                    let name = p.dotted();
                    let v = match inner.as_slice() {
                        [Expr {
                            kind: ExprKind::Int(v),
                            ..
                        }] if *v > 0 => *v,
                        _ => {
                            self.diags.push(rate_error(
                                format!("`{name}(..)` takes one positive integer"),
                                a,
                                "expected e.g. `burst(200)` or `size(10000)`",
                            ));
                            ok = false;
                            continue;
                        }
                    };
                    let slot = if name == "burst" {
                        &mut burst
                    } else {
                        &mut size
                    };
                    if slot.replace(v).is_some() {
                        self.diags.push(rate_error(
                            format!("`{name}(..)` is given twice"),
                            a,
                            "repeated",
                        ));
                        ok = false;
                    }
                }
                ExprKind::Error => ok = false,
                _ => {
                    self.diags.push(
                        rate_error("a rate is keyed by packet fields", a, "not a field")
                            .with_help("`rate(ip.src)`, `rate(ip.src, tcp.dport)`, `rate()`; options `burst(N)`, `size(N)`"),
                    );
                    ok = false;
                }
            }
        }
        let per_sec = self.rate_value(rhs);
        let size = match size {
            Some(n) if n > u64::from(RATE_SIZE_MAX) => {
                self.diags.push(rate_error(
                    format!("a rate table holds at most {RATE_SIZE_MAX} keys"),
                    e,
                    "`size(..)` too large",
                ));
                return None;
            }
            Some(n) if keys.is_empty() => {
                let _ = n;
                self.diags.push(rate_error(
                    "`rate()` without keys has one bucket: `size(..)` means nothing here",
                    e,
                    "remove `size(..)`",
                ));
                return None;
            }
            Some(n) => n as u32,
            None => RATE_SIZE_DEFAULT,
        };
        let (count, per_ns) = per_sec?;
        if !ok {
            return None;
        }
        let interval_ns = per_ns / count;
        if interval_ns == 0 {
            self.diags.push(rate_error(
                "this rate is more than one packet per nanosecond",
                rhs,
                "too fast to limit",
            ));
            return None;
        }
        // By default the whole count of one period may come at once (`100/s`: 100).
        let burst = burst.unwrap_or(count);
        let index = self.hir.rates.len();
        self.hir.rates.push(RateDef {
            map: format!("pol_rate{index}"),
            keys,
            interval_ns,
            burst,
            size,
            span: e.span.clone(),
        });
        Some(Cond::Test(Test::Rate { rate: index, over }))
    }

    /// `N/s`, `N/m`, `N/h` or `N/DURATION` (`5/10s`): the count and the period in ns.
    fn rate_value(&mut self, rhs: &Expr) -> Option<(u64, u64)> {
        let bad = |c: &mut Self| {
            c.diags.push(
                rate_error(
                    "a rate is a count per time unit",
                    rhs,
                    "expected `N/s`, `N/m`, `N/h` or `N/10s`",
                )
                .with_help("e.g. `rate(ip.src) > 100/s`"),
            );
            None
        };
        let ExprKind::Binary(BinOp::Div, n, unit) = &rhs.kind else {
            return bad(self);
        };
        let ExprKind::Int(count) = n.kind else {
            return bad(self);
        };
        let per = match &unit.kind {
            ExprKind::Path(p) => match p.dotted().as_str() {
                "s" => SEC,
                "m" => 60 * SEC,
                "h" => 3600 * SEC,
                _ => return bad(self),
            },
            ExprKind::Duration(ns) => *ns,
            _ => return bad(self),
        };
        if count == 0 {
            self.diags.push(rate_error(
                "a rate of 0 lets nothing through",
                rhs,
                "use a positive count, or a rule without `rate`",
            ));
            return None;
        }
        Some((count, per))
    }
}

const CT_STATES: [(&str, u32); 5] = [
    ("new", CT_NEW),
    ("established", CT_ESTABLISHED),
    ("related", CT_RELATED),
    ("invalid", CT_INVALID),
    ("untracked", CT_UNTRACKED),
];
const CT_DIRECTIONS: [(&str, u32); 2] = [("original", CT_ORIGINAL), ("reply", CT_REPLY)];

impl Checker<'_> {
    /// Whether `p` names a connection-tracking field.
    pub(super) fn is_ct(p: &ast::Path) -> bool {
        p.segments.first().is_some_and(|s| s.name == "ct")
    }

    /// `ct.state == V`, `ct.state != V`, `ct.state in {V, ..}`, `ct.direction == reply`.
    pub(super) fn ct(&mut self, e: &Expr, op: BinOp, p: &ast::Path, rhs: &Expr) -> Option<Cond> {
        let name = p.dotted();
        let (values, all): (&[(&str, u32)], u32) = match name.as_str() {
            "ct.state" => (
                &CT_STATES,
                CT_NEW | CT_ESTABLISHED | CT_RELATED | CT_INVALID | CT_UNTRACKED,
            ),
            "ct.direction" => (&CT_DIRECTIONS, CT_ORIGINAL | CT_REPLY),
            _ => {
                self.diags.push(
                    Diagnostic::error("E0302", format!("unknown field `{name}`"), p.span.clone())
                        .with_label("no such connection-tracking field")
                        .with_help("`ct.state` (new, established, related, invalid, untracked) or `ct.direction` (original, reply)"),
                );
                return None;
            }
        };
        let elems: Vec<&Expr> = match (&op, &rhs.kind) {
            (BinOp::In, ExprKind::SetLit(es)) => es.iter().collect(),
            (BinOp::Eq | BinOp::Ne, _) => vec![rhs],
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "E0403",
                        format!("`{name}` is compared with `==`, `!=` or `in {{..}}`"),
                        e.span.clone(),
                    )
                    .with_label("not ordered"),
                );
                return None;
            }
        };
        let mut mask = 0;
        for v in elems {
            let word = match &v.kind {
                ExprKind::Path(q) if q.segments.len() == 1 => q.dotted(),
                ExprKind::Error => return None,
                _ => String::new(),
            };
            match values.iter().find(|(n, _)| *n == word) {
                Some((_, bit)) => mask |= bit,
                None => {
                    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
                    self.diags.push(
                        Diagnostic::error(
                            "E0405",
                            format!("`{name}` is one of {}", names.join(", ")),
                            v.span.clone(),
                        )
                        .with_label("not a value of this field"),
                    );
                    return None;
                }
            }
        }
        if op == BinOp::Ne {
            mask = all & !mask;
        }
        self.hir.ct.get_or_insert_with(CtConfig::default);
        Some(Cond::Test(Test::Ct { mask }))
    }

    /// `const flowlog = { rate: 100/s, burst: 20 }`: how many flow events (`log`) a second
    /// the file sends; over it they are only counted as suppressed.
    pub(super) fn flowlog(&mut self, k: &ast::ConstDecl) {
        use crate::hir::state::{FlowRate, FLOW_RATE_MAX};
        let ExprKind::Record(fields) = &k.value.kind else {
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    "`flowlog` is a record of settings",
                    k.value.span.clone(),
                )
                .with_label("expected `{ rate: 1000/s, burst: 1000 }`"),
            );
            return;
        };
        let mut r = FlowRate::default();
        let mut burst = None;
        for (name, value) in fields {
            let Some(value) = value else { continue };
            match name.name.as_str() {
                "rate" => {
                    let Some((count, per_ns)) = self.rate_value(value) else {
                        continue;
                    };
                    if count.saturating_mul(1_000_000_000) / per_ns.max(1) > FLOW_RATE_MAX {
                        self.diags.push(
                            Diagnostic::error("E0402", format!("at most {FLOW_RATE_MAX} flow events a second"), value.span.clone())
                                .with_label("too many to read")
                                .with_help("the ring buffer holds about 3,600 events; log fewer packets instead"),
                        );
                        continue;
                    }
                    (r.count, r.per_ns) = (count, per_ns);
                }
                "burst" => match value.kind {
                    ExprKind::Int(n) if n > 0 && n <= FLOW_RATE_MAX => burst = Some(n),
                    _ => self.diags.push(
                        Diagnostic::error(
                            "E0402",
                            "`burst` is how many events may come at once",
                            value.span.clone(),
                        )
                        .with_label(format!("expected 1 to {FLOW_RATE_MAX}")),
                    ),
                },
                other => self.diags.push(
                    Diagnostic::error(
                        "E0405",
                        format!("`flowlog` has no setting `{other}`"),
                        name.span.clone(),
                    )
                    .with_label("unknown setting")
                    .with_help("settings: rate (e.g. 100/s), burst"),
                ),
            }
        }
        // As `rate(..)`: by default a whole period's count may come at once.
        r.burst = burst.unwrap_or(r.count);
        self.hir.flow_rate = r;
    }

    /// `const conntrack = { size: 100000, full: open, tcp: 1h, udp_new: 30s, .. }`: the
    /// file's connection-tracking table.
    pub(super) fn conntrack(&mut self, k: &ast::ConstDecl) {
        let ExprKind::Record(fields) = &k.value.kind else {
            self.diags.push(
                Diagnostic::error(
                    "E0401",
                    "`conntrack` is a record of settings",
                    k.value.span.clone(),
                )
                .with_label("expected `{ size: 65536, full: closed, tcp: 1h, .. }`"),
            );
            return;
        };
        let mut c = CtConfig::default();
        for (name, value) in fields {
            let Some(value) = value else { continue };
            let dur = |c: &mut Self, slot: &mut u64| match value.kind {
                ExprKind::Duration(ns) if ns > 0 => *slot = ns,
                _ => c.diags.push(
                    Diagnostic::error(
                        "E0401",
                        format!("`{}` is a timeout", name.name),
                        value.span.clone(),
                    )
                    .with_label("expected a duration such as `30s` or `1h`"),
                ),
            };
            match name.name.as_str() {
                "size" => match value.kind {
                    ExprKind::Int(n) if n > 0 && n <= u64::from(RATE_SIZE_MAX) => c.size = n as u32,
                    _ => self.diags.push(
                        Diagnostic::error("E0402", "`size` is the number of flows the table holds", value.span.clone())
                            .with_label(format!("expected 1 to {RATE_SIZE_MAX}")),
                    ),
                },
                "full" => match &value.kind {
                    ExprKind::Path(p) if p.dotted() == "open" => c.open = true,
                    ExprKind::Path(p) if p.dotted() == "closed" => c.open = false,
                    _ => self.diags.push(
                        Diagnostic::error("E0405", "`full` is `open` or `closed`", value.span.clone())
                            .with_label("what an unknown flow's packets are: taken up (open) or invalid (closed)"),
                    ),
                },
                "tcp_new" => dur(self, &mut c.tcp_new),
                "tcp" => dur(self, &mut c.tcp),
                "tcp_closing" => dur(self, &mut c.tcp_closing),
                "udp_new" => dur(self, &mut c.udp_new),
                "udp" => dur(self, &mut c.udp),
                "icmp" => dur(self, &mut c.icmp),
                other => self.diags.push(
                    Diagnostic::error("E0405", format!("`conntrack` has no setting `{other}`"), name.span.clone())
                        .with_label("unknown setting")
                        .with_help("settings: size, full, tcp_new, tcp, tcp_closing, udp_new, udp, icmp"),
                ),
            }
        }
        self.hir.ct = Some(c);
    }
}

impl Checker<'_> {
    /// A filter rule's action with its `log` option.
    pub(super) fn rule_action(
        &mut self,
        action: &ast::Action,
        counts: &[ast::CountClause],
        malformed: bool,
    ) -> Option<crate::hir::Action> {
        let mut a = self.action(action.verdict, counts, malformed)?;
        a.log = action.log.is_some();
        Some(a)
    }
}
