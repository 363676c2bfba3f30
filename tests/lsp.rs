//! `pol lsp` spoken to over JSON-RPC, as an editor would: lifecycle, diagnostics while
//! editing, every query, UTF-16 positions, and bad input that must not bring it down.
//! (Here and not in lsp/tests: only the root package's tests can start the `pol` binary.)

mod common;
mod lsp_client;

use common::TempDir;
use lsp_client::{pos, Client};
use serde_json::json;
use std::time::Instant;

const URI: &str = "file:///work/edge.pol";

const EDGE: &str = "# Ünïcode before the code: 🔥\nimport std.net\n\nset blocked: cidr = { 203.0.113.0/24 }\n\nfilter edge on xdp(\"é🔥\") { drop tcp.dport == 23\n    drop ip.src in blocked count hits[ip.src]\n    drop tcp.dport == 24\n    pass ip.src in std.net.rfc1918\n    default pass\n}\n";

/// The UTF-16 column of `needle` in line `line` of `text`.
fn col16(text: &str, line: usize, needle: &str) -> u32 {
    let l = text.lines().nth(line).expect("line");
    let at = l
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not on line {line}"));
    l[..at].encode_utf16().count() as u32
}

#[test]
fn an_editing_session() {
    let cache = TempDir::new("pol_lsp_session");
    let (mut c, init) = Client::start(cache.path());
    let caps = &init["capabilities"];
    for cap in [
        "hoverProvider",
        "completionProvider",
        "definitionProvider",
        "referencesProvider",
        "documentSymbolProvider",
        "renameProvider",
        "documentFormattingProvider",
        "codeActionProvider",
        "semanticTokensProvider",
    ] {
        assert!(!caps[cap].is_null(), "missing capability {cap}: {caps}");
    }

    c.open(URI, EDGE);
    assert_eq!(c.diagnostics(URI), Vec::<serde_json::Value>::new());

    // Introduce an error after non-ASCII text on the same line: its column is UTF-16.
    let col = col16(EDGE, 5, "dport");
    c.edit(URI, 2, [(5, col), (5, col + 5)], "dprot");
    let diags = c.diagnostics(URI);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["code"], "E0302");
    assert!(d["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("unknown field `tcp.dprot`"));
    let start = col16(EDGE, 5, "tcp.dport");
    assert_eq!(
        d["range"]["start"],
        json!({ "line": 5, "character": start })
    );
    assert_eq!(
        d["range"]["end"],
        json!({ "line": 5, "character": start + 9 })
    );

    // The checker's "did you mean" is a quick fix.
    let actions = c.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": URI }, "range": d["range"], "context": { "diagnostics": [d] } }),
    );
    assert_eq!(actions[0]["title"], "Replace with `tcp.dport`", "{actions}");
    let edit = &actions[0]["edit"]["changes"][URI][0];
    assert_eq!(edit["newText"], "tcp.dport");
    assert_eq!(edit["range"], d["range"]);

    // Fix it again: the diagnostics are cleared.
    c.edit(URI, 3, [(5, col), (5, col + 5)], "dport");
    assert_eq!(c.diagnostics(URI), Vec::<serde_json::Value>::new());

    let hover = c.request("textDocument/hover", pos(URI, 6, col16(EDGE, 6, "src") + 1));
    let text = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(
        text.contains("ip.src: ip") && text.contains("source address"),
        "{hover}"
    );
    // Hover after the emoji lands on the right word.
    let hover = c.request(
        "textDocument/hover",
        pos(URI, 5, col16(EDGE, 5, "dport") + 2),
    );
    assert!(hover["contents"]["value"]
        .as_str()
        .unwrap_or("")
        .contains("tcp.dport: port"));

    let items = c.request(
        "textDocument/completion",
        pos(URI, 7, col16(EDGE, 7, "dport")),
    );
    let labels: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert!(
        labels.contains(&"dport") && labels.contains(&"syn"),
        "{labels:?}"
    );

    // Definition into std.net: a read-only file with the module's text.
    let def = c.request(
        "textDocument/definition",
        pos(URI, 8, col16(EDGE, 8, "rfc1918")),
    );
    let uri = def["uri"].as_str().expect("uri");
    assert!(uri.ends_with("/pol/std-0.1.0/std/net.pol"), "{def}");
    let path = uri.trim_start_matches("file://");
    let std_text = std::fs::read_to_string(path).expect("std file");
    assert_eq!(
        std_text,
        pol_compiler::hir::stdlib::module("std.net").expect("std.net")
    );
    assert!(std::fs::metadata(path)
        .expect("meta")
        .permissions()
        .readonly());
    let line = def["range"]["start"]["line"].as_u64().expect("line") as usize;
    assert!(std_text
        .lines()
        .nth(line)
        .expect("line")
        .starts_with("set rfc1918"));

    let refs = c.request(
        "textDocument/references",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 3, "character": 5 },
                "context": { "includeDeclaration": true } }),
    );
    assert_eq!(refs.as_array().map(Vec::len), Some(2), "{refs}");
    assert_eq!(refs[1]["range"]["start"]["line"], 6);

    let renamed = c.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 6, "character": col16(EDGE, 6, "blocked") },
                "newName": "denied" }),
    );
    let edits = renamed["changes"][URI].as_array().expect("edits");
    assert_eq!(edits.len(), 2);
    assert!(edits.iter().all(|e| e["newText"] == "denied"));
    let refused = c.request_raw(
        "textDocument/rename",
        json!({ "textDocument": { "uri": URI }, "position": { "line": 8, "character": col16(EDGE, 8, "rfc1918") },
                "newName": "x" }),
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("read-only"),
        "{refused}"
    );

    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": URI } }),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["std.net", "blocked", "edge"]);

    let tokens = c.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": URI } }),
    );
    let data = tokens["data"].as_array().expect("data");
    assert!(!data.is_empty() && data.len() % 5 == 0);
    // The first token is the comment on line 0, UTF-16 long.
    assert_eq!(
        data[..3],
        [
            json!(0),
            json!(0),
            json!(EDGE.lines().next().expect("l").encode_utf16().count())
        ]
    );

    // Formatting replaces the document with the canonical text.
    let messy = "filter f on xdp(\"e\") {drop tcp.dport==1 default pass}";
    c.open("file:///work/messy.pol", messy);
    let _ = c.diagnostics("file:///work/messy.pol");
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": "file:///work/messy.pol" }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert_eq!(
        edits[0]["newText"],
        "filter f on xdp(\"e\") {\n    drop tcp.dport == 1\n    default pass\n}\n"
    );

    // A panic inside a request is answered with an error; the server keeps serving.
    let panicked = c.request_raw("pol/debugPanic", json!({}));
    assert_eq!(panicked["error"]["code"], -32603, "{panicked}");
    let again = c.request("textDocument/hover", pos(URI, 6, col16(EDGE, 6, "src")));
    assert!(!again.is_null());

    let shutdown = c.request("shutdown", json!(null));
    assert!(shutdown.is_null());
    c.notify("exit", json!(null));
    assert!(c.close_and_wait(), "pol lsp did not exit cleanly");
}

