//! Installing and building the contenders of `bench bulk`: ours and the floor
//! (cargo), the Go module (go-elasticsearch, olivere/elastic v7: the Go module
//! proxy), the Maven project (elasticsearch-java: Maven Central) and one Python
//! venv (elasticsearch-py, opensearch-py: PyPI). Versions shown in the table are
//! read back from what was installed, not from these pins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

use crate::{search_server, step, util};

/// The Python clients (pinned) of the `streaming_bulk`/`parallel_bulk` contenders.
const PY_CLIENTS: [&str; 2] = ["opensearch-py==3.2.0", "elasticsearch==9.5.1"];
/// JDKs the elasticsearch-java contender may run on.
const JAVA: (u32, u32) = (17, 25);

/// How to start a contender: a program and the arguments before ours.
#[derive(Debug, Clone)]
pub(super) struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Shown in the table, versions included.
    pub label: String,
    pub env: Vec<(String, String)>,
}

impl Launcher {
    pub fn new(program: PathBuf, args: Vec<String>, label: String) -> Launcher {
        Launcher {
            program,
            args,
            label,
            env: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(util::root());
        cmd
    }
}

/// `bulk-null-server` and the `bulk_client` bench binary, built in release mode.
pub(super) fn build_rust() -> Result<(PathBuf, PathBuf)> {
    let null_server = util::release_binary("bulk", &["testkit"], "bulk-null-server")?;
    let executable = util::bench_executable("bulk", "bulk_client")?;
    Ok((null_server, executable))
}

fn first_line(cmd: &mut Command) -> Option<String> {
    util::capture(cmd, Duration::from_secs(60))
        .ok()
        .filter(|o| o.status.success())
        .map(|o| o.all())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
}

/// The two Go contenders, built from bench/bulk/go with `go build` (modules
/// from the Go module proxy, checked against go.sum): go-elasticsearch's
/// BulkIndexer and olivere/elastic v7's BulkProcessor. `Err` says why not.
pub(super) fn prepare_go() -> std::result::Result<(Launcher, Launcher), String> {
    if util::which("go").is_none() {
        return Err(
            "needs Go 1.21 or later on PATH (it fetches the toolchain go.mod asks \
                    for and the modules from the Go module proxy)"
                .into(),
        );
    }
    let dir = util::xtask_dir().join("bench-bulk");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(format!("{}/", dir.display()))
        .arg("./cmd/...")
        .current_dir(util::root().join("bench/bulk/go"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "auto")
        .stdout(Stdio::from(std::io::stderr()));
    step!("$ {} (in bench/bulk/go)", util::display(&build));
    util::run(&mut build).map_err(|e| format!("go build failed: {e:#}"))?;
    let goes = dir.join("goes");
    let olivere = dir.join("olivere");
    // `go version -m` lists the toolchain and every module in the binary.
    let info = util::capture(
        Command::new("go")
            .args(["version", "-m"])
            .arg(&goes)
            .arg(&olivere),
        Duration::from_secs(60),
    )
    .map(|o| o.stdout)
    .unwrap_or_default();
    let module = |path: &str| {
        info.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && f[0] == "dep" && f[1] == path)
            .map(|f| f[2].to_string())
            .unwrap_or_else(|| "?".into())
    };
    let toolchain = info
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|v| v.replace("go", "Go "))
        .unwrap_or_else(|| "Go".into());
    Ok((
        Launcher::new(
            goes,
            Vec::new(),
            format!(
                "go-elasticsearch {} esutil.BulkIndexer ({toolchain})",
                module("github.com/elastic/go-elasticsearch/v9")
            ),
        ),
        Launcher::new(
            olivere,
            Vec::new(),
            format!(
                "olivere/elastic {} BulkProcessor ({toolchain})",
                module("github.com/olivere/elastic/v7")
            ),
        ),
    ))
}

