//! Actions and their counts: count keys and counter maps, and the counts a test case expects.

use super::Checker;
use crate::diag::{suggest, Diagnostic};
use crate::hir::fields::{Field, Slot};
use crate::hir::{Action, CounterDef, Ty};
use crate::syntax::ast::{self, ExprKind, Verdict};

impl Checker<'_> {
    pub(super) fn action(
        &mut self,
        verdict: Verdict,
        counts: &[ast::CountClause],
        malformed: bool,
    ) -> Option<Action> {
        let mut out = Vec::new();
        let mut ok = true;
        for c in counts {
            let mut l7 = None;
            let key = match &c.key {
                None => None,
                Some(k) if http_key(k).is_some() => {
                    let name = http_key(k).unwrap_or_default();
                    match crate::l7::http::CountKey::by_name(&name) {
                        Some(_) if malformed => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{name}` cannot key a count of malformed packets"),
                                    k.span.clone(),
                                )
                                .with_label("a malformed packet holds no request pol read")
                                .with_help("count malformed packets with a plain `count NAME`"),
                            );
                            ok = false;
                            continue;
                        }
                        Some(key) => {
                            l7 = Some(key);
                            None
                        }
                        None => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{name}` cannot key a count"),
                                    k.span.clone(),
                                )
                                .with_label("not a countable HTTP field")
                                .with_help("count by `http.method`, `http.path` or `http.host`"),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
                Some(k) => {
                    let field = match &k.kind {
                        ExprKind::Path(p) => self.field(p),
                        _ => None,
                    };
                    match field {
                        Some(f) if malformed => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{}` cannot key a count of malformed packets", f.name),
                                    k.span.clone(),
                                )
                                .with_label("a malformed packet's fields were not parsed")
                                .with_help("count malformed packets with a plain `count NAME`"),
                            );
                            ok = false;
                            continue;
                        }
                        Some(f) if matches!(f.slot, Slot::Int { .. } | Slot::Addr { .. }) => {
                            Some(f)
                        }
                        Some(f) => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0506",
                                    format!("`{}` cannot key a count", f.name),
                                    k.span.clone(),
                                )
                                .with_label(format!("a {} field", f.ty))
                                .with_help("count by an address, port or integer field"),
                            );
                            ok = false;
                            continue;
                        }
                        None => {
                            if !matches!(k.kind, ExprKind::Path(_)) {
                                self.diags.push(
                                    Diagnostic::error(
                                        "E0506",
                                        "a count is keyed by a packet field",
                                        k.span.clone(),
                                    )
                                    .with_label("not a field"),
                                );
                            }
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            match self.counter_index.get(&c.map.name).copied() {
                Some(i)
                    if self.hir.counters[i].key.map(|f| f.slot) != key.map(|f| f.slot)
                        || self.hir.counters[i].key.map(|f| f.ty) != key.map(|f| f.ty)
                        || self.hir.counters[i].l7 != l7 =>
                {
                    let prev = &self.hir.counters[i];
                    let say = |k: Option<&Field>, l7: Option<crate::l7::http::CountKey>| {
                        k.map(|f| f.name)
                            .or(l7.map(|k| k.name()))
                            .map(|n| format!("keyed by `{n}`"))
                            .unwrap_or_else(|| "without a key".into())
                    };
                    let d = Diagnostic::error(
                        "E0507",
                        format!("count `{}` is used with different keys", c.map.name),
                        c.span.clone(),
                    )
                    .with_label(say(key, l7))
                    .with_secondary(prev.span.clone(), say(prev.key, prev.l7));
                    self.diags.push(d);
                    ok = false;
                }
                Some(i) => out.push(i),
                None => {
                    if self.names.contains_key(&c.map.name) {
                        self.diags.push(
                            Diagnostic::error(
                                "E0304",
                                format!("`{}` is already a set or constant", c.map.name),
                                c.map.span.clone(),
                            )
                            .with_label("pick another name for this count"),
                        );
                        ok = false;
                        continue;
                    }
                    self.hir.counters.push(CounterDef {
                        name: c.map.name.clone(),
                        key,
                        l7,
                        span: c.span.clone(),
                    });
                    out.push(self.hir.counters.len() - 1);
                    self.counter_index
                        .insert(c.map.name.clone(), self.hir.counters.len() - 1);
                }
            }
        }
        ok.then_some(Action {
            verdict,
            counts: out,
            log: false,
        })
    }

    /// `=> drop count NAME[KEY]` in a test: the counter exists and the key fits it.
    pub(super) fn test_count(&mut self, count: &ast::CountClause) {
        let Some(counter) = self.hir.counters.iter().find(|k| k.name == count.map.name) else {
            let mut d = Diagnostic::error(
                "E0510",
                format!("no filter of this file counts into `{}`", count.map.name),
                count.map.span.clone(),
            )
            .with_label("unknown counter");
            let near = suggest::nearest(
                &count.map.name,
                self.hir.counters.iter().map(|k| k.name.as_str()),
                2,
            );
            if !near.is_empty() {
                d = d.with_help(format!("did you mean {}?", suggest::one_of(&near)));
            }
            self.diags.push(d);
            return;
        };
        if let (Some(k), Some(key)) = (counter.l7, &count.key) {
            self.diags.push(
                Diagnostic::error(
                    "E0510",
                    format!(
                        "`{}` counts per `{}`: test cases check its total only",
                        count.map.name,
                        k.name()
                    ),
                    key.span.clone(),
                )
                .with_label("no per-key expectation for HTTP keys")
                .with_help(format!("write `count {}`", count.map.name)),
            );
            return;
        }
        match (counter.key, &count.key) {
            (None, None) => {}
            (Some(f), Some(k)) => {
                let ty = if f.ty.is_addr() { Ty::Ip } else { f.ty };
                if self.values(k, ty, false).is_none() {
                    return;
                }
                let fam_ok = !matches!(
                    (f.ty, &k.kind),
                    (Ty::Ip4, ExprKind::Ip6(_)) | (Ty::Ip6, ExprKind::Ip4(_))
                );
                if !fam_ok {
                    self.diags.push(
                        Diagnostic::error(
                            "E0510",
                            format!("`{}` is keyed by `{}` ({})", count.map.name, f.name, f.ty),
                            k.span.clone(),
                        )
                        .with_label("wrong address family"),
                    );
                }
            }
            (Some(f), None) => self.diags.push(
                Diagnostic::error(
                    "E0510",
                    format!(
                        "`{}` counts per `{}`: say which entry",
                        count.map.name, f.name
                    ),
                    count.span.clone(),
                )
                .with_label(format!("write `count {}[VALUE]`", count.map.name)),
            ),
            (None, Some(k)) => self.diags.push(
                Diagnostic::error(
                    "E0510",
                    format!("`{}` is a plain counter, without keys", count.map.name),
                    k.span.clone(),
                )
                .with_label("remove the key"),
            ),
        }
    }
}

/// The dotted name of a count key that names an HTTP field (`http.path`).
fn http_key(k: &ast::Expr) -> Option<String> {
    match &k.kind {
        ExprKind::Path(p) if p.segments.first().is_some_and(|s| s.name == "http") => {
            Some(p.dotted())
        }
        _ => None,
    }
}
