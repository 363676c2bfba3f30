//! Renders diagnostics with ariadne, without colour, so output is stable for golden files.
//!
//! Rendering takes time and output bounded by a small window around each label, whatever
//! the source: ariadne is given an excerpt of the source (lines without labels left
//! empty, so line numbers stay right; long lines cut to a window around their labels;
//! labels longer than a window shortened; control characters shown as `�`), and the
//! location in the header is set back to the real column.

use super::{Diagnostic, Severity};
use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use std::ops::Range;

/// Bytes of context kept on each side of the labels of a line.
const CONTEXT: usize = 60;
/// A label underlines at most this many bytes.
const MAX_LABEL: usize = 80;

/// Renders one diagnostic against the source text of `file_name`.
pub fn render(diag: &Diagnostic, file_name: &str, source: &str) -> String {
    render_with(diag, file_name, source, &Lines::new(source))
}

/// At most this many diagnostics are rendered by [`render_all`]; the rest are counted.
pub const MAX_RENDERED: usize = 200;

/// Renders several diagnostics, one after another (at most [`MAX_RENDERED`]: garbage input
/// can give one per token, and nobody reads the ten-thousandth).
pub fn render_all(diags: &[Diagnostic], file_name: &str, source: &str) -> String {
    let lines = Lines::new(source);
    let mut out: String = diags
        .iter()
        .take(MAX_RENDERED)
        .map(|d| render_with(d, file_name, source, &lines))
        .collect();
    if diags.len() > MAX_RENDERED {
        out.push_str(&format!(
            "... and {} more diagnostics not shown\n",
            diags.len() - MAX_RENDERED
        ));
    }
    out
}

/// Where each line of a source starts, so a position's line is a binary search.
struct Lines(Vec<usize>);

impl Lines {
    fn new(source: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines(starts)
    }

    /// The 0-based line of `at` and where that line starts.
    fn of(&self, at: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&s| s <= at).saturating_sub(1);
        (line, self.0.get(line).copied().unwrap_or(0))
    }
}

