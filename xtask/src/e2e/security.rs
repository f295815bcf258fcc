//! The source against a real Elasticsearch with security on: HTTPS with a
//! certificate of a private CA, a file-realm user (basic authentication) and an
//! API key. The Elasticsearch 8.19 zip carries x-pack security; this scenario
//! starts a private node of it with a configuration directory of its own
//! (`ES_PATH_CONF`) and a home of its own whose `plugins/` holds our stand-in
//! for the analysis components the `.security` index needs (`es_standin`):
//! without it the zip cannot create API keys. The shared test servers stay as
//! they are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::e2e::Cx;
use crate::e2e::source_kit::{self, read_output};
use crate::net::base64;
use crate::search_server::{self, Line, PrivateNode};
use crate::{es_standin, step, util};

const ECHO: Option<&str> = Some("    | ");
const USER: &str = "xtask-reader";
const PASSWORD: &str = "Not-in-any-log-7d1f";
const DOCS: u64 = 300;

/// The private node: its process group, port and CA.
struct SecureNode {
    /// Stopped (its whole process group) when dropped.
    _node: PrivateNode,
    url: String,
    ca: PathBuf,
}

/// `curl` with the node's CA and the given credentials; (status, body).
fn curl(
    node: &SecureNode,
    auth: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    curl_to(&node.url, &node.ca, auth, method, path, body)
}

/// `curl` of `url` trusting `ca`, with the given credentials; (status, body).
fn curl_to(
    url: &str,
    ca: &Path,
    auth: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-S",
        "--max-time",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(ca)
    .args(auth)
    .args(["-X", method, "-H", "Content-Type: application/json"])
    .arg(format!("{url}{path}"));
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    let out = util::capture(&mut cmd, Duration::from_secs(40))?;
    let text = out.stdout.clone();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Ok((status.trim().parse().unwrap_or(0), body.to_owned()))
}

fn basic() -> [String; 2] {
    ["-u".to_owned(), format!("{USER}:{PASSWORD}")]
}

fn start(cx: &Cx, line: &'static Line) -> Result<SecureNode> {
    let (shared_home, java_home) = search_server::installed_zip(line)?;
    let root = cx.dir.join("es-secure");
    let _ = std::fs::remove_dir_all(&root);
    // A home of its own: the distribution plus the analysis stand-in, which the
    // `.security` index (and so every API key) needs.
    let home =
        es_standin::private_home(&shared_home, line.version, &java_home, &root.join("home"))?;
    let conf = PrivateNode::copy_config(&home, &root)?;
    let (ca, cert, key) = super::iggy::make_certificates(&conf.join("certs"))?;
    let rel = |p: &Path| {
        p.strip_prefix(&conf)
            .map(|r| r.display().to_string())
            .unwrap_or_default()
    };
    let yml = format!(
        "xpack.security.enabled: true\n\
         xpack.security.enrollment.enabled: false\n\
         xpack.security.authc.api_key.enabled: true\n\
         xpack.security.http.ssl.enabled: true\n\
         xpack.security.http.ssl.certificate: {cert}\n\
         xpack.security.http.ssl.key: {key}\n\
         xpack.security.http.ssl.certificate_authorities: [ \"{ca}\" ]\n\
         xpack.security.transport.ssl.enabled: false\n\
         xpack.license.self_generated.type: basic\n",
        cert = rel(&cert),
        key = rel(&key),
        ca = rel(&ca),
    );
    std::fs::write(conf.join("elasticsearch.yml"), yml)?;
    let java = format!("ES_JAVA_HOME={}", java_home.display());
    let path_conf = format!("ES_PATH_CONF={}", conf.display());
    // The file realm's user, written by the distribution's own tool.
    let mut users = search_server::as_server_user(&root)?;
    users
        .arg(&java)
        .arg(&path_conf)
        .arg(home.join("bin/elasticsearch-users"))
        .args(["useradd", USER, "-p", PASSWORD, "-r", "superuser"]);
    let out = util::capture(&mut users, Duration::from_secs(120))?;
    ensure!(
        out.status.success(),
        "elasticsearch-users useradd failed: {}",
        out.all()
    );
    let mut node = PrivateNode::start(&home, &java_home, &root, &conf, &[], "the secured node")?;
    let url = format!("https://127.0.0.1:{}", node.port);
    step!(
        "  secured {} pid {} on {url}",
        line.label(),
        node.child.id()
    );
    let auth = basic();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    node.wait_until("the secured node (over TLS)", || {
        matches!(
            curl_to(
                &url,
                &ca,
                &auth,
                "GET",
                "/_cluster/health?wait_for_status=yellow&timeout=5s",
                None,
            ),
            Ok((200, _))
        )
    })?;
    Ok(SecureNode {
        _node: node,
        url,
        ca,
    })
}

