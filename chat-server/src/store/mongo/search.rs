//! Search without a text index: `$text` matches whole (stemmed) words only, while search must
//! match the last word as a prefix (search as you type), and SecantusDB (the test stand-in) has
//! no text indexes at all. Instead every word is a case-insensitive regex anchored at a word
//! start, built from escaped words (user input is never pattern syntax), over the readable
//! channels only (the `channel_id` part of the filter uses an index).

use mongodb::bson::{doc, Bson};

use super::{documents::ChannelIdDoc, reads::all, MongoStore};
use crate::model::{ChannelId, Message};
use crate::store::{rules, StoreResult};

/// The search words of `query` ([`rules::search_words`], as the SQLite driver's FTS query):
/// every word must occur at a word start, case-insensitively; all but the last as whole
/// words, the last as a prefix.
pub(super) fn search_patterns(query: &str) -> Vec<String> {
    let words = rules::search_words(query);
    let n = words.len();
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let escaped = escape_regex(w);
            if i + 1 == n {
                format!(r"(^|[^\w']){escaped}")
            } else {
                format!(r"(^|[^\w']){escaped}($|[^\w'])")
            }
        })
        .collect()
}

/// Quotes every regex metacharacter (words only hold letters, digits, `_` and `'`, but quote
/// anyway so a change of the split can never open the pattern syntax).
fn escape_regex(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl MongoStore {
    /// Non-deleted messages matching every pattern in channels `user_id` can read (its own
    /// and public ones), optionally only `channel_id`, newest first.
    pub(super) async fn search_messages(
        &self,
        user_id: &str,
        patterns: Vec<String>,
        channel_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<Message>> {
        let mut readable = self.member_channel_ids(user_id).await?;
        let public: Vec<ChannelIdDoc> = all(
            "channels",
            self.channels
                .clone_with_type::<ChannelIdDoc>()
                .find(doc! {"kind": "public"})
                .projection(doc! {"_id": 1}),
        )
        .await?;
        for d in public {
            if !readable.contains(&d.id) {
                readable.push(d.id);
            }
        }
        if let Some(ch) = channel_id {
            readable.retain(|id| id == ch);
        }
        if readable.is_empty() {
            return Ok(Vec::new());
        }
        let words: Vec<Bson> = patterns
            .into_iter()
            .map(|p| Bson::Document(doc! {"text": {"$regex": p, "$options": "i"}}))
            .collect();
        let readable: Vec<&str> = readable.iter().map(ChannelId::as_str).collect();
        // Ids are UUIDv7 strings: newest first is descending `_id`.
        self.find_messages(
            doc! {
                "channel_id": {"$in": readable},
                "deleted": false,
                "$and": words,
            },
            doc! {"_id": -1},
            Some(limit as i64),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::search_patterns;

    #[test]
    fn search_input_never_reaches_regex_syntax() {
        assert_eq!(
            search_patterns("hello world"),
            [r"(^|[^\w'])hello($|[^\w'])", r"(^|[^\w'])world"]
        );
        assert_eq!(
            search_patterns("a\" OR (x.*"),
            [
                r"(^|[^\w'])a($|[^\w'])",
                r"(^|[^\w'])OR($|[^\w'])",
                r"(^|[^\w'])x"
            ]
        );
        assert!(search_patterns("  ** () ").is_empty());
    }
}
