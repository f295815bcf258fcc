//! `cargo xtask services up|down|status`: the test services (an
//! Elasticsearch-compatible server and Redis), their env file, and the
//! [`Session`] other commands use to start what is missing and stop only that.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::search_server::{self, Line};
use crate::util::{self, xtask_dir};
use crate::{docker, native, net, step};

/// Set to `1` to use services someone else runs (CI service containers):
/// every `*_URL` variable already set is used as is, checked, never started or stopped.
pub const EXTERNAL_VAR: &str = "XTASK_EXTERNAL_SERVICES";

/// A service xtask can start natively; each kind is one module behind
/// [`native::Launch`] (`search_server`, `redis_server`, `iggy_server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Elasticsearch-flavoured server: one line of [`search_server::LINES`].
    Search(&'static Line),
    Redis,
    /// Only when `IGGY_SERVER_BIN` names an `iggy-server` binary (none is
    /// installable from the registries), or in docker mode.
    Iggy,
}

/// Every kind xtask may have started (for `services down`).
pub fn all_kinds() -> Vec<Kind> {
    search_server::LINES
        .iter()
        .map(Kind::Search)
        .chain([Kind::Redis, Kind::Iggy])
        .collect()
}

impl Kind {
    pub fn name(self) -> String {
        match self {
            Kind::Search(line) => format!("{} ({})", line.name, line.label()),
            Kind::Redis => "redis".into(),
            Kind::Iggy => "iggy".into(),
        }
    }

    /// Stem of its pid, url and log files.
    pub fn stem(self) -> &'static str {
        match self {
            Kind::Search(line) => line.name,
            Kind::Redis => "redis",
            Kind::Iggy => "iggy",
        }
    }

    /// The environment variable that carries its endpoint.
    pub fn var(self) -> &'static str {
        match self {
            Kind::Search(line) => line.var(),
            Kind::Redis => "REDIS_URL",
            Kind::Iggy => "IGGY_TCP_ADDRESS",
        }
    }

    /// What the command line of our running instance contains.
    pub fn needle(self) -> String {
        match self {
            Kind::Search(line) => match line.start {
                search_server::Start::Osmem => "osmem".into(),
                search_server::Start::IntegTestZip { .. } => {
                    format!("{}-{}", line.product.name(), line.version)
                }
                search_server::Start::EmbeddedJars { .. } => {
                    format!("es-embedded-{}", line.version)
                }
            },
            Kind::Redis => "redis-server".into(),
            Kind::Iggy => "iggy-server".into(),
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        all_kinds().into_iter().find(|k| k.stem() == s)
    }
}

/// Whether the endpoint in variable `var` answers.
fn answers(var: &str, value: &str) -> bool {
    match var {
        "REDIS_URL" => net::redis_answers(value),
        "IGGY_TCP_ADDRESS" => value
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse().ok()?)))
            .is_some_and(|(h, p)| net::tcp_answers(h, p)),
        // ES_URL, OPENSEARCH_URL and each line's ES8_URL, OS3_URL, ...
        v if v.ends_with("_URL") => net::es_answers(value),
        _ => true,
    }
}

/// Polls until `var`'s endpoint answers or `timeout` passes.
pub fn wait_answers(var: &str, value: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if answers(var, value) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn state_dir() -> PathBuf {
    xtask_dir().join("services")
}

/// The file `services up` writes: `export VAR=value` lines to `source`.
pub fn env_file() -> PathBuf {
    xtask_dir().join("services.env")
}

/// Options of `services up` (and of commands that bring services up).
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Use `docker compose` with real images instead of native processes.
    pub docker: bool,
    /// The server lines to start (`--servers`); empty: the default ones.
    pub servers: Vec<&'static Line>,
    /// `--matrix`: every line, and `cargo xtask test` writes docs/compatibility.md.
    pub matrix: bool,
}

impl UpOptions {
    fn lines(&self) -> Vec<&'static Line> {
        if self.servers.is_empty() {
            search_server::default_set()
        } else {
            self.servers.clone()
        }
    }
}

/// The endpoints a command runs against. On [`Session::finish`] (or drop) it
/// stops the services it started itself, unless told to keep them.
#[derive(Debug)]
pub struct Session {
    /// Variables to export to children: `ES_URL`, `REDIS_URL`, ...
    pub vars: Vec<(String, String)>,
    started: Vec<Kind>,
    started_docker: bool,
    keep: bool,
    done: bool,
    guard: Option<Child>,
}