/// The elasticsearch-java contender: bench/bulk/java compiled with Maven
/// (dependencies from Maven Central) into target/xtask/bench-bulk/java, run on
/// a JDK 17 or later. Maven runs again only when the sources changed.
pub(super) fn prepare_java() -> std::result::Result<Launcher, String> {
    let java_home = search_server::java_home(JAVA).map_err(|e| format!("{e:#}"))?;
    if util::which("mvn").is_none() {
        return Err("needs Maven (`mvn`) on PATH (Debian: maven)".into());
    }
    let src = util::root().join("bench/bulk/java");
    let out = util::xtask_dir().join("bench-bulk").join("java");
    let class = out.join("classes/bulkbench/Main.class");
    let inputs = [
        src.join("pom.xml"),
        src.join("src/main/java/bulkbench/Main.java"),
    ];
    if !newer_than_all(&class, &inputs) {
        let mut build = Command::new("mvn");
        build
            .args(["-q", "-B", "compile", "dependency:copy-dependencies"])
            .arg(format!("-Dbench.build.dir={}", out.display()))
            .current_dir(&src)
            .env("JAVA_HOME", &java_home)
            .stdout(Stdio::from(std::io::stderr()));
        step!("$ {} (in bench/bulk/java)", util::display(&build));
        util::run(&mut build).map_err(|e| format!("mvn failed: {e:#}"))?;
    }
    let client = std::fs::read_dir(out.join("lib"))
        .map_err(|e| format!("no {}: {e}", out.join("lib").display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|n| {
            n.strip_prefix("elasticsearch-java-")
                .and_then(|v| v.strip_suffix(".jar"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into());
    let java = java_home.join("bin").join("java");
    let runtime = first_line(Command::new(&java).arg("-version"))
        .and_then(|l| l.split('"').nth(1).map(|v| format!("Java {v}")))
        .unwrap_or_else(|| "Java".into());
    let classpath = format!(
        "{}:{}/*",
        out.join("classes").display(),
        out.join("lib").display()
    );
    Ok(Launcher::new(
        java,
        vec!["-cp".into(), classpath, "bulkbench.Main".into()],
        format!("elasticsearch-java {client} BulkIngester ({runtime})"),
    ))
}

fn newer_than_all(output: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(output) else {
        return false;
    };
    inputs
        .iter()
        .all(|i| modified(i).is_some_and(|m| m <= built))
}

/// Where the Python venv lives: `XTASK_BENCH_PY_VENV`, else beside the
/// osmem-server venv in the per-user cache, else under target/.
fn py_venv_dir() -> PathBuf {
    let name = PY_CLIENTS
        .iter()
        .map(|p| p.replace("==", "-"))
        .collect::<Vec<_>>()
        .join("-");
    util::venv_dir("XTASK_BENCH_PY_VENV", &format!("bench-bulk-{name}"))
}

/// The venv's python (created with the pinned clients when missing) and its version.
pub(in crate::bench) fn prepare_python() -> std::result::Result<(PathBuf, String), String> {
    let python = util::python_venv(&py_venv_dir(), &PY_CLIENTS).map_err(|e| format!("{e:#}"))?;
    let version = first_line(
        Command::new(&python).args(["-c", "import platform; print(platform.python_version())"]),
    )
    .map(|v| format!("Python {v}"))
    .unwrap_or_else(|| "Python".into());
    Ok((python, version))
}

/// The installed version of a distribution in the venv.
pub(super) fn py_package_version(python: &Path, dist: &str) -> String {
    first_line(Command::new(python).args([
        "-c",
        &format!("import importlib.metadata as m; print(m.version('{dist}'))"),
    ]))
    .unwrap_or_else(|| "?".into())
}

/// A Python contender: `client` is `elasticsearch` or `opensearch`, `mode`
/// `streaming` or `parallel`.
pub(super) fn python_launcher(
    (python, runtime): &(PathBuf, String),
    client: &str,
    mode: &str,
) -> Launcher {
    let dist = if client == "elasticsearch" {
        "elasticsearch"
    } else {
        "opensearch-py"
    };
    let name = if client == "elasticsearch" {
        "elasticsearch-py"
    } else {
        "opensearch-py"
    };
    let mut launcher = Launcher::new(
        python.clone(),
        vec![
            util::root()
                .join("bench/bulk/py/bench.py")
                .display()
                .to_string(),
            "--client".into(),
            client.into(),
            "--mode".into(),
            mode.into(),
        ],
        format!(
            "{name} {} helpers.{mode}_bulk ({runtime})",
            py_package_version(python, dist)
        ),
    );
    // No __pycache__ in the source tree.
    launcher
        .env
        .push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
    launcher
}
