//! The printer: the tree back to text in the canonical style, comments put back by
//! position (see the module documentation of `fmt` for the style).

use super::WIDTH;
use crate::syntax::ast::*;

/// Column (after the indentation) where a rule's `count` clauses start.
const COUNT_COLUMN: usize = 47;
const INDENT: &str = "    ";

pub(super) fn print(source: &str, file: &File, comments: &[Span]) -> String {
    let mut p = Printer {
        src: source,
        comments,
        next: 0,
        lines: Vec::new(),
        last_end: 0,
        depth: 0,
    };
    let mut prev_block = false;
    for item in &file.items {
        let span = item_span(item);
        let block = matches!(
            item,
            Item::Filter(_) | Item::Probe(_) | Item::Rule(_) | Item::Test(_)
        );
        let commented = p.comments_before(span.start, prev_block || block);
        p.blank_if(p.gap(span.start) || (!commented && (prev_block || block)));
        p.item(item);
        p.trailing_comment();
        prev_block = block;
    }
    p.comments_before(source.len(), prev_block);
    let mut out = p.lines.join("\n");
    while out.starts_with('\n') {
        out.remove(0);
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

struct Printer<'a> {
    src: &'a str,
    comments: &'a [Span],
    /// The first comment not printed yet.
    next: usize,
    lines: Vec<String>,
    /// End of the last source text printed (for blank lines and trailing comments).
    last_end: usize,
    depth: usize,
}

fn item_span(item: &Item) -> Span {
    match item {
        Item::Import(i) => i.span.clone(),
        Item::Const(k) => k.span.clone(),
        Item::Set(s) => s.span.clone(),
        Item::Macro(m) => m.span.clone(),
        Item::Filter(f) => f.span.clone(),
        Item::Probe(p) => p.span.clone(),
        Item::Rule(r) => r.span.clone(),
        Item::Test(t) => t.span.clone(),
    }
}

impl<'a> Printer<'a> {
    fn text(&self, s: &Span) -> &'a str {
        self.src.get(s.clone()).unwrap_or("")
    }

    fn push(&mut self, line: String) {
        let indent = INDENT.repeat(self.depth);
        self.lines
            .push(format!("{indent}{line}").trim_end().to_string());
    }

    /// True when the source has a blank line between the last printed text and `at`.
    fn gap(&self, at: usize) -> bool {
        let between = self.src.get(self.last_end.min(at)..at).unwrap_or("");
        between.matches('\n').count() >= 2
    }

    /// A blank line, unless at the start of the file or of a block, or after one.
    fn blank_if(&mut self, want: bool) {
        let after_open = self
            .lines
            .last()
            .is_none_or(|l| l.ends_with('{') || l.is_empty());
        if want && !after_open {
            self.lines.push(String::new());
        }
    }

    /// Prints the comments that start before `at`: those on the line of the last printed
    /// text after it, the others on lines of their own.
    /// Returns true when it printed a comment on a line of its own.
    fn comments_before(&mut self, at: usize, force_blank_first: bool) -> bool {
        let mut first = true;
        let mut own_line = false;
        while let Some(c) = self
            .comments
            .get(self.next)
            .filter(|c| c.start < at)
            .cloned()
        {
            self.next += 1;
            let text = self.text(&c).trim_end().to_string();
            let same_line = !self
                .src
                .get(self.last_end.min(c.start)..c.start)
                .unwrap_or("\n")
                .contains('\n');
            if same_line && !self.lines.is_empty() && self.last_end > 0 {
                if let Some(l) = self.lines.last_mut() {
                    l.push(' ');
                    l.push_str(&text);
                }
            } else {
                self.blank_if(self.gap(c.start) || (first && force_blank_first));
                self.push(text);
                own_line = true;
            }
            first = false;
            self.last_end = c.end;
        }
        own_line
    }

    /// A comment after the last printed text, on the same line.
    fn trailing_comment(&mut self) {
        if let Some(c) = self.comments.get(self.next) {
            let between = self
                .src
                .get(self.last_end.min(c.start)..c.start)
                .unwrap_or("\n");
            if !between.contains('\n') && between.trim().is_empty() {
                self.comments_before(c.end, false);
            }
        }
    }

    /// True when a comment lies inside `span` (such a node is printed as written).
    fn has_comment_inside(&self, span: &Span) -> bool {
        self.comments
            .get(self.next..)
            .unwrap_or(&[])
            .iter()
            .take_while(|c| c.start < span.end)
            .any(|c| c.start > span.start)
    }

    /// Prints a node with comments inside it as written, re-indented as a whole.
    fn verbatim(&mut self, span: &Span) {
        let text = self.text(span);
        let lines: Vec<&str> = text.lines().collect();
        let first_indent = self
            .src
            .get(..span.start)
            .map(|s| s.len() - s.rfind('\n').map_or(0, |i| i + 1))
            .unwrap_or(0);
        for (i, l) in lines.iter().enumerate() {
            if i == 0 {
                self.push(l.trim().to_string());
            } else {
                // Keep the line's indentation relative to the node's first line.
                let lead = l.len() - l.trim_start().len();
                let extra = " ".repeat(lead.saturating_sub(first_indent));
                let indent = INDENT.repeat(self.depth);
                self.lines.push(
                    format!("{indent}{extra}{}", l.trim())
                        .trim_end()
                        .to_string(),
                );
            }
        }
        while self
            .comments
            .get(self.next)
            .is_some_and(|c| c.start < span.end)
        {
            self.next += 1;
        }
        self.last_end = span.end;
    }

    fn item(&mut self, item: &Item) {
        let span = item_span(item);
        match item {
            Item::Set(s) if !self.has_comment_inside(&(s.span.start..s.value.span.start)) => {
                self.set(s)
            }
            _ if self.has_comment_inside(&span) && !is_block(item) => self.verbatim(&span),
            Item::Import(i) => {
                self.push(format!("import {}", i.path.dotted()));
                self.last_end = i.span.end;
            }
            Item::Const(k) => {
                let ty =
                    k.ty.as_ref()
                        .map(|t| format!(": {}", ty(t)))
                        .unwrap_or_default();
                self.push(format!(
                    "const {}{ty} = {}",
                    k.name.name,
                    self.expr(&k.value)
                ));
                self.last_end = k.span.end;
            }
            Item::Set(s) => self.set(s),
            Item::Macro(m) => {
                let kw = if m.list { "list" } else { "macro" };
                self.push(format!("{kw} {} = {}", m.name.name, self.expr(&m.value)));
                self.last_end = m.span.end;
            }
            Item::Filter(f) => {
                let head = format!("filter {} on {}", f.name.name, self.hook(&f.hook));
                let spans: Vec<Span> = f.rules.iter().map(rule_span).collect();
                self.block(head, &f.hook.span, &spans, &f.span, |p, i| {
                    if let Some(r) = f.rules.get(i) {
                        p.rule(r)
                    }
                });
            }
            Item::Probe(Probe {
                name,
                hook,
                body,
                span,
                ..
            })
            | Item::Rule(SecRule {
                name,
                hook,
                body,
                span,
                ..
            }) => {
                let word = if matches!(item, Item::Probe(_)) {
                    "probe"
                } else {
                    "rule"
                };
                // An anonymous probe (`probe tracepoint(..) { .. }`) has an empty name.
                let head = if name.name.is_empty() {
                    format!("{word} {}", self.hook(hook))
                } else {
                    format!("{word} {} on {}", name.name, self.hook(hook))
                };
                let spans: Vec<Span> = body.iter().map(stmt_span).collect();
                self.block(head, &hook.span, &spans, span, |p, i| {
                    if let Some(s) = body.get(i) {
                        p.stmt(s)
                    }
                });
            }
            Item::Test(t) => {
                let head = format!("test {} on {}", self.text(&t.name_span), t.target.name);
                let spans: Vec<Span> = t.cases.iter().map(case_span).collect();
                self.block(head, &t.target.span, &spans, &t.span, |p, i| {
                    if let Some(c) = t.cases.get(i) {
                        p.case(c)
                    }
                });
            }
        }
    }

    /// `HEAD {`, one line per child, `}`. `head_end` is the last node of the header.
    fn block(
        &mut self,
        head: String,
        head_end: &Span,
        children: &[Span],
        span: &Span,
        mut child: impl FnMut(&mut Self, usize),
    ) {
        let header = span.start..head_end.end;
        if self.has_comment_inside(&header) {
            return self.verbatim(span);
        }
        self.push(format!("{head} {{"));
        // The `{` itself.
        self.last_end = self
            .src
            .get(head_end.end..span.end)
            .and_then(|s| s.find('{'))
            .map_or(head_end.end, |i| head_end.end + i + 1);
        self.trailing_comment();
        self.depth += 1;
        for (i, s) in children.iter().enumerate() {
            self.comments_before(s.start, false);
            self.blank_if(self.gap(s.start));
            if self.has_comment_inside(s) {
                self.verbatim(s);
            } else {
                child(self, i);
                self.last_end = s.end;
            }
            self.trailing_comment();
        }
        // Comments before the closing brace belong inside the block.
        self.comments_before(span.end.saturating_sub(1), false);
        self.depth -= 1;
        self.push("}".to_string());
        self.last_end = span.end;
    }

    fn set(&mut self, s: &SetDecl) {
        let head = format!("set {}: {} = ", s.name.name, ty(&s.ty));
        let ExprKind::SetLit(elems) = &s.value.kind else {
            self.push(format!("{head}{}", self.expr(&s.value)));
            self.last_end = s.span.end;
            return;
        };
        let flat = format!("{head}{}", self.expr(&s.value));
        let written_flat = !self.text(&s.value.span).contains('\n');
        if written_flat && !self.has_comment_inside(&s.value.span) && flat.len() <= WIDTH {
            self.push(flat);
            self.last_end = s.span.end;
            return;
        }
        self.push(format!("{head}{{"));
        self.last_end = s.value.span.start + 1;
        self.trailing_comment();
        self.depth += 1;
        let fill = written_flat;
        let mut line = String::new();
        let mut line_src_end = self.last_end;
        for (i, e) in elems.iter().enumerate() {
            let text = self.expr(e);
            let last = i + 1 == elems.len();
            let comment_before = self
                .comments
                .get(self.next)
                .is_some_and(|c| c.start < e.span.start);
            let same_src_line = !self
                .src
                .get(line_src_end.min(e.span.start)..e.span.start)
                .unwrap_or("\n")
                .contains('\n');
            let fits = INDENT.len() * self.depth + line.len() + 2 + text.len() < WIDTH;
            let joins =
                !line.is_empty() && !comment_before && if fill { fits } else { same_src_line };
            if !line.is_empty() && !joins {
                self.push(std::mem::take(&mut line) + ",");
                self.last_end = line_src_end;
                self.trailing_comment_after_comma();
            }
            if line.is_empty() {
                self.comments_before(e.span.start, false);
                line = text;
            } else {
                line.push_str(", ");
                line.push_str(&text);
            }
            line_src_end = e.span.end;
            if last {
                self.push(std::mem::take(&mut line));
                self.last_end = line_src_end;
                self.trailing_comment_after_comma();
            }
        }
        self.comments_before(s.value.span.end.saturating_sub(1), false);
        self.depth -= 1;
        self.push("}".to_string());
        self.last_end = s.span.end;
    }

    /// A comment after an element and its comma on the same line.
    fn trailing_comment_after_comma(&mut self) {
        if let Some(c) = self.comments.get(self.next) {
            let between = self
                .src
                .get(self.last_end.min(c.start)..c.start)
                .unwrap_or("\n");
            if !between.contains('\n')
                && between
                    .trim_matches(|ch: char| ch.is_whitespace() || ch == ',')
                    .is_empty()
            {
                self.comments_before(c.end, false);
            }
        }
    }

    fn rule(&mut self, r: &FilterRule) {
        let (head, counts) = match r {
            FilterRule::Match {
                action,
                cond,
                counts,
                ..
            } => (format!("{} {}", verdict(action), self.expr(cond)), counts),
            FilterRule::Default { action, counts, .. } => {
                (format!("default {}", verdict(action)), counts)
            }
            FilterRule::Malformed { action, counts, .. } => {
                (format!("malformed {}", verdict(action)), counts)
            }
            FilterRule::Option { words, action, .. } => {
                let w: Vec<&str> = words.iter().map(|w| w.name.as_str()).collect();
                (format!("{} {}", w.join(" "), verdict(action)), &Vec::new())
            }
            FilterRule::Error(span) => (self.text(span).trim().to_string(), &Vec::new()),
        };
        let log = match r {
            FilterRule::Match { action, .. }
            | FilterRule::Default { action, .. }
            | FilterRule::Malformed { action, .. } => action.log.as_ref(),
            FilterRule::Option { .. } | FilterRule::Error(_) => None,
        };
        let log = log.map(|w| format!(" {}", w.name)).unwrap_or_default();
        if counts.is_empty() {
            return self.push(format!("{head}{log}"));
        }
        let pad = COUNT_COLUMN.saturating_sub(head.len()).max(1);
        self.push(format!(
            "{head}{}{}{log}",
            " ".repeat(pad),
            self.counts(counts)
        ));
    }

    fn counts(&self, counts: &[CountClause]) -> String {
        counts
            .iter()
            .map(|c| match &c.key {
                Some(k) => format!("count {}[{}]", c.map.name, self.expr(k)),
                None => format!("count {}", c.map.name),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// ` by a, b into name` of an aggregation, each part only when written.
    fn by_into(&self, by: &[Expr], into: &Option<Ident>) -> String {
        let mut out = String::new();
        if !by.is_empty() {
            out.push_str(&format!(" by {}", self.list(by)));
        }
        if let Some(into) = into {
            out.push_str(&format!(" into {}", into.name));
        }
        out
    }

    fn stmt(&mut self, s: &Stmt) {
        let line = match s {
            Stmt::Where(e, _) => format!("where {}", self.expr(e)),
            Stmt::When(e, _) => format!("when {}", self.expr(e)),
            Stmt::Unless(e, _) => format!("unless {}", self.expr(e)),
            Stmt::Emit(e, _) => format!("emit {}", self.expr(e)),
            Stmt::Action(es, _) => format!("action {}", self.list(es)),
            Stmt::Count { by, into, .. } => format!("count{}", self.by_into(by, into)),
            Stmt::Aggregate {
                func,
                args,
                by,
                into,
                ..
            } => {
                let tail = self.by_into(by, into);
                format!("{}({}){tail}", func.name, self.list(args))
            }
            Stmt::Assign {
                map, keys, value, ..
            } => format!("{}[{}] = {}", map.name, self.list(keys), self.expr(value)),
            Stmt::Delete { map, keys, .. } => format!("delete {}[{}]", map.name, self.list(keys)),
            Stmt::Command { verb, maps, .. } => {
                let names: Vec<&str> = maps.iter().map(|m| m.name.as_str()).collect();
                format!("{} {}", verb.name, names.join(", "))
            }
            Stmt::Error(span) => self.text(span).trim().to_string(),
        };
        self.push(line);
    }

    fn case(&mut self, c: &TestCase) {
        let line = match c {
            TestCase::Packet {
                layers,
                fields,
                expect,
                counts,
                ..
            } => {
                let layers: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(n, e)| format!("{}: {}", n.name, self.expr(e)))
                    .collect();
                let fields = if fields.is_empty() {
                    "{}".to_string()
                } else {
                    format!("{{ {} }}", fields.join(", "))
                };
                let mut line = format!(
                    "packet {} {fields} => {}",
                    layers.join(" "),
                    verdict(expect)
                );
                if !counts.is_empty() {
                    line.push(' ');
                    line.push_str(&self.counts(counts));
                }
                line
            }
            TestCase::Error(span) => self.text(span).trim().to_string(),
        };
        self.push(line);
    }

    fn hook(&self, h: &Hook) -> String {
        match &h.args {
            None => h.kind.name.clone(),
            Some(args) => format!("{}({})", h.kind.name, self.list(args)),
        }
    }

    fn list(&self, es: &[Expr]) -> String {
        es.iter()
            .map(|e| self.expr(e))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An expression on one line, with the parentheses it was written with.
    fn expr(&self, e: &Expr) -> String {
        let inner = match &e.kind {
            ExprKind::Path(p) => p.dotted(),
            ExprKind::Range(a, b) => format!("{}..{}", self.expr(a), self.expr(b)),
            ExprKind::SetLit(es) if es.is_empty() => "{}".to_string(),
            ExprKind::SetLit(es) => format!("{{ {} }}", self.list(es)),
            ExprKind::List(es) => format!("[{}]", self.list(es)),
            // A rate (`100/s`, `5/10s`) keeps its count and unit together.
            ExprKind::Binary(BinOp::Div, a, b)
                if matches!(a.kind, ExprKind::Int(_)) && is_rate_unit(b) =>
            {
                format!("{}/{}", self.expr(a), self.expr(b))
            }
            ExprKind::Binary(op, a, b) => {
                format!("{} {} {}", self.expr(a), binop(*op), self.expr(b))
            }
            ExprKind::Not(a) => format!("not {}", self.expr(a)),
            ExprKind::Call(p, args) => format!("{}({})", p.dotted(), self.list(args)),
            ExprKind::Index(p, keys) => format!("{}[{}]", p.dotted(), self.list(keys)),
            ExprKind::Record(fields) => {
                let fs: Vec<String> = fields
                    .iter()
                    .map(|(n, v)| match v {
                        Some(v) => format!("{}: {}", n.name, self.expr(v)),
                        None => n.name.clone(),
                    })
                    .collect();
                format!("{{ {} }}", fs.join(", "))
            }
            // Literals as written: hex stays hex, escapes stay escapes.
            ExprKind::Int(_)
            | ExprKind::Duration(_)
            | ExprKind::Str(_)
            | ExprKind::Bool(_)
            | ExprKind::Ip4(_)
            | ExprKind::Ip6(_)
            | ExprKind::Cidr4(..)
            | ExprKind::Cidr6(..)
            | ExprKind::Mac(_)
            | ExprKind::Error => {
                let n = self.parens(e);
                let mut t = self.text(&e.span).trim();
                for _ in 0..n {
                    t = t.strip_prefix('(').unwrap_or(t).trim_start();
                    t = t.strip_suffix(')').unwrap_or(t).trim_end();
                }
                return format!("{}{t}{}", "(".repeat(n), ")".repeat(n));
            }
        };
        let n = self.parens(e);
        format!("{}{inner}{}", "(".repeat(n), ")".repeat(n))
    }

    /// How many pairs of parentheses wrap `e` (they widen its span).
    fn parens(&self, e: &Expr) -> usize {
        let natural = match &e.kind {
            ExprKind::Binary(_, a, _) | ExprKind::Range(a, _) => a.span.start,
            ExprKind::Path(p) | ExprKind::Call(p, _) | ExprKind::Index(p, _) => p.span.start,
            _ => {
                let t = self.text(&e.span);
                e.span.start + (t.len() - t.trim_start_matches(['(', ' ', '\t', '\n', '\r']).len())
            }
        };
        self.src
            .get(e.span.start..natural.max(e.span.start))
            .map_or(0, |s| s.matches('(').count())
    }
}

fn is_block(item: &Item) -> bool {
    matches!(
        item,
        Item::Filter(_) | Item::Probe(_) | Item::Rule(_) | Item::Test(_)
    )
}

fn ty(t: &TypeExpr) -> String {
    match t.param {
        Some(n) => format!("{}<{n}>", t.name.name),
        None => t.name.name.clone(),
    }
}

fn verdict(a: &Action) -> &'static str {
    match a.verdict {
        Verdict::Pass => "pass",
        Verdict::Drop => "drop",
    }
}

fn binop(op: BinOp) -> &'static str {
    match op {
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::In => "in",
        BinOp::Match => "~",
        BinOp::BitAnd => "&",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::And => "and",
        BinOp::Or => "or",
    }
}

fn rule_span(r: &FilterRule) -> Span {
    match r {
        FilterRule::Match { span, .. }
        | FilterRule::Default { span, .. }
        | FilterRule::Malformed { span, .. }
        | FilterRule::Option { span, .. }
        | FilterRule::Error(span) => span.clone(),
    }
}

fn stmt_span(s: &Stmt) -> Span {
    match s {
        Stmt::Where(_, span)
        | Stmt::When(_, span)
        | Stmt::Unless(_, span)
        | Stmt::Emit(_, span)
        | Stmt::Action(_, span)
        | Stmt::Count { span, .. }
        | Stmt::Aggregate { span, .. }
        | Stmt::Assign { span, .. }
        | Stmt::Delete { span, .. }
        | Stmt::Command { span, .. }
        | Stmt::Error(span) => span.clone(),
    }
}

fn case_span(c: &TestCase) -> Span {
    match c {
        TestCase::Packet { span, .. } | TestCase::Error(span) => span.clone(),
    }
}

/// The unit of a rate: `s`, `m`, `h` or a duration (`10s`).
fn is_rate_unit(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Duration(_) => true,
        ExprKind::Path(p) => matches!(p.dotted().as_str(), "s" | "m" | "h"),
        _ => false,
    }
}
