//! Golden diagnostics of name resolution and type checking: every file in
//! tests/cases/check/err must fail to compile, and its rendered errors are snapshotted.

use pol_compiler::diag::{has_errors, render_all};
use pol_compiler::driver;

#[test]
fn check_errors() {
    insta::glob!("../../tests/cases/check/err", "*.pol", |path| {
        let src = std::fs::read_to_string(path).expect("readable case");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let diags = match driver::compile(&src) {
            Ok(_) => panic!("{name} compiled, but it is a bad input"),
            Err(d) => d,
        };
        assert!(has_errors(&diags), "{name}: failed without an error");
        for d in &diags {
            let s = d.primary_span();
            assert!(
                s.start <= s.end && s.end <= src.len(),
                "{name}: span {s:?} outside the file"
            );
        }
        insta::with_settings!({
            snapshot_path => "../../tests/snapshots",
            prepend_module_to_snapshot => false,
            description => src.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(render_all(&diags, name, &src));
        });
    });
}
