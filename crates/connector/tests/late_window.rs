//! `late_window` against the test server (`ES_URL`): a document that becomes
//! searchable behind the cursor is delivered once the source is caught up, once:
//! not again on the next look, not after a restart, and after a crash that lost
//! its acknowledgement exactly once more. With `slices` too.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use connector::{ElasticsearchSource, LATE_COUNT_FIELD};
use serde_json::json;

async fn open(url: &str, index: &TestIndex, state: &str, extra: &str) -> ElasticsearchSource {
    let extra = format!("settle = \"0s\"\nlate_window = \"1h\"\n{extra}\n{state}");
    opened_source(url, &index.name, &extra).await
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_document_searchable_behind_the_cursor_is_delivered_once() {
    let Some(url) = es_url() else { return };
    // By `_shard_doc` where the server has it (by `id` elsewhere), and by `id`.
    for slices in [
        "slices = 1",
        "slices = 2",
        "slices = 2\ntiebreaker_field = \"id\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = file_state(dir.path(), "late");
        // Forty documents 15 to 5 minutes old, each at its own instant: slices are
        // cut by timestamp, so every slice's cursor ends up after the late
        // documents below (all forty in one slice: one chance in 2^39).
        let now = chrono::Utc::now();
        let mut head = docs(40, 0, |i| {
            let at = now - chrono::Duration::seconds(900 - 15 * i64::try_from(i).unwrap());
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        });
        head.extend([
            json!({"id": "a", "@timestamp": ago(30), "n": 1}),
            json!({"id": "b", "@timestamp": ago(20), "n": 2}),
            json!({"id": "old", "@timestamp": ago(120), "n": 3}),
        ]);
        let index = index_without_refresh(&url, "late", &head).await;
        // 25 minutes old, behind where the cursor will be, not searchable yet.
        index_unrefreshed(&index, &json!({"id": "l1", "@timestamp": ago(25), "n": 4})).await;

        let mut source = open(&url, &index, &state, slices).await;
        let first = drain(&mut source).await;
        let mut expected: Vec<String> = (0..40).map(|i| format!("d{i:06}")).collect();
        expected.extend(["a", "b", "old"].map(String::from));
        assert_eq!(sorted(first), sorted(expected), "{slices}: the head");

        index.refresh().await;
        let late = drain(&mut source).await;
        assert_eq!(late, ["l1"], "{slices}: found behind the cursor");
        assert!(
            drain(&mut source).await.is_empty(),
            "{slices}: not found again"
        );
        source.close().await.unwrap();

        // A restart remembers what the window delivered.
        let mut source = open(&url, &index, &state, slices).await;
        assert!(
            drain(&mut source).await.is_empty(),
            "{slices}: nothing again after a restart"
        );
        // Another late document; its batch is handed out, then the process dies
        // before acknowledging it.
        index_unrefreshed(&index, &json!({"id": "l2", "@timestamp": ago(26), "n": 5})).await;
        index.refresh().await;
        let batch = source.poll_batch().await.unwrap();
        let lost: Vec<String> = batch.messages.iter().map(doc_id).collect();
        assert_eq!(lost, ["l2"], "{slices}");
        assert!(batch.ack.as_ref().unwrap().is_late());
        drop(source);

        let mut source = open(&url, &index, &state, slices).await;
        assert_eq!(
            drain(&mut source).await,
            ["l2"],
            "{slices}: the unacknowledged late batch, once more"
        );
        assert!(drain(&mut source).await.is_empty(), "{slices}");
        source.close().await.unwrap();
        let stored = stored_state(dir.path(), "late");
        assert_eq!(stored["data"][LATE_COUNT_FIELD], 2, "{slices}: {stored}");
        assert_eq!(stored["data"]["total_documents_fetched"], 45, "{slices}");
    }
}

/// With two slices, each slice's cursor stops at its own last document. A
/// document that appears between the two cursors, in the slice whose cursor is
/// already past it, is read by neither slice: the late window must look up to
/// the furthest cursor, not only to the nearest.
#[tokio::test]
async fn documents_between_the_slices_cursors_are_delivered_once() {
    let Some(url) = es_url() else { return };
    for slices in ["slices = 2", "slices = 2\ntiebreaker_field = \"id\""] {
        let dir = tempfile::tempdir().unwrap();
        let state = file_state(dir.path(), "between");
        let now = chrono::Utc::now();
        let stamp = |t: chrono::DateTime<chrono::Utc>| {
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        // Forty documents 15 s apart; the last two 15 s apart, so both cursors
        // end at or before the 39th, one of them at the 40th.
        let head_at =
            |i: usize| now - chrono::Duration::seconds(900 - 15 * i64::try_from(i).unwrap());
        let index =
            index_without_refresh(&url, "between", &docs(40, 0, |i| stamp(head_at(i)))).await;
        let mut source = open(&url, &index, &state, slices).await;
        let mut delivered = drain(&mut source).await;
        assert_exactly_once(&delivered, 40);
        // Twenty documents between the 39th and the 40th: each goes to either
        // slice (by its timestamp), so all twenty in the nearest cursor's slice
        // is one chance in 2^20.
        let between = docs(20, 40, |i| {
            stamp(
                head_at(38) + chrono::Duration::milliseconds(500 * i64::try_from(i - 39).unwrap()),
            )
        });
        index.load(&between).await;
        delivered.extend(drain(&mut source).await);
        assert!(
            drain(&mut source).await.is_empty(),
            "{slices}: nothing again"
        );
        source.close().await.unwrap();
        assert_exactly_once(&delivered, 60);
    }
}

/// Without `late_window`, the same document is never delivered (what the audit
/// then names as missed).
#[tokio::test]
async fn without_a_late_window_the_document_behind_the_cursor_is_lost() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = file_state(dir.path(), "nolate");
    let head = [
        json!({"id": "a", "@timestamp": ago(30), "n": 1}),
        json!({"id": "b", "@timestamp": ago(20), "n": 2}),
    ];
    let index = index_without_refresh(&url, "nolate", &head).await;
    index_unrefreshed(&index, &json!({"id": "l1", "@timestamp": ago(25), "n": 4})).await;
    let mut source = opened_source(&url, &index.name, &format!("settle = \"0s\"\n{state}")).await;
    assert_eq!(drain(&mut source).await, ["a", "b"]);
    index.refresh().await;
    assert!(
        drain(&mut source).await.is_empty(),
        "l1 is behind the cursor"
    );
    source.close().await.unwrap();
}

#[tokio::test]
async fn late_window_is_validated_naming_the_key() {
    for (bad, says) in [
        ("late_window = \"500ms\"", "between 1s"),
        (
            "late_window = \"10m\"\nslice = { id = 0, max = 2 }",
            "slices",
        ),
    ] {
        let text = format!("[plugin_config]\nurl = \"http://127.0.0.1:9\"\nindex = \"i\"\n{bad}\n");
        let e = connector::ConnectorConfig::from_toml(&text)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plugin_config.late_window") && e.contains(says),
            "{bad}: {e}"
        );
    }
}

