//! The store's reading of the server's replies, without a server: what the fuzz
//! targets (`fuzz/`) feed. Not a public API (feature `fuzzing`).

use std::sync::OnceLock;

use reqwest::StatusCode;
use state_core::{Result, StateEntry, StateId, Stored};

use crate::builder::EsStoreBuilder;
use crate::store::EsStore;
use crate::transport::Reply;

/// A store that is never connected: only its reading of replies is used.
fn store() -> Option<&'static EsStore> {
    static STORE: OnceLock<Option<EsStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let opts = EsStoreBuilder::new("http://127.0.0.1:9200")
                .with_index("connector_states")
                .resolve()
                .ok()?;
            Some(EsStore::new(reqwest::Client::new(), opts))
        })
        .as_ref()
}

fn reply(status: u16, body: &[u8]) -> Option<Reply> {
    Some(Reply {
        status: StatusCode::from_u16(status).ok()?,
        body: body.to_vec(),
    })
}

/// What [`EsStore::load`](crate::EsStore) makes of an answer `status`, `body` to
/// its `GET` of `id`; `None` for a status outside 100..=999.
pub fn load_reply(id: &StateId, status: u16, body: &[u8]) -> Option<Result<Stored>> {
    let reply = reply(status, body)?;
    Some(store()?.loaded(id, &reply, "loading a state"))
}

/// What [`EsStore::list`](crate::EsStore) makes of one answer to its listing
/// search: the entries on it (none when it says the index is missing).
pub fn list_reply(status: u16, body: &[u8]) -> Option<Result<Vec<StateEntry>>> {
    let reply = reply(status, body)?;
    let page = store()?.listed_page(&reply, "listing states");
    Some(page.map(|page| page.map(|p| p.entries).unwrap_or_default()))
}