impl Session {
    /// Brings the services up (starting only what is not up yet). With
    /// `guard`, a watchdog process stops what this call started if we die
    /// without cleaning up (Ctrl-C, kill).
    pub fn start(opts: UpOptions, guard: bool) -> Result<Session> {
        let mut session = up(opts)?;
        if guard && (!session.started.is_empty() || session.started_docker) {
            session.guard = spawn_guard(&session.started, session.started_docker)
                .map_err(|e| {
                    step!("warning: no cleanup watchdog ({e:#}); Ctrl-C may leave services running")
                })
                .ok();
        }
        Ok(session)
    }

    /// The value of an exported variable.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.as_str())
    }

    /// The Elasticsearch-flavoured servers of this session, in table order:
    /// `(line name, url)`; external or docker ones as `ES_URL` / `OPENSEARCH_URL`.
    pub fn search_servers(&self) -> Vec<(String, String)> {
        let lines: Vec<(String, String)> = search_server::LINES
            .iter()
            .filter_map(|l| Some((l.name.to_owned(), self.get(l.var())?.to_owned())))
            .collect();
        if !lines.is_empty() {
            return lines;
        }
        let mut servers: Vec<(String, String)> = Vec::new();
        for var in ["ES_URL", "OPENSEARCH_URL"] {
            if let Some(url) = self.get(var)
                && !servers.iter().any(|(_, u)| u == url)
            {
                servers.push((var.to_owned(), url.to_owned()));
            }
        }
        servers
    }

    /// A view of this session with `ES_URL` pointing at `url` (it stops nothing).
    pub fn with_es_url(&self, url: &str) -> Session {
        let mut vars: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, _)| k != "ES_URL")
            .cloned()
            .collect();
        vars.insert(0, ("ES_URL".to_owned(), url.to_owned()));
        Session {
            vars,
            started: Vec::new(),
            started_docker: false,
            keep: true,
            done: true,
            guard: None,
        }
    }

    /// Leave the services running when this session ends.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Whether this session started anything.
    pub fn started_any(&self) -> bool {
        !self.started.is_empty() || self.started_docker
    }

    /// Stops what this session started (unless kept).
    pub fn finish(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.kill();
            let _ = guard.wait();
        }
        if self.keep {
            return Ok(());
        }
        stop_started(&self.started, self.started_docker)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            step!("warning: stopping services failed: {e:#}");
        }
    }
}

/// Stops the given native services (and the compose project), then drops
/// their lines from the env file (removing it when nothing is left).
fn stop_started(kinds: &[Kind], docker: bool) -> Result<()> {
    if kinds.is_empty() && !docker {
        return Ok(());
    }
    let mut result = Ok(());
    for &kind in kinds {
        if let Err(e) = native::stop(kind) {
            result = Err(e);
        }
    }
    if docker && let Err(e) = docker::down() {
        result = Err(e);
    }
    let all = read_env_file();
    let stopped_urls: Vec<&String> = all
        .iter()
        .filter(|(k, _)| kinds.iter().any(|kind| kind.var() == k))
        .map(|(_, v)| v)
        .collect();
    let vars = all
        .iter()
        .filter(|(k, v)| {
            let stopped = kinds.iter().any(|kind| kind.var() == k)
                || stopped_urls.contains(&v)
                || (kinds.contains(&Kind::Iggy) && k.starts_with("IGGY_"));
            !docker && !stopped
        })
        .cloned()
        .collect::<Vec<_>>();
    if vars.iter().any(|(k, _)| k.ends_with("_URL")) {
        write_env_file(&vars)?;
    } else {
        let _ = std::fs::remove_file(env_file());
    }
    result
}

fn external_mode() -> bool {
    std::env::var(EXTERNAL_VAR).is_ok_and(|v| v == "1")
}