/// Slices over several indices: Elasticsearch gives whole shards to slices once
/// the pattern has as many shards as slices, in an order a new index changes, so
/// documents move between slices; OpenSearch cuts every shard by the timestamp.
/// With `late_window`, a new index of the pattern mid-way still delivers every
/// document once on both; without it, Elasticsearch refuses `slices` there.
#[tokio::test]
async fn slices_over_a_growing_pattern_deliver_every_document_once() {
    let Some(url) = es_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state = file_state(dir.path(), "grow");
    let base = unique_index("grow");
    let mapping =
        json!({"id": {"type": "keyword"}, "@timestamp": {"type": "date"}, "n": {"type": "long"}});
    let first = TestIndex::create_named(&url, format!("{base}-a"), mapping.clone()).await;
    let now = chrono::Utc::now();
    let at = |i: usize| {
        let t = now - chrono::Duration::seconds(3_000 - i64::try_from(i).unwrap());
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    first.load(&docs(400, 0, at)).await;
    let sliced = "settle = \"0s\"\nslices = 2\nbatch_size = 50\n";
    let without = format!("{sliced}{}", file_state(dir.path(), "grow-off"));
    let mut config = plugin_config(&url, &format!("{base}-*"), &without);
    tiebreaker_where_needed(&mut config).await;
    let server = ElasticsearchSource::check(&config).await.unwrap();
    let refused = ElasticsearchSource::new(1, config.clone())
        .open()
        .await
        .map(|_| ());
    if server.flavor.is_opensearch() {
        assert!(refused.is_ok(), "{refused:?}");
    } else {
        let refused = refused.unwrap_err().to_string();
        assert!(
            refused.contains("plugin_config.slices") && refused.contains("late_window"),
            "{refused}"
        );
    }
    let with = format!("late_window = \"2h\"\n{sliced}{state}");
    let mut config = plugin_config(&url, &format!("{base}-*"), &with);
    tiebreaker_where_needed(&mut config).await;
    let mut source = ElasticsearchSource::new(1, config);
    source.open().await.unwrap();
    let mut delivered = drain(&mut source).await;
    // A second index of the pattern. On Elasticsearch each slice now reads one
    // whole index. Twenty documents in each between the 399th and the 400th
    // (between the slices' cursors): whichever slice's cursor is past them, one
    // twenty are read by no slice's next page.
    let second = TestIndex::create_named(&url, format!("{base}-b"), mapping).await;
    let between = |i: usize| {
        let t = now - chrono::Duration::seconds(3_000 - 398)
            + chrono::Duration::milliseconds(40 * i64::try_from(i % 20 + 1).unwrap());
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    first.load(&docs(20, 400, between)).await;
    second.load(&docs(20, 420, between)).await;
    // And more documents in both.
    first.load(&docs(200, 440, at)).await;
    second.load(&docs(100, 640, at)).await;
    delivered.extend(drain(&mut source).await);
    delivered.extend(drain(&mut source).await);
    source.close().await.unwrap();
    assert_exactly_once(&delivered, 740);
}
