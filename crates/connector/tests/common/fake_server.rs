//! A tiny scripted HTTP server standing in for Elasticsearch: `GET /` answers as
//! Elasticsearch 8.11; each `_search` (not `DELETE`, which clears a scroll) pops
//! the next scripted answer (an empty page once the script is used up). Every
//! request is recorded.

#![allow(dead_code, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub const EMPTY_PAGE: &str = r#"{"took":1,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"hits":[]}}"#;

#[derive(Clone)]
pub struct FakeServer {
    pub url: String,
    script: Arc<Mutex<VecDeque<(u16, String, Duration)>>>,
    /// Every request: the request line, headers and body.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Notified at each request recorded in `requests`.
    arrived: Arc<Condvar>,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = FakeServer {
            url,
            script: Arc::default(),
            requests: Arc::default(),
            arrived: Arc::default(),
        };
        let handle = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || handle.serve(stream));
            }
        });
        server
    }

    /// Queues the next `_search` answer; status 0 hangs up without answering.
    pub fn push(&self, status: u16, body: impl Into<String>) {
        self.push_slow(status, body, Duration::ZERO);
    }

    /// Like [`FakeServer::push`], answering only after `delay` (a slow search).
    pub fn push_slow(&self, status: u16, body: impl Into<String>, delay: Duration) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, body.into(), delay));
    }

    pub fn log(&self) -> String {
        self.requests.lock().unwrap().join("\n")
    }

    /// Bodies of the `_search` requests so far.
    pub fn searches(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| is_search(r))
            .filter_map(|r| {
                r.split("\r\n\r\n")
                    .nth(1)
                    .and_then(|b| serde_json::from_str(b).ok())
            })
            .collect()
    }

    /// Blocks until `n` `_search` requests have come (answered or not), or
    /// `deadline` passed (a bound on a hang, not a measure): whether they came.
    pub fn wait_for_searches(&self, n: usize, deadline: Duration) -> bool {
        let requests = self.requests.lock().unwrap();
        let (requests, _) = self
            .arrived
            .wait_timeout_while(requests, deadline, |r| {
                r.iter().filter(|r| is_search(r)).count() < n
            })
            .unwrap();
        requests.iter().filter(|r| is_search(r)).count() >= n
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut stream = stream;
        loop {
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                let end = line == "\r\n";
                head.push_str(&line);
                if end {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            self.requests.lock().unwrap().push(format!("{head}{body}"));
            self.arrived.notify_all();
            let (status, answer) = if head.starts_with("GET / ") {
                (200, r#"{"name":"fake","version":{"number":"8.11.1","build_flavor":"default"},"tagline":"You Know, for Search"}"#.to_owned())
            } else if head.contains("_search") && !head.starts_with("DELETE") {
                let next = self.script.lock().unwrap().pop_front();
                let (status, body, delay) =
                    next.unwrap_or((200, EMPTY_PAGE.to_owned(), Duration::ZERO));
                // A slow server, not synchronisation: the caller measures it.
                std::thread::sleep(delay);
                (status, body)
            } else {
                (200, r#"{"acknowledged":true}"#.to_owned())
            };
            if status == 0 {
                // Scripted outage: hang up without answering.
                return;
            }
            let kind = if answer.starts_with('<') {
                "text/html"
            } else {
                "application/json"
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// A `_search` request (not `DELETE`, which clears a scroll).
fn is_search(request: &str) -> bool {
    request.contains("_search") && !request.starts_with("DELETE")
}

/// A search answer with hits `ids` (timestamp 1000 each, tiebreaker = id).
pub fn page(ids: &[&str]) -> String {
    let hits: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                r#"{{"_index":"logs","_id":"{id}","_seq_no":{i},"_primary_term":1,"_source":{{"id":"{id}"}},"sort":[1000,"{id}"]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"took":1,"timed_out":false,"_shards":{{"total":1,"successful":1,"skipped":0,"failed":0}},"hits":{{"hits":[{}]}}}}"#,
        hits.join(",")
    )
}

/// [`page`] as a scroll answers it: with `_scroll_id`.
pub fn scroll_page(ids: &[&str], scroll_id: &str) -> String {
    page(ids).replacen('{', &format!(r#"{{"_scroll_id":"{scroll_id}","#), 1)
}

/// A source reading `logs` on `server` page by page (`pagination = "cursor"`,
/// `tiebreaker_field = "id"`, `batch_size = 2`), opened.
pub async fn open_source(server: &FakeServer) -> connector::ElasticsearchSource {
    let text = format!(
        "[plugin_config]\nurl = \"{}\"\nindex = \"logs\"\npagination = \"cursor\"\ntiebreaker_field = \"id\"\nbatch_size = 2\n",
        server.url
    );
    let config = connector::ConnectorConfig::from_toml(&text)
        .unwrap()
        .plugin_config;
    let mut source = connector::ElasticsearchSource::new(1, config);
    source.open().await.unwrap();
    source
}
