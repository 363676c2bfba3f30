//! Renders diagnostics with ariadne, without colour, so output is stable for golden files.

use super::{Diagnostic, Severity};
use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};

/// Renders one diagnostic against the source text of `file_name`.
pub fn render(diag: &Diagnostic, file_name: &str, source: &str) -> String {
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let clamp = |s: &std::ops::Range<usize>| {
        let end = s.end.min(source.len());
        s.start.min(end)..end
    };
    let primary = diag.primary_span();
    let mut report = Report::build(kind, (file_name, clamp(&primary)))
        .with_config(
            Config::default()
                .with_color(false)
                .with_index_type(IndexType::Byte),
        )
        .with_code(diag.code)
        .with_message(&diag.message);
    for label in &diag.labels {
        let mut l = Label::new((file_name, clamp(&label.span)));
        if !label.message.is_empty() {
            l = l.with_message(&label.message);
        }
        report = report.with_label(l);
    }
    if let Some(help) = &diag.help {
        report = report.with_help(help);
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; fall back to the bare message if ariadne ever does.
    if report
        .finish()
        .write((file_name, Source::from(source)), &mut out)
        .is_err()
    {
        return format!("error[{}]: {}\n", diag.code, diag.message);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders several diagnostics, one after another.
pub fn render_all(diags: &[Diagnostic], file_name: &str, source: &str) -> String {
    diags
        .iter()
        .map(|d| render(d, file_name, source))
        .collect::<Vec<_>>()
        .join("")
}