fn render_with(diag: &Diagnostic, file_name: &str, source: &str, lines: &Lines) -> String {
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let clamp = |s: &Range<usize>| {
        let end = floor_char(source, s.end.min(source.len()));
        floor_char(source, s.start.min(end))..end
    };
    let primary = clamp(&diag.primary_span());
    let labels: Vec<(Range<usize>, &str)> = diag
        .labels
        .iter()
        .map(|l| (clamp(&l.span), l.message.as_str()))
        .collect();
    let spans: Vec<Range<usize>> = std::iter::once(primary.clone())
        .chain(labels.iter().map(|l| l.0.clone()))
        .collect();
    let ex = Excerpt::new(source, lines, &spans);

    let mut report = Report::build(kind, (file_name, ex.map(&primary)))
        .with_config(
            Config::default()
                .with_color(false)
                .with_index_type(IndexType::Byte),
        )
        .with_code(diag.code)
        .with_message(shorten(&diag.message));
    for (span, message) in &labels {
        let mut l = Label::new((file_name, ex.map(span)));
        if !message.is_empty() {
            l = l.with_message(shorten(message));
        }
        report = report.with_label(l);
    }
    if let Some(help) = &diag.help {
        report = report.with_help(shorten(help));
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; fall back to the bare message if ariadne ever does.
    if report
        .finish()
        .write((file_name, Source::from(ex.text.as_str())), &mut out)
        .is_err()
    {
        return format!("error[{}]: {}\n", diag.code, diag.message);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    fix_column(text, file_name, column(source, lines, primary.start))
}

/// The source as ariadne sees it, and where each kept byte of the real source went.
struct Excerpt {
    text: String,
    /// (real offset, excerpt offset) at the start of every kept piece and character.
    marks: Vec<(usize, usize)>,
}

impl Excerpt {
    fn new(source: &str, lines: &Lines, spans: &[Range<usize>]) -> Excerpt {
        // Per line with a label: the byte range to keep.
        let mut keep: Vec<(usize, Range<usize>)> = Vec::new();
        for s in spans {
            // A label over several lines is shown on its first line.
            let (line, start) = lines.of(s.start);
            let line_end = source[start..]
                .find('\n')
                .map_or(source.len(), |i| start + i);
            let end = s.end.min(line_end).min(s.start + MAX_LABEL);
            let lo = floor_char(source, s.start.saturating_sub(CONTEXT).max(start));
            let hi = floor_char(source, (end + CONTEXT).min(line_end));
            match keep.iter_mut().find(|k| k.0 == line) {
                Some(k) => k.1 = k.1.start.min(lo)..k.1.end.max(hi),
                None => keep.push((line, lo..hi)),
            }
        }
        keep.sort_by_key(|k| k.0);
        let mut ex = Excerpt {
            text: String::new(),
            marks: Vec::new(),
        };
        // Lines without labels stay, empty, so labelled ones keep their numbers. (ariadne
        // 0.5.1's `with_display_line_offset` numbers the header but not the margin.) This
        // is linear in the line number: `render_all` renders at most `MAX_RENDERED`.
        let mut line = 0;
        for (l, range) in keep {
            while line < l {
                ex.text.push('\n');
                line += 1;
            }
            let (_, start) = lines.of(range.start);
            let line_end = source[start..]
                .find('\n')
                .map_or(source.len(), |i| start + i);
            if range.start > start {
                ex.text.push('…');
            }
            for (i, c) in source[range.clone()].char_indices() {
                ex.marks.push((range.start + i, ex.text.len()));
                ex.text.push(if c.is_control() && c != '\t' {
                    '�'
                } else {
                    c
                });
            }
            ex.marks.push((range.end, ex.text.len()));
            if range.end < line_end {
                ex.text.push('…');
            }
        }
        ex
    }

    /// Where real offset `at` is in the excerpt (the nearest kept byte before it).
    fn offset(&self, at: usize) -> usize {
        match self.marks.binary_search_by_key(&at, |m| m.0) {
            Ok(i) => self.marks[i].1,
            Err(0) => 0,
            Err(i) => self.marks[i - 1].1,
        }
    }

    fn map(&self, s: &Range<usize>) -> Range<usize> {
        let start = self.offset(s.start);
        let end = self.offset(s.end.min(s.start + MAX_LABEL)).max(start);
        start..end
    }
}

/// Text of a message (which may quote a name from the source) cut to a few lines' worth,
/// with control characters shown as `�`.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_control() && c != '\n' {
                '�'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// The 1-based column (in characters) of `at`.
fn column(source: &str, lines: &Lines, at: usize) -> usize {
    let (_, start) = lines.of(at);
    source[start..at].chars().count() + 1
}

/// `at`, moved back to a character boundary.
fn floor_char(s: &str, mut at: usize) -> usize {
    while at > 0 && !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Puts the real column into the header's `file:line:col`.
fn fix_column(text: String, file_name: &str, col: usize) -> String {
    let Some(at) = text.find(&format!("[ {file_name}:")) else {
        return text;
    };
    let from = at + file_name.len() + 3;
    let Some(len) = text[from..].find(" ]") else {
        return text;
    };
    let loc = &text[from..from + len];
    match loc.split_once(':') {
        Some((line, _)) => format!("{}{line}:{col}{}", &text[..from], &text[from + len..]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn diag(span: Range<usize>) -> Diagnostic {
        Diagnostic::error("E0000", "m", span).with_label("here")
    }

    #[test]
    fn a_long_line_is_cut_to_a_window_and_keeps_its_column() {
        let src = format!("x = {}bad{}\n", "a ".repeat(50_000), " b".repeat(50_000));
        let at = src.find("bad").expect("bad");
        let t0 = Instant::now();
        let out = render(&diag(at..at + 3), "f.pol", &src);
        assert!(t0.elapsed().as_secs() < 2, "bounded time");
        assert!(out.len() < 2_000, "bounded output: {} bytes", out.len());
        assert!(out.contains(&format!("f.pol:1:{}", at + 1)), "{out}");
        assert!(
            out.contains(" 1 │ …a a ") && out.contains("a a bad b b"),
            "{out}"
        );
    }

    #[test]
    fn a_huge_label_is_shortened_and_control_characters_are_not_echoed() {
        let src = format!("{}\0\x1b[2J", "i".repeat(10 << 20));
        let out = render(&diag(0..src.len()), "f.pol", &src);
        assert!(out.len() < 2_000, "{} bytes", out.len());
        assert!(!out.contains('\0') && !out.contains('\x1b'), "{out:?}");
        let tail = render(&diag(src.len() - 5..src.len()), "f.pol", &src);
        assert!(tail.contains("�[2J"), "{tail}");
    }

    #[test]
    fn many_diagnostics_on_a_big_file_take_bounded_time() {
        let src = "drop $$ \"x\n".repeat(100_000);
        let diags: Vec<Diagnostic> = (0..100_000).map(|i| diag(i * 11..i * 11 + 2)).collect();
        let t0 = Instant::now();
        let out = render_all(&diags, "f.pol", &src);
        assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
        assert!(
            out.contains("f.pol:200:1"),
            "the 200th is shown with its line"
        );
        assert!(out.ends_with("... and 99800 more diagnostics not shown\n"));
    }

    #[test]
    fn lines_without_labels_keep_their_numbers() {
        let src = "a\nb\nc\nfilter x\n";
        let out = render(
            &diag(src.find('x').expect("x")..src.len() - 1),
            "f.pol",
            src,
        );
        assert!(out.contains("f.pol:4:8"), "{out}");
        assert!(out.contains(" 4 │ filter x"), "{out}");
    }
}
