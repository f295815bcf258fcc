//! The dependency rules of ARCHITECTURE.md's Architecture Invariants, checked
//! against `cargo metadata`: a change that breaks one fails here, naming the
//! invariant and the dependency.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BACKENDS: [&str; 4] = ["state-file", "state-sled", "state-redis", "state-es"];
/// Crates that would give `es-query` IO of its own.
const IO_CRATES: [&str; 8] = [
    "reqwest",
    "hyper",
    "hyper-util",
    "tokio",
    "async-std",
    "elasticsearch",
    "opensearch",
    "ureq",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The workspace's packages, as `cargo metadata --no-deps` describes them.
fn workspace() -> Workspace {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    Workspace {
        packages: metadata["packages"].as_array().unwrap().clone(),
    }
}

struct Workspace {
    packages: Vec<Value>,
}

/// One dependency of a workspace package.
#[derive(Debug)]
struct Dep {
    name: String,
    /// `None` for a normal dependency, else "dev" or "build".
    kind: Option<String>,
    optional: bool,
}

impl Workspace {
    fn names(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn package(&self, name: &str) -> &Value {
        self.packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no package {name} in the workspace"))
    }

    /// What `name` depends on to build and run (dev-dependencies left out: tests
    /// may use anything).
    fn deps(&self, name: &str) -> Vec<Dep> {
        self.package(name)["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Dep {
                name: d["name"].as_str().unwrap().to_owned(),
                kind: d["kind"].as_str().map(str::to_owned),
                optional: d["optional"].as_bool().unwrap_or(false),
            })
            .filter(|d| d.kind.as_deref() != Some("dev"))
            .collect()
    }

    /// The workspace crates `name` depends on (not as a dev-dependency).
    fn internal_deps(&self, name: &str) -> Vec<Dep> {
        let names = self.names();
        self.deps(name)
            .into_iter()
            .filter(|d| names.contains(&d.name))
            .collect()
    }
}

/// Asserts that none of `deps` is `forbidden`; the failure states the Architecture
/// Invariant `invariant` and the dependencies that break it.
fn assert_none(deps: Vec<Dep>, forbidden: impl Fn(&Dep) -> bool, invariant: &str) {
    let breaking: Vec<Dep> = deps.into_iter().filter(forbidden).collect();
    assert!(
        breaking.is_empty(),
        "Architecture Invariant: {invariant}; it depends on {breaking:?}"
    );
}

#[test]
fn state_core_depends_on_no_crate_of_the_workspace_but_the_endpoint_types() {
    assert_none(
        workspace().internal_deps("state-core"),
        |d| d.name != "es-endpoint",
        "`state-core` depends on no backend and on no other crate of this workspace but \
         `es-endpoint`",
    );
}

#[test]
fn es_endpoint_is_a_leaf_without_io() {
    let ws = workspace();
    assert_none(
        ws.deps("es-endpoint"),
        |d| ws.names().contains(&d.name) || (IO_CRATES.contains(&d.name.as_str()) && !d.optional),
        "`es-endpoint` (the URL, secret, access and index-name types) depends on no crate of \
         this workspace and does no IO (a client only behind its optional `reqwest` feature)",
    );
}

#[test]
fn a_backend_depends_on_state_core_only() {
    let ws = workspace();
    for backend in BACKENDS {
        let deps: Vec<String> = ws
            .internal_deps(backend)
            .into_iter()
            .map(|d| d.name)
            .filter(|name| name != "es-endpoint")
            .collect();
        assert_eq!(
            deps,
            ["state-core"],
            "Architecture Invariant: a backend crate depends only on `state-core` (plus its own \
             client crate and the shared `es-endpoint`); `{backend}` depends on these crates of \
             the workspace"
        );
    }
}

#[test]
fn bulk_knows_nothing_of_state_or_the_connector() {
    assert_none(
        workspace().internal_deps("bulk"),
        |d| d.name.starts_with("state-") || d.name == "connector",
        "`bulk` depends on no state crate and not on `connector`",
    );
}

#[test]
fn es_query_does_no_io() {
    assert_none(
        workspace().deps("es-query"),
        |d| IO_CRATES.contains(&d.name.as_str()) && !d.optional,
        "`es-query` does no IO (a client may only come behind an optional feature)",
    );
}

#[test]
fn only_the_connector_wires_backends_and_only_behind_features() {
    let ws = workspace();
    for name in ws.names() {
        let backend = |d: &Dep| BACKENDS.contains(&d.name.as_str());
        if name == "connector" {
            assert_none(
                ws.internal_deps(&name),
                |d| backend(d) && !d.optional,
                "only `connector` wires backends together, and only through its optional `dep:` \
                 features",
            );
        } else {
            assert_none(
                ws.internal_deps(&name),
                backend,
                &format!("only `connector` wires backends together; `{name}` must not"),
            );
        }
    }
}

#[test]
fn the_main_workspace_never_depends_on_the_plugins() {
    let ws = workspace();
    let plugins = root().join("plugins");
    for name in ws.names() {
        let manifest = PathBuf::from(ws.package(&name)["manifest_path"].as_str().unwrap());
        assert!(
            !manifest.starts_with(&plugins),
            "Architecture Invariant: the main workspace never depends on `plugins/`; \
             {} is a member",
            manifest.display()
        );
        // Dev-dependencies too: `cargo test` builds them.
        let on_plugins: Vec<&str> = ws.package(&name)["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["path"].as_str())
            .filter(|p| Path::new(p).starts_with(&plugins))
            .collect();
        assert!(
            on_plugins.is_empty(),
            "Architecture Invariant: the main workspace never depends on `plugins/`; `{name}` \
             depends on {on_plugins:?}"
        );
    }
}
