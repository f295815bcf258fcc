//! Running a [`Request`] through the official `elasticsearch` client (feature
//! `elasticsearch`). Without the feature this crate does no IO.

use elasticsearch::Elasticsearch;
use elasticsearch::http::headers::HeaderMap;

use crate::request::{Method, Request};

/// The answer to a [`Request`] sent with [`Request::send`], whatever its status:
/// read it with [`SearchPage::from_response`](crate::SearchPage::from_response),
/// [`PitId::from_open_response`](crate::PitId::from_open_response),
/// [`parse_count`](crate::parse_count)...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body, unparsed.
    pub body: bytes::Bytes,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Request {
    /// Sends this request through `client` (to the node its connection pool
    /// picks, with its credentials) with the client's raw `send`: every request
    /// of this crate has a path there, OpenSearch's point in time
    /// (`/_search/point_in_time`) included, which the client has no typed API for.
    ///
    /// Any status is an [`Answer`]; an `Err` is the client's: no answer came.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use elasticsearch::Elasticsearch;
    /// use elasticsearch::http::transport::Transport;
    /// use es_query::{Flavor, QueryConfig, SearchPage};
    ///
    /// let client = Elasticsearch::new(Transport::single_node("http://localhost:9200")?);
    /// let spec = QueryConfig::new("logs-*")
    ///     .with_tiebreaker_field("event_id")
    ///     .build(Flavor::OpenSearch { major: 3, minor: 6 })?;
    /// let answer = spec.search_after_page(None, None)?.send(&client).await?;
    /// let page = SearchPage::from_response(answer.status, &answer.body)?;
    /// # let _ = page; Ok(()) }
    /// ```
    pub async fn send(&self, client: &Elasticsearch) -> Result<Answer, elasticsearch::Error> {
        let method = match self.method {
            Method::Get => elasticsearch::http::Method::Get,
            Method::Post => elasticsearch::http::Method::Post,
            Method::Delete => elasticsearch::http::Method::Delete,
        };
        // Serialising a `serde_json::Value` cannot fail; the client sends it as
        // `application/json`, its default content type.
        let body = self
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).map(bytes::Bytes::from))
            .transpose()?;
        let response = client
            .send(
                method,
                &self.path_and_query(),
                HeaderMap::new(),
                None::<&()>,
                body,
                None,
            )
            .await?;
        let status = response.status_code().as_u16();
        let body = response.bytes().await?;
        Ok(Answer { status, body })
    }
}