#[test]
fn bad_input_never_brings_it_down() {
    let cache = TempDir::new("pol_lsp_bad");
    let (mut c, _) = Client::start(cache.path());

    // Half-typed code, garbage, a module importing itself: diagnostics, no crash.
    for (uri, text) in [
        (
            "file:///w/half.pol",
            "filter f on xdp(\"e\") {\n    drop tcp.",
        ),
        (
            "file:///w/garbage.pol",
            "\u{0}\u{1}\u{7f}ÿ\u{fffd}{{{{((((]]]]@@@@\"\n\\",
        ),
        (
            "file:///w/self.pol",
            "import self\nimport std.net\nimport std.net\n",
        ),
    ] {
        c.open(uri, text);
        let d = c.diagnostics(uri);
        assert!(!d.is_empty(), "{uri}: expected diagnostics");
        for line in 0..3 {
            for ch in [0, 3, 17, 500] {
                for m in [
                    "textDocument/hover",
                    "textDocument/completion",
                    "textDocument/definition",
                ] {
                    let r = c.request_raw(m, pos(uri, line, ch));
                    assert!(r.get("error").is_none(), "{m} on {uri}: {r}");
                }
            }
        }
    }

    // An edit far outside the document is clamped, not a crash.
    c.edit(
        "file:///w/half.pol",
        2,
        [(40, 3), (99, 99)],
        " dport == 1 default pass }",
    );
    let d = c.diagnostics("file:///w/half.pol");
    assert!(d.is_empty(), "{d:?}");
    // An edit to a document that is not open is ignored.
    c.edit("file:///w/never-opened.pol", 2, [(0, 0), (0, 0)], "x");

    // A 10 MB file: answered, not hung (a debug build takes ~15 s, a release one ~1.5 s),
    // with at most 1,000 diagnostics.
    let big: String = "drop tcp.dport == 1 ⚠ $$ 10.0.0.999 \"x\n".repeat(10 * 1024 * 1024 / 40);
    let t = Instant::now();
    c.open("file:///w/big.pol", &big);
    let d = c.diagnostics_within("file:///w/big.pol", std::time::Duration::from_secs(180));
    assert_eq!(d.len(), 1000);
    eprintln!("10 MB file: {} diagnostics in {:?}", d.len(), t.elapsed());
    let r = c.request_raw("textDocument/hover", pos("file:///w/big.pol", 1000, 6));
    assert!(r.get("error").is_none(), "{r}");

    assert!(c.alive());
    // Closing stdin without shutdown: the server exits by itself.
    c.close_and_wait();
    assert!(!c.alive(), "pol lsp kept running after stdin closed");
}

