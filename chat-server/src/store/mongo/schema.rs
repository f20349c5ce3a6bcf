//! The indexes each collection needs (a declarative table), created at start-up.
//!
//! No text index: SecantusDB has none and `$text` cannot match word prefixes, which search
//! needs (see [`super::search`]).

use std::time::Duration;

use mongodb::{
    bson::{doc, Document},
    options::IndexOptions,
    IndexModel,
};

use super::{errors::classify, MongoStore};
use crate::store::StoreResult;

fn unique() -> IndexOptions {
    IndexOptions::builder().unique(true).build()
}

/// Unique among the documents that carry `field` as a string.
fn unique_where_present(field: &str) -> IndexOptions {
    IndexOptions::builder()
        .unique(true)
        .partial_filter_expression(doc! {field: {"$type": "string"}})
        .build()
}

fn index(keys: Document, options: Option<IndexOptions>) -> IndexModel {
    IndexModel::builder().keys(keys).options(options).build()
}

impl MongoStore {
    pub(super) async fn create_indexes(&self) -> StoreResult<()> {
        let expire_at_once = IndexOptions::builder()
            .expire_after(Duration::from_secs(0))
            .build();
        let specs: [(&str, IndexModel); 11] = [
            ("users", index(doc! {"username_key": 1}, Some(unique()))),
            (
                "sessions",
                index(doc! {"expires_at": 1}, Some(expire_at_once)),
            ),
            (
                "channels",
                index(doc! {"dm_key": 1}, Some(unique_where_present("dm_key"))),
            ),
            (
                "channels",
                index(doc! {"name_key": 1}, Some(unique_where_present("name_key"))),
            ),
            ("channels", index(doc! {"kind": 1, "name": 1}, None)),
            (
                "members",
                index(doc! {"channel_id": 1, "user_id": 1}, Some(unique())),
            ),
            ("members", index(doc! {"user_id": 1}, None)),
            (
                "messages",
                index(doc! {"author_id": 1, "client_id": 1}, Some(unique())),
            ),
            (
                "messages",
                index(doc! {"channel_id": 1, "thread_root": 1, "seq": 1}, None),
            ),
            // The replay log reads messages by seq; a seq is taken once (the safety net of
            // the batch's compare-and-set on the channel's `last_seq`).
            (
                "messages",
                index(doc! {"channel_id": 1, "seq": 1}, Some(unique())),
            ),
            (
                "events",
                index(doc! {"channel_id": 1, "seq": 1}, Some(unique())),
            ),
        ];
        for (collection, model) in specs {
            self.db
                .collection::<Document>(collection)
                .create_index(model)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}