/// `services up`: start what is not up yet and write the env file.
pub fn up(opts: UpOptions) -> Result<Session> {
    std::fs::create_dir_all(state_dir())
        .with_context(|| format!("cannot create {}", state_dir().display()))?;
    let mut session = Session {
        vars: Vec::new(),
        started: Vec::new(),
        started_docker: false,
        keep: false,
        done: false,
        guard: None,
    };
    if opts.docker {
        session.started_docker = docker::up()?;
        session.vars = docker::vars();
    } else if docker::marker_exists() && docker_vars_answer() {
        step!("services are already up in docker mode (`cargo xtask services down` stops them)");
        session.vars = read_env_file();
        return Ok(session);
    } else {
        let external_es = std::env::var("ES_URL")
            .ok()
            .filter(|v| external_mode() && !v.trim().is_empty());
        let mut kinds: Vec<Kind> = Vec::new();
        if external_es.is_none() {
            kinds.extend(opts.lines().into_iter().map(Kind::Search));
        }
        kinds.extend([Kind::Redis, Kind::Iggy]);
        for var in ["ES_URL", "OPENSEARCH_URL"] {
            if let Some(url) = external_es.as_ref().and_then(|_| std::env::var(var).ok()) {
                session
                    .vars
                    .push((var.to_owned(), use_external(var, "search server", &url)?));
            }
        }
        for kind in kinds {
            let external =
                std::env::var(kind.var()).is_ok_and(|v| external_mode() && !v.trim().is_empty());
            if kind == Kind::Iggy
                && !external
                && native::iggy_server_bin().is_none()
                && native::running(kind).is_none()
            {
                step!(
                    "iggy: not started: set IGGY_SERVER_BIN to an iggy-server binary (apache/iggy, \
                     not installable from the registries) or use --docker; the Iggy tests will not run"
                );
                continue;
            }
            let url = match std::env::var(kind.var()) {
                Ok(url) if external_mode() && !url.trim().is_empty() => {
                    use_external(kind.var(), &kind.name(), &url)?
                }
                _ => match native::running(kind) {
                    Some((pid, url)) => {
                        step!("{}: already up at {url} (pid {pid})", kind.name());
                        url
                    }
                    None => {
                        let url = native::start(kind)?;
                        session.started.push(kind);
                        url
                    }
                },
            };
            session.vars.push((kind.var().to_string(), url));
            if kind == Kind::Iggy {
                for (var, default) in [("IGGY_USERNAME", "iggy"), ("IGGY_PASSWORD", "iggy")] {
                    let value = std::env::var(var).unwrap_or_else(|_| default.to_owned());
                    session.vars.push((var.to_owned(), value));
                }
            }
        }
        if external_es.is_none() {
            let aliases = search_aliases(&opts.lines(), &session.vars);
            session.vars.splice(0..0, aliases);
        }
    }
    if let Some(bin) = native::redis_server_on_path() {
        session
            .vars
            .push(("REDIS_SERVER_BIN".into(), bin.display().to_string()));
    }
    write_env_file(&session.vars)?;
    Ok(session)
}

