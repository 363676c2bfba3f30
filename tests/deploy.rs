//! deploy/: the Kubernetes manifests pass the API schema (kubernetes-validate, strict), the
//! ConfigMap's policies compile, and the DaemonSet and the image run a real `pol agent`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;

fn deploy() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy"))
}

fn manifests() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(deploy().join("kubernetes"))
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(
    pol_no_kubernetes_validate,
    ignore = "needs kubernetes-validate (pip install kubernetes-validate), not installed at build time (CI=true runs it)"
)]
fn manifests_pass_the_kubernetes_schema() {
    common::require_tool("kubernetes-validate");
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .expect("kubernetes-validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
    for kind in ["daemonset/", "configmap/", "serviceaccount/", "service/"] {
        assert!(text.contains(kind), "no {kind} among the manifests: {text}");
    }
}

/// The `data:` keys of the ConfigMap (block scalars `key: |` indented under `data:`).
fn configmap_data(yaml: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_data = false;
    let mut key: Option<String> = None;
    for line in yaml.lines() {
        if line == "data:" {
            in_data = true;
            continue;
        }
        if !in_data {
            continue;
        }
        if let Some(k) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(": |")) {
            if !k.starts_with(' ') {
                key = Some(k.to_string());
                out.insert(k.to_string(), String::new());
                continue;
            }
        }
        if let Some(k) = &key {
            let body = line.strip_prefix("    ").unwrap_or("");
            let v = out.get_mut(k).expect("key");
            v.push_str(body);
            v.push('\n');
        }
    }
    out
}

#[test]
fn the_configmap_compiles_and_the_daemonset_runs_the_agent() {
    let cm = std::fs::read_to_string(deploy().join("kubernetes/configmap.yaml")).expect("read");
    let data = configmap_data(&cm);
    assert!(
        data.contains_key("edge.pol") && data.contains_key("blocked.txt"),
        "{data:?}"
    );
    let dir = common::TempDir::new("pol_deploy");
    for (k, v) in &data {
        std::fs::write(dir.path().join(k), v).expect("write");
    }
    for k in data.keys().filter(|k| k.ends_with(".pol")) {
        let out = Command::new(env!("CARGO_BIN_EXE_pol"))
            .arg("check")
            .arg(dir.path().join(k))
            .output()
            .expect("pol check");
        assert!(
            out.status.success(),
            "{k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The DaemonSet and the image start the same agent, with flags `pol agent` has, on
    // the directory the ConfigMap is mounted at, serving the port the Service names.
    let ds = std::fs::read_to_string(deploy().join("kubernetes/daemonset.yaml")).expect("read");
    let args = r#"["agent", "--policies", "/etc/pol/policies", "--metrics", "0.0.0.0:9464"]"#;
    assert!(ds.contains(&format!("args: {args}")), "{ds}");
    assert!(ds.contains("mountPath: /etc/pol/policies"), "{ds}");
    let image = std::fs::read_to_string(deploy().join("Containerfile")).expect("read");
    assert!(image.contains(&format!("CMD {args}")), "{image}");
    let help = Command::new(env!("CARGO_BIN_EXE_pol"))
        .args(["agent", "--help"])
        .output()
        .expect("pol agent --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--policies") && help.contains("--metrics"),
        "{help}"
    );
    let svc = std::fs::read_to_string(deploy().join("kubernetes/service.yaml")).expect("read");
    assert!(svc.contains("port: 9464") && ds.contains("containerPort: 9464"));
}
