//! Reading pages after a cursor, whatever the pagination: plain `search_after`,
//! `search_after` inside a point in time, or a scroll. Owns the server-side
//! contexts: opened per pass, closed at the end of a pass (an empty page), on
//! error and on close; an expired one is reopened once from the cursor. Each pass
//! reads only documents with a timestamp before its start minus `settle`.

use std::time::Duration;

use es_query::{Cursor, PitId, QuerySpec, ScrollId, SearchPage};

use super::client::EsClient;
use crate::error::{ConnectorError, Result};

/// How pages are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// `search_after` on the index, no server-side context.
    Plain,
    /// `search_after` inside a point in time.
    PointInTime,
    /// The scroll API.
    Scroll,
}

#[derive(Debug)]
pub(crate) struct Reader {
    spec: QuerySpec,
    mode: ReadMode,
    keep_alive: Duration,
    settle: Duration,
    /// `spec` bounded by the current pass's ceiling; `None` between passes.
    pass: Option<QuerySpec>,
    pit: Option<PitId>,
    scroll: Option<ScrollId>,
    what: String,
}

impl Reader {
    pub(crate) fn new(
        spec: QuerySpec,
        mode: ReadMode,
        keep_alive: Duration,
        settle: Duration,
    ) -> Self {
        let what = format!("search {}", spec.config().index);
        Reader {
            spec,
            mode,
            keep_alive,
            settle,
            pass: None,
            pit: None,
            scroll: None,
            what,
        }
    }

    pub(crate) fn spec(&self) -> &QuerySpec {
        &self.spec
    }

    pub(crate) fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    pub(crate) fn mode(&self) -> ReadMode {
        self.mode
    }

    /// The point in time in use, if any.
    pub(crate) fn pit_id(&self) -> Option<&PitId> {
        self.pit.as_ref()
    }

    /// The scroll in use, if any.
    pub(crate) fn scroll_id(&self) -> Option<&ScrollId> {
        self.scroll.as_ref()
    }

    /// The page after `after`. `after` must be the cursor of the last page this
    /// reader returned (or anything, after [`Reader::close`]).
    pub(crate) async fn next_page(
        &mut self,
        client: &EsClient,
        after: Option<&Cursor>,
    ) -> Result<SearchPage> {
        let result = match self.try_page(client, after).await {
            Err(e) if is_context_expired(&e) => {
                tracing::warn!(index = %self.spec.config().index, error = %e, "search context expired; reopening it and resuming from the cursor");
                self.pit = None;
                self.scroll = None;
                self.try_page(client, after).await
            }
            other => other,
        };
        match result {
            Ok(page) if page.hits.is_empty() => {
                // End of a pass: the next one opens a fresh context that sees new documents.
                self.close(client).await;
                Ok(page)
            }
            Ok(page) => Ok(page),
            Err(e) => {
                self.close(client).await;
                Err(e)
            }
        }
    }

    /// The spec of the pass in progress, starting one (its ceiling: now minus
    /// `settle`) if none is. A context reopened after expiring stays in its pass.
    fn pass_spec(&mut self) -> QuerySpec {
        let settle = self.settle;
        let spec = &self.spec;
        self.pass
            .get_or_insert_with(|| spec.with_ceiling(ceiling(settle)))
            .clone()
    }

    async fn try_page(&mut self, client: &EsClient, after: Option<&Cursor>) -> Result<SearchPage> {
        let spec = self.pass_spec();
        let refused = |e| client.refused(&self.what, e);
        match self.mode {
            ReadMode::Plain => {
                let request = spec.search_after_page(after, None).map_err(refused)?;
                client.search(&request, &self.what).await
            }
            ReadMode::PointInTime => {
                let (pit, cursor) = match &self.pit {
                    Some(pit) => (pit.clone(), after.cloned()),
                    None => {
                        let pit = self.open_pit(client).await?;
                        // A `_shard_doc` value means nothing in another point in time.
                        let cursor = after.map(|c| spec.cursor_for_new_pit(c));
                        self.pit = Some(pit.clone());
                        (pit, cursor)
                    }
                };
                let request = spec
                    .search_after_page(cursor.as_ref(), Some((&pit, self.keep_alive)))
                    .map_err(refused)?;
                let page = client.search(&request, &self.what).await?;
                if let Some(newest) = &page.pit_id {
                    self.pit = Some(newest.clone());
                }
                Ok(page)
            }
            ReadMode::Scroll => {
                let request = match &self.scroll {
                    Some(id) => spec.scroll_next(id, self.keep_alive),
                    None => spec.scroll_start(after, self.keep_alive),
                }
                .map_err(refused)?;
                let page = client.search(&request, &self.what).await?;
                if let Some(newest) = &page.scroll_id {
                    self.scroll = Some(newest.clone());
                }
                Ok(page)
            }
        }
    }

    async fn open_pit(&self, client: &EsClient) -> Result<PitId> {
        const WHAT: &str = "open point in time";
        let request = self
            .spec
            .open_pit(self.keep_alive)
            .map_err(|e| client.refused(WHAT, e))?;
        let body = client.send_ok(&request, WHAT).await?;
        PitId::from_open_response(&body).map_err(|e| client.refused(WHAT, e))
    }

    /// Ends the pass: frees the point in time or scroll, if one is open (failures
    /// are logged: the server frees it anyway when `keep_alive` runs out); the
    /// next page starts a new pass, with a new ceiling.
    pub(crate) async fn close(&mut self, client: &EsClient) {
        self.pass = None;
        if let Some(pit) = self.pit.take() {
            let outcome = match self.spec.close_pit(&pit) {
                Ok(request) => client
                    .send(&request, "close point in time")
                    .await
                    .map(|(s, _)| s),
                Err(e) => Err(client.refused("close point in time", e)),
            };
            log_close("point in time", outcome);
        }
        if let Some(scroll) = self.scroll.take() {
            let request = self.spec.clear_scroll(&[scroll]);
            let outcome = client.send(&request, "clear scroll").await.map(|(s, _)| s);
            log_close("scroll", outcome);
        }
    }
}

/// The ceiling of a pass starting now: now minus `settle`.
pub(crate) fn ceiling(settle: Duration) -> chrono::DateTime<chrono::Utc> {
    let settle = chrono::Duration::from_std(settle).unwrap_or(chrono::Duration::MAX);
    chrono::Utc::now()
        .checked_sub_signed(settle)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

fn log_close(what: &str, outcome: Result<u16>) {
    match outcome {
        Ok(status) if (200..300).contains(&status) || status == 404 => {}
        Ok(status) => {
            tracing::warn!(
                status,
                "closing the {what} failed; the server frees it when keep_alive runs out"
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "closing the {what} failed; the server frees it when keep_alive runs out")
        }
    }
}

/// Whether the point in time or scroll must be reopened.
pub(crate) fn is_context_expired(e: &ConnectorError) -> bool {
    matches!(e, ConnectorError::Search { source, .. } if source.is_context_expired())
}
