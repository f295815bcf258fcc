//! The official Python clients of `bench source`, each installed from PyPI into a
//! cached venv of its own: elasticsearch-py of the server's major version for
//! Elasticsearch, opensearch-py 3 for OpenSearch.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::search_server::Product;
use crate::util;

/// A Python client ready to run `bench/source/scan.py`.
#[derive(Debug, Clone)]
pub struct Client {
    pub python: PathBuf,
    /// `es` or `os`: scan.py's `--client`.
    pub flag: &'static str,
    /// e.g. `elasticsearch-py 9.5.1`.
    pub label: String,
}

/// What pip installs for a server of `product` and `version`, the venv's name,
/// scan.py's `--client` and the distribution's display name.
pub fn requirement(
    product: Product,
    version: &str,
) -> (String, String, &'static str, &'static str) {
    match product {
        Product::Elasticsearch => {
            let major = version.split('.').next().unwrap_or("9");
            let next = major.parse::<u32>().map_or(10, |m| m + 1);
            (
                format!("elasticsearch>={major},<{next}"),
                format!("bench-source-elasticsearch-{major}"),
                "es",
                "elasticsearch-py",
            )
        }
        Product::OpenSearch => (
            "opensearch-py>=3,<4".into(),
            "bench-source-opensearch-py-3".into(),
            "os",
            "opensearch-py",
        ),
    }
}

/// The venv for the server's client (created and installed once; `XTASK_PYTHON` is the
/// Python that creates it, `XTASK_BENCH_ES_PY_VENV`/`XTASK_BENCH_OS_PY_VENV` move it) and the client's installed version.
pub fn prepare(product: Product, version: &str) -> Result<Client, String> {
    let (spec, name, flag, dist) = requirement(product, version);
    // XTASK_BENCH_ES_PY_VENV / XTASK_BENCH_OS_PY_VENV name another place for it.
    let var = format!("XTASK_BENCH_{}_PY_VENV", flag.to_uppercase());
    let venv = util::venv_dir(&var, &name);
    let python = util::python_venv(&venv, &[spec.as_str()]).map_err(|e| format!("{e:#}"))?;
    let out = util::capture(
        Command::new(&python)
            .arg(super::script())
            .args(["version", "--client", flag]),
        Duration::from_secs(60),
    )
    .map_err(|e| format!("{dist}: cannot read its version: {e:#}"))?;
    if !out.status.success() {
        return Err(format!(
            "{dist}: cannot read its version: {}",
            out.all().trim()
        ));
    }
    Ok(Client {
        python,
        flag,
        label: format!("{dist} {}", out.stdout.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_matches_the_server() {
        let (spec, venv, flag, _) = requirement(Product::Elasticsearch, "9.5.3");
        assert_eq!(
            (spec.as_str(), venv.as_str(), flag),
            ("elasticsearch>=9,<10", "bench-source-elasticsearch-9", "es")
        );
        assert_eq!(
            requirement(Product::Elasticsearch, "8.19.21").0,
            "elasticsearch>=8,<9"
        );
        assert_eq!(requirement(Product::OpenSearch, "3.6.0").2, "os");
    }
}