/// In a probe, completion knows this kernel's tracepoints and the typed arguments of the
/// probe's own tracepoint (the host's tracefs, as `pol run` reads it), and the server's
/// diagnostics check probes against it too.
#[test]
#[cfg_attr(
    pol_no_bpf,
    ignore = "kernel test: needs root and the kernel's tracefs, unavailable at build time (CI=true runs it)"
)]
fn probes_complete_from_this_kernel() {
    common::require_kernel();
    let cache = TempDir::new("pol_lsp_probes");
    let (mut c, _) = Client::start(cache.path());
    let uri = "file:///work/opens.pol";
    let text = "probe opens on tracepoint(syscalls.sys_enter_openat) {\n    where args.\n}\n";
    c.open(uri, text);
    assert_eq!(c.diagnostics(uri).len(), 1, "the half-typed `args.`");
    let labels = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["label"].as_str().map(str::to_string))
            .collect()
    };
    let args = labels(c.request("textDocument/completion", pos(uri, 1, 15)));
    assert!(
        args.contains(&"filename".to_string()) && args.contains(&"dfd".to_string()),
        "{args:?}"
    );
    let names = labels(c.request("textDocument/completion", pos(uri, 0, 35)));
    assert!(
        names.contains(&"sys_enter_openat".to_string())
            && names.contains(&"sys_exit_read".to_string()),
        "{names:?}"
    );
    // Finished, then a misspelt tracepoint: a diagnostic with the nearest name.
    c.edit(uri, 2, [(1, 15), (1, 15)], "flags == 0");
    assert_eq!(c.diagnostics(uri), Vec::<serde_json::Value>::new());
    c.edit(uri, 3, [(0, 35), (0, 51)], "sys_enter_opnat");
    let diags = c.diagnostics(uri);
    assert!(
        diags.iter().any(|d| d["message"]
            .as_str()
            .unwrap_or("")
            .contains("sys_enter_opnat")),
        "{diags:?}"
    );
    let shutdown = c.request("shutdown", json!(null));
    assert!(shutdown.is_null());
    c.notify("exit", json!(null));
    assert!(c.close_and_wait());
}
