//! The VS Code package in editors/vscode: its JSON files parse, the files it names exist,
//! and its grammar knows every keyword, hook and type the compiler knows.

use pol_compiler::analysis::{HOOKS, KEYWORDS, TYPES};
use serde_json::Value;
use std::path::Path;

fn json(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("editors/vscode")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn package_names_existing_files_and_runs_pol_lsp() {
    let pkg = json("package.json");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/vscode");
    let lang = &pkg["contributes"]["languages"][0];
    assert_eq!(lang["extensions"][0], ".pol");
    for rel in [
        pkg["main"].as_str(),
        lang["configuration"].as_str(),
        pkg["contributes"]["grammars"][0]["path"].as_str(),
    ] {
        let rel = rel.expect("path in package.json");
        assert!(dir.join(rel).exists(), "{rel} does not exist");
    }
    let ext = std::fs::read_to_string(dir.join("extension.js")).expect("extension.js");
    assert!(ext.contains("args: ['lsp']"));
    assert_eq!(
        json("language-configuration.json")["comments"]["lineComment"],
        "#"
    );
}

#[test]
fn grammar_knows_every_keyword_hook_and_type() {
    let grammar = json("syntaxes/pol.tmLanguage.json").to_string();
    let words = KEYWORDS.iter().chain(HOOKS).chain(TYPES).map(|(w, _)| *w);
    for w in words {
        assert!(
            grammar.contains(&format!("|{w}|"))
                || grammar.contains(&format!("({w}|"))
                || grammar.contains(&format!("|{w})")),
            "the TextMate grammar does not highlight `{w}`"
        );
    }
}