/// The API key the scenario reads with: only what a reader needs (`monitor`
/// for the server's version, `read` and `view_index_metadata` on the index).
fn api_key_request(index: &str) -> String {
    serde_json::json!({
        "name": "xtask-source-security",
        "expiration": "1h",
        "role_descriptors": {
            "xtask-reader": {
                "cluster": ["monitor"],
                "indices": [{
                    "names": [index],
                    "privileges": ["read", "view_index_metadata"]
                }]
            }
        }
    })
    .to_string()
}

/// `POST /_security/api_key` of `request` as `auth`: the new key's id, secret
/// and encoded form, as [`parse_api_key`] reads them.
fn create_api_key(
    node: &SecureNode,
    auth: &[&str],
    request: &str,
) -> Result<(String, String, String)> {
    let (status, answer) = curl(node, auth, "POST", "/_security/api_key", Some(request))?;
    ensure!(status == 200, "POST /_security/api_key: {status} {answer}");
    parse_api_key(&answer)
}

/// `id`, `api_key` and `encoded` (base64 of `id:api_key`) from the answer of
/// `POST /_security/api_key`.
fn parse_api_key(answer: &str) -> Result<(String, String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(answer).context("the API key answer is not JSON")?;
    let field = |name: &str| {
        doc[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the API key answer has no `{name}`"))
    };
    let (id, secret, encoded) = (field("id")?, field("api_key")?, field("encoded")?);
    ensure!(
        encoded == base64(format!("{id}:{secret}").as_bytes()),
        "`encoded` is not base64 of `id:api_key`"
    );
    Ok((id, secret, encoded))
}

/// TLS with a private CA, basic authentication and an API key, against the
/// Elasticsearch line that carries security: every document delivered; a
/// wrong password and a wrong API key fail naming 401; no secret in any
/// output, log or stored state.
pub fn security(cx: &mut Cx) -> Result<()> {
    if util::which("curl").is_none() || util::which("openssl").is_none() {
        bail!("needs the curl and openssl CLIs (Debian: apt-get install -y curl openssl)");
    }
    let line = Line::find("es8").context("no es8 line")?;
    let node = cx.step(
        &format!(
            "start a private {} with HTTPS (private CA), a file-realm user and the analysis \
             stand-in plugin",
            line.label()
        ),
        |cx| start(cx, line),
    )?;
    let auth = basic();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let index = "xtask-secure-logs";
    cx.step(
        &format!("index {DOCS} documents over HTTPS as {USER}"),
        |_| {
            let mut rng = source_kit::Rng::new(7);
            let mut body = String::new();
            for n in 0..DOCS {
                body.push_str(&format!(
                    "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{}\"}}}}\n{}\n",
                    source_kit::event_id(n),
                    source_kit::log_doc(&mut rng, n, n / 10)
                ));
            }
            let (status, answer) = curl(
                &node,
                &auth,
                "PUT",
                &format!("/{index}"),
                Some(source_kit::LOGS_MAPPING),
            )?;
            ensure!(status == 200, "create {index}: {status} {answer}");
            let (status, answer) = curl(&node, &auth, "POST", "/_bulk?refresh=true", Some(&body))?;
            ensure!(
                status == 200 && !answer.contains("\"errors\":true"),
                "_bulk: {status} {answer}"
            );
            Ok(())
        },
    )?;
    let (key_id, key_secret, key) = cx.step(
        &format!("create an API key over HTTPS as {USER} (read on {index}, cluster monitor)"),
        |_| {
            let key = create_api_key(&node, &auth, &api_key_request(index))?;
            step!("  API key id {} (its secret is not printed)", key.0);
            Ok(key)
        },
    )?;
    // The right id with a wrong secret: well-formed, refused with 401.
    let wrong_key = base64(format!("{key_id}:not-{key_secret}").as_bytes());
    let secrets: [&str; 4] = [PASSWORD, &key, &key_secret, &wrong_key];
    // Another CA, which did not sign the node's certificate.
    let (other_ca, _, _) = super::iggy::make_certificates(&cx.dir.join("other-ca"))?;
    let cases: [(&str, String, Option<&Path>, Option<&str>); 5] = [
        (
            "basic",
            format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
            Some(&node.ca),
            None,
        ),
        (
            "wrong-ca",
            format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
            Some(&other_ca),
            Some("certificate"),
        ),
        (
            "wrong-password",
            format!("username = \"{USER}\"\npassword = \"not-{PASSWORD}\"\n"),
            Some(&node.ca),
            Some("401"),
        ),
        (
            "api-key",
            format!("api_key = \"{key}\"\n"),
            Some(&node.ca),
            None,
        ),
        (
            "wrong-api-key",
            format!("api_key = \"{wrong_key}\"\n"),
            Some(&node.ca),
            Some("401"),
        ),
    ];
    for (name, credentials, ca, fails_with) in cases {
        let what = match fails_with {
            None => format!("{name}: `run --once` over HTTPS delivers all {DOCS} documents"),
            Some(cause) => format!("{name}: `run --once` fails, naming `{cause}`"),
        };
        cx.step(&what, |cx| {
            let (path, out) = cx.source_config(
                &format!("secure-{name}"),
                &node.url,
                index,
                100,
                "search_after",
                Some("event_id"),
            )?;
            let extra = match ca {
                Some(ca) => format!("{credentials}ca_file = \"{}\"\n", ca.display()),
                None => credentials.clone(),
            };
            source_kit::add_plugin_lines(&path, &extra)?;
            let place = "the output and logs";
            let lines = run_once_secretly(cx, &path, fails_with, &secrets, place)?;
            let all = lines.join("\n");
            match fails_with {
                None => {
                    let stats = read_output(&out)?;
                    source_kit::ensure_all_events(&stats, DOCS)?;
                    ensure!(
                        stats.lines as u64 == DOCS,
                        "{} lines for {DOCS} documents",
                        stats.lines
                    );
                    ensure_no_secret(
                        "the delivered documents",
                        &std::fs::read_to_string(&out)?,
                        &secrets,
                    )?;
                    let state = std::fs::read_to_string(
                        cx.dir
                            .join(format!("secure-{name}-states/secure-{name}.json")),
                    )?;
                    ensure_no_secret("the stored state", &state, &secrets)?;
                    step!(
                        "  {} lines, no secret in the output, the logs or the state",
                        stats.lines
                    );
                }
                Some(cause) => {
                    ensure!(
                        all.to_lowercase().contains(cause),
                        "the error does not name `{cause}`:\n{}",
                        source_kit::last(&lines, 10)
                    );
                    step!("  failed as it should: {}", source_kit::last(&lines, 1));
                }
            }
            Ok(())
        })?;
    }
    access_everywhere(cx, &node, index, &secrets)?;
    drop(node);
    Ok(())
}

/// The key the state store, the `elasticsearch` output and the sink write
/// with: reading the source index, everything on the state and copy indices.
fn writer_key_request(index: &str) -> String {
    serde_json::json!({
        "name": "xtask-writer-security",
        "expiration": "1h",
        "role_descriptors": {
            "xtask-writer": {
                "cluster": ["monitor"],
                "indices": [
                    {"names": [index], "privileges": ["read", "view_index_metadata"]},
                    {"names": [STATE_INDEX, "xtask-secure-copy-*"], "privileges": ["all"]}
                ]
            }
        }
    })
    .to_string()
}

const STATE_INDEX: &str = "xtask-secure-states";

/// `_count` of `index` on the node after a refresh.
fn count(node: &SecureNode, auth: &[&str], index: &str) -> Result<u64> {
    let (status, answer) = curl(node, auth, "POST", &format!("/{index}/_refresh"), None)?;
    ensure!(status == 200, "refresh {index}: {status} {answer}");
    let (status, answer) = curl(node, auth, "GET", &format!("/{index}/_count"), None)?;
    ensure!(status == 200, "_count {index}: {status} {answer}");
    let doc: serde_json::Value = serde_json::from_str(&answer)?;
    doc["count"].as_u64().context("no count in the answer")
}

/// The state store (inheriting the source's access, or with its own), the
/// `elasticsearch` output and the sink, each over HTTPS with a private CA and
/// an API key or basic credentials: everything delivered, the state stored in
/// the secured cluster, no secret printed or stored anywhere.
fn access_everywhere(cx: &mut Cx, node: &SecureNode, index: &str, secrets: &[&str]) -> Result<()> {
    let auth = basic();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (_, writer_secret, writer) = cx.step(
        "create an API key for the state store, the output and the sink (all on the state and \
         copy indices)",
        |_| create_api_key(node, &auth, &writer_key_request(index)),
    )?;
    let mut secrets: Vec<&str> = secrets.to_vec();
    secrets.extend([writer.as_str(), writer_secret.as_str()]);
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let ca = q(&node.ca.to_string_lossy());
    let key = format!("api_key = {}\nca_file = {ca}\n", q(&writer));
    let user = format!(
        "username = {}\npassword = {}\nca_file = {ca}\n",
        q(USER),
        q(PASSWORD)
    );
    let own_user = format!(
        "url = {}\nusername = {}\npassword = {}\n",
        q(&node.url),
        q(USER),
        q(PASSWORD)
    );
    // (name, the source's access, storage_config's own keys, the output's access, fails with)
    let cases: [(&str, &str, String, &str, Option<&str>); 3] = [
        ("inherited-key", &key, String::new(), &key, None),
        ("own-basic", &user, own_user, &user, None),
        (
            "own-url-no-credentials",
            &user,
            format!("url = {}\n", q(&node.url)),
            &user,
            Some("401"),
        ),
    ];
    for (name, source_access, state_keys, output_access, fails_with) in cases {
        let copy = format!("xtask-secure-copy-{name}");
        let state_id = format!("secure-{name}");
        let what = match fails_with {
            None => format!(
                "{name}: `run --once`, state in {STATE_INDEX}, output into {copy}: all {DOCS} \
                 documents, the state stored, no secret anywhere"
            ),
            Some(cause) => format!(
                "{name}: a state cluster of its own gets none of the source's credentials: \
                 `run --once` fails naming `{cause}`"
            ),
        };
        cx.step(&what, |cx| {
            let text = format!(
                "# Written by cargo xtask.\n\
                 [plugin_config]\nurl = {url}\nindex = {index}\nbatch_size = 100\n\
                 polling_interval = \"300ms\"\ntimestamp_field = \"@timestamp\"\n\
                 tiebreaker_field = \"event_id\"\n{source_access}\n\
                 [plugin_config.state]\nenabled = true\nstorage_type = \"elasticsearch\"\n\
                 state_id = {state_id}\n\n\
                 [plugin_config.state.storage_config]\nindex = {STATE_INDEX:?}\n{state_keys}\n\
                 [output]\nkind = \"elasticsearch\"\nurl = {url}\nindex = {copy_q}\n{output_access}",
                url = q(&node.url),
                index = q(index),
                state_id = q(&state_id),
                copy_q = q(&copy),
            );
            let path = cx.dir.join(format!("secure-{name}.toml"));
            std::fs::write(&path, text)?;
            let path = path.display().to_string();
            let lines = run_once_secretly(cx, &path, fails_with, &secrets, "the logs")?;
            let all = lines.join("\n");
            if let Some(cause) = fails_with {
                ensure!(
                    all.contains(cause) && all.contains("state"),
                    "the error does not name `{cause}` and the state store:\n{}",
                    source_kit::last(&lines, 10)
                );
                step!("  failed as it should: {}", source_kit::last(&lines, 1));
                return Ok(());
            }
            let copied = count(node, &auth, &copy)?;
            ensure!(copied == DOCS, "{copy} holds {copied} documents, not {DOCS}");
            let (status, state) = curl(
                node,
                &auth,
                "GET",
                &format!("/{STATE_INDEX}/_doc/{state_id}"),
                None,
            )?;
            ensure!(status == 200, "the state {state_id}: {status} {state}");
            ensure!(
                state.contains(&format!("\"total_documents_fetched\":{DOCS}")),
                "the stored state does not count {DOCS} documents: {state}"
            );
            ensure_no_secret("the stored state", &state, &secrets)?;
            step!("  {copied} documents copied, the state stored in {STATE_INDEX}, no secret shown");
            Ok(())
        })?;
    }
    let sinks = [("sink-key", key.clone()), ("sink-basic", user.clone())];
    super::iggy::secured_sink(cx, &node.url, &sinks, &secrets, |index| {
        count(node, &auth, index)
    })
}

/// `es-connector run --once` of the configuration at `path`, to its end: the
/// lines it wrote, which must show none of `secrets` (`place`: what an
/// error calls them). A run expected to fail (`fails_with` a cause) gets 60 s
/// (a refusal is immediate: waiting out a retry loop is a failure) and must not
/// succeed; one expected to deliver gets 300 s and must succeed.
fn run_once_secretly(
    cx: &Cx,
    path: &str,
    fails_with: Option<&str>,
    secrets: &[&str],
    place: &str,
) -> Result<Vec<String>> {
    let running =
        source_kit::Running::spawn(&cx.connector, &["run", "--config", path, "--once"], ECHO)?;
    let timeout = Duration::from_secs(if fails_with.is_some() { 60 } else { 300 });
    let (status, lines) = running.wait(timeout)?;
    ensure_no_secret(place, &lines.join("\n"), secrets)?;
    match fails_with {
        None => ensure!(
            status.success(),
            "exit {status}:\n{}",
            source_kit::last(&lines, 15)
        ),
        Some(_) => ensure!(!status.success(), "it should have failed, it exited 0"),
    }
    Ok(lines)
}

/// None of `secrets` (password, API keys) appears in `text`; the error names
/// where, never the secret.
fn ensure_no_secret(place: &str, text: &str, secrets: &[&str]) -> Result<()> {
    for (n, secret) in secrets.iter().enumerate() {
        ensure!(
            !text.contains(secret),
            "secret #{n} (password or API key) appears in {place}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_an_api_key_answer() {
        // The shape Elasticsearch 8.19 answers (values made up).
        let answer =
            r#"{"id":"lTgjMaIB","name":"n","api_key":"nA60Dz","encoded":"bFRnak1hSUI6bkE2MER6"}"#;
        let (id, secret, encoded) = parse_api_key(answer).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("lTgjMaIB", "nA60Dz"));
        assert_eq!(encoded, base64(b"lTgjMaIB:nA60Dz"));
        let bad = r#"{"id":"a","api_key":"b","encoded":"eHg6eXk="}"#;
        assert!(parse_api_key(bad).is_err());
        assert!(parse_api_key("{}").is_err());
    }

    #[test]
    fn the_key_request_limits_the_key_to_the_index() {
        let doc: serde_json::Value = serde_json::from_str(&api_key_request("logs-x")).unwrap();
        let role = &doc["role_descriptors"]["xtask-reader"];
        assert_eq!(role["indices"][0]["names"][0], "logs-x");
        assert_eq!(role["cluster"][0], "monitor");
    }
}