/// `ES_URL` (the first Elasticsearch line, else the first line) and
/// `OPENSEARCH_URL` (the first OpenSearch line), from the lines' own variables.
fn search_aliases(lines: &[&'static Line], vars: &[(String, String)]) -> Vec<(String, String)> {
    let url = |line: &&Line| {
        vars.iter()
            .find(|(k, _)| k == line.var())
            .map(|(_, v)| v.clone())
    };
    let first_of = |product| {
        lines
            .iter()
            .filter(|l| l.product == product && l.start != search_server::Start::Osmem)
            .find_map(url)
    };
    let es = first_of(search_server::Product::Elasticsearch).or_else(|| lines.iter().find_map(url));
    let os = first_of(search_server::Product::OpenSearch).or_else(|| {
        lines
            .iter()
            .filter(|l| l.product == search_server::Product::OpenSearch)
            .find_map(url)
    });
    let mut aliases = Vec::new();
    aliases.extend(es.map(|u| ("ES_URL".to_owned(), u)));
    aliases.extend(os.map(|u| ("OPENSEARCH_URL".to_owned(), u)));
    aliases
}

/// Waits up to 120 s for an external service someone else runs.
fn use_external(var: &str, name: &str, url: &str) -> Result<String> {
    step!("{name}: using external {var}={url} (waiting up to 120s for it to answer)");
    if !wait_answers(var, url, Duration::from_secs(120)) {
        bail!(
            "{EXTERNAL_VAR}=1 and {var}={url}, but nothing answers there. Start that service, or \
             unset {var} to let xtask start one"
        );
    }
    Ok(url.to_owned())
}

fn docker_vars_answer() -> bool {
    let vars = read_env_file();
    !vars.is_empty() && vars.iter().all(|(k, v)| answers(k, v))
}

/// `services down`: stop everything `up` started; remove the env file.
pub fn down() -> Result<()> {
    let mut result = Ok(());
    let mut stopped_any = false;
    for kind in all_kinds() {
        match native::stop(kind) {
            Ok(stopped) => stopped_any |= stopped,
            Err(e) => result = Err(e),
        }
    }
    if docker::marker_exists() {
        stopped_any = true;
        if let Err(e) = docker::down() {
            result = Err(e);
        }
    }
    if external_mode() {
        step!("{EXTERNAL_VAR}=1: external services are left alone");
    }
    if !stopped_any {
        step!("no services were running");
    }
    let _ = std::fs::remove_file(env_file());
    result
}

/// `services status`: each service, its URL and whether it answers.
/// Returns whether all of them answer.
pub fn status() -> Result<bool> {
    let vars = read_env_file();
    if vars.is_empty() {
        println!(
            "services are not up (no {}); run `cargo xtask services up`",
            env_file().display()
        );
        return Ok(false);
    }
    let mut all_up = true;
    for (var, value) in &vars {
        if matches!(
            var.as_str(),
            "REDIS_SERVER_BIN" | "IGGY_USERNAME" | "IGGY_PASSWORD"
        ) {
            continue;
        }
        let up = answers(var, value);
        all_up &= up;
        let kind = all_kinds()
            .into_iter()
            .find(|k| k.var() == var || native::recorded(*k).is_some_and(|(_, url)| &url == value));
        let recorded = kind.and_then(|k| native::recorded(k).filter(|(_, url)| url == value));
        let origin = match recorded {
            Some((pid, _)) if native::pid_alive(pid) => format!("native, pid {pid}"),
            Some((pid, _)) => format!(
                "native, pid {pid} has exited; see its log in {}",
                state_dir().display()
            ),
            None if docker::marker_exists() => "docker".into(),
            None => "external".into(),
        };
        let name = match kind {
            Some(Kind::Search(line)) => line.label(),
            Some(Kind::Redis) => "redis".into(),
            Some(Kind::Iggy) => "iggy".into(),
            None => "external".into(),
        };
        let state = if up { "up" } else { "NOT ANSWERING" };
        println!("{var:<16} {value:<28} {state:<14} {name} ({origin})");
    }
    println!("env file: {}", env_file().display());
    Ok(all_up)
}

/// Reads `export VAR=value` lines of the env file (empty when absent).
pub fn read_env_file() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(env_file()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

fn write_env_file(vars: &[(String, String)]) -> Result<()> {
    let path = env_file();
    let mut text = format!(
        "# Written by `cargo xtask services up`; `cargo xtask services down` removes it.\n\
         # Use: . {}\n",
        path.display()
    );
    for (k, v) in vars {
        text.push_str(&format!("export {k}='{}'\n", v.replace('\'', "")));
    }
    let tmp = path.with_extension("env.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A detached `xtask services guard` that stops `kinds` once we are gone.
fn spawn_guard(kinds: &[Kind], docker: bool) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["services", "guard", "--parent"])
        .arg(std::process::id().to_string())
        .arg("--kinds")
        .arg(kinds.iter().map(|k| k.stem()).collect::<Vec<_>>().join(","));
    if docker {
        cmd.arg("--docker");
    }
    // Its own process group: the terminal's Ctrl-C must not reach it.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .current_dir(util::root());
    Ok(cmd.spawn()?)
}

/// `services guard --parent PID --kinds es,redis [--docker]` (internal).
pub fn guard(args: &crate::cli::GuardArgs) -> Result<()> {
    let parent = args.parent;
    let kinds: Vec<Kind> = args.kinds.split(',').filter_map(Kind::parse).collect();
    let docker = args.docker;
    while native::pid_alive(parent) {
        std::thread::sleep(Duration::from_millis(300));
    }
    step!("the command that started the test services is gone; stopping them");
    stop_started(&kinds, docker)
}
