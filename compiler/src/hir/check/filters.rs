//! Filters: their rules, `default` and malformed actions, and the hook they attach to.

use super::Checker;
use crate::diag::Diagnostic;
use crate::hir::{Action, Filter, Hook, Rule};
use crate::syntax::ast::{self, ExprKind, FilterRule, Span, Verdict};

impl Checker<'_> {
    pub(super) fn filter(&mut self, f: &ast::Filter) {
        if !f.header_parsed {
            // The header's error is reported; the rules are still checked, so an editor
            // shows their errors too. Nothing of it reaches the HIR.
            for r in &f.rules {
                match r {
                    FilterRule::Match {
                        action,
                        cond,
                        counts,
                        ..
                    } => {
                        self.cond(cond);
                        self.rule_action(action, counts, false);
                    }
                    FilterRule::Default { action, counts, .. } => {
                        self.rule_action(action, counts, false);
                    }
                    FilterRule::Malformed { action, counts, .. } => {
                        self.rule_action(action, counts, true);
                    }
                    FilterRule::Option { words, .. } => {
                        self.filter_option(words);
                    }
                    FilterRule::Error(_) => {}
                }
            }
            return;
        }
        if self.filter_names.contains(&f.name.name) {
            self.diags.push(
                Diagnostic::error(
                    "E0508",
                    format!("filter `{}` is declared twice", f.name.name),
                    f.name.span.clone(),
                )
                .with_label("second filter of that name"),
            );
            return;
        }
        let hook = self.hook(&f.hook);
        let mut rules = Vec::new();
        let mut default: Option<(Action, Span)> = None;
        let mut malformed = None;
        let mut incomplete = None;
        for r in &f.rules {
            match r {
                FilterRule::Match {
                    action,
                    cond,
                    counts,
                    span,
                } => {
                    if let Some((_, dspan)) = &default {
                        self.diags.push(
                            Diagnostic::error(
                                "E0505",
                                "this rule comes after `default` and is never reached",
                                span.clone(),
                            )
                            .with_label("unreachable")
                            .with_secondary(
                                dspan.clone(),
                                "every packet that gets here stops at this default",
                            ),
                        );
                        continue;
                    }
                    let c = self.cond(cond);
                    let a = self.rule_action(action, counts, false);
                    if let (Some(cond), Some(action)) = (c, a) {
                        let line = self.line_starts.partition_point(|&s| s <= span.start) as u32;
                        let text = self
                            .source
                            .get(span.clone())
                            .unwrap_or("")
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        rules.push(Rule {
                            index: rules.len() as u32,
                            cond,
                            action,
                            span: span.clone(),
                            line,
                            text,
                        });
                    }
                }
                FilterRule::Default {
                    action,
                    counts,
                    span,
                } => {
                    if let Some((_, prev)) = &default {
                        self.diags.push(
                            Diagnostic::error("E0504", "a filter has one `default`", span.clone())
                                .with_label("second default")
                                .with_secondary(prev.clone(), "first default here"),
                        );
                        continue;
                    }
                    if let Some(a) = self.rule_action(action, counts, false) {
                        default = Some((a, span.clone()));
                    }
                }
                FilterRule::Malformed { action, counts, .. } => {
                    malformed = self.rule_action(action, counts, true);
                }
                FilterRule::Option { words, action, .. } => {
                    if self.filter_option(words) {
                        incomplete = Some(action.verdict);
                    }
                }
                FilterRule::Error(_) => {}
            }
        }
        let Some((default, _)) = default else {
            self.diags.push(
                Diagnostic::error(
                    "E0503",
                    format!("filter `{}` has no `default`", f.name.name),
                    f.name.span.clone(),
                )
                .with_label("what happens to a packet no rule matches?")
                .with_help("end the filter with `default pass` or `default drop`"),
            );
            return;
        };
        let Some(hook) = hook else { return };
        self.filter_names.insert(f.name.name.clone());
        let filter = Filter {
            name: f.name.name.clone(),
            hook,
            rules,
            default,
            malformed: malformed.unwrap_or(Action {
                verdict: Verdict::Drop,
                counts: vec![],
                log: false,
            }),
            span: f.span.clone(),
            incomplete,
        };
        if let Some(d) = crate::l7::http::check_filter(&filter) {
            self.diags.push(d);
            return;
        }
        self.hir.filters.push(filter);
    }

    /// A filter option; the one there is: `l7 incomplete pass|drop`.
    fn filter_option(&mut self, words: &[ast::Ident]) -> bool {
        let w: Vec<&str> = words.iter().map(|w| w.name.as_str()).collect();
        if w == ["l7", "incomplete"] {
            return true;
        }
        let span = match (words.first(), words.last()) {
            (Some(a), Some(b)) => a.span.start..b.span.end,
            _ => 0..0,
        };
        self.diags.push(
            Diagnostic::error(
                "E0556",
                format!("`{}` is not a filter option", w.join(" ")),
                span,
            )
            .with_label("unknown option")
            .with_help("filter options: `l7 incomplete pass`, `l7 incomplete drop` (docs/l7.md)"),
        );
        false
    }

    fn hook(&mut self, h: &ast::Hook) -> Option<Hook> {
        let args = h.args.as_deref().unwrap_or(&[]);
        let iface = |c: &mut Self| -> Option<String> {
            match args.first().map(|a| &a.kind) {
                Some(ExprKind::Str(s)) if valid_iface(s) => Some(s.clone()),
                Some(ExprKind::Str(s)) => {
                    c.diags.push(
                        Diagnostic::error(
                            "E0502",
                            format!("`{s}` is not a valid interface name"),
                            args[0].span.clone(),
                        )
                        .with_label("1 to 15 characters, no `/`, `:` or white space"),
                    );
                    None
                }
                _ => {
                    c.diags.push(
                        Diagnostic::error(
                            "E0502",
                            format!("`{}` needs an interface name", h.kind.name),
                            h.span.clone(),
                        )
                        .with_label("missing interface")
                        .with_help(format!(
                            "write `{}(\"eth0\"{})`",
                            h.kind.name,
                            if h.kind.name == "tc" { ", ingress" } else { "" }
                        )),
                    );
                    None
                }
            }
        };
        match h.kind.name.as_str() {
            "xdp" => {
                let i = iface(self)?;
                if let Some(extra) = args.get(1) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0502",
                            "`xdp` takes one argument, the interface",
                            extra.span.clone(),
                        )
                        .with_label("unexpected argument"),
                    );
                    return None;
                }
                Some(Hook::Xdp { iface: i })
            }
            "tc" => {
                let i = iface(self)?;
                let dir = match args.get(1).map(|a| &a.kind) {
                    Some(ExprKind::Path(p)) if p.dotted() == "ingress" => true,
                    Some(ExprKind::Path(p)) if p.dotted() == "egress" => false,
                    Some(_) => {
                        self.diags.push(
                            Diagnostic::error(
                                "E0502",
                                "the direction of `tc` is `ingress` or `egress`",
                                args[1].span.clone(),
                            )
                            .with_label("not a direction"),
                        );
                        return None;
                    }
                    None => {
                        self.diags.push(
                            Diagnostic::error("E0502", "`tc` needs a direction", h.span.clone())
                                .with_label("missing `ingress` or `egress`")
                                .with_help(format!("write `tc(\"{i}\", ingress)`")),
                        );
                        return None;
                    }
                };
                Some(Hook::Tc {
                    iface: i,
                    ingress: dir,
                })
            }
            other => {
                self.diags.push(
                    Diagnostic::error(
                        "E0501",
                        format!("a filter cannot attach to `{other}`"),
                        h.kind.span.clone(),
                    )
                    .with_label("unknown hook for a filter")
                    .with_help(
                        "filters attach to `xdp(\"IFACE\")` or `tc(\"IFACE\", ingress|egress)`",
                    ),
                );
                None
            }
        }
    }
}

fn valid_iface(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        && s != "."
        && s != ".."
}
