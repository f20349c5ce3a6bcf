//! Full-text search over the FTS5 index of message texts (new messages are indexed by the
//! writer in the same commit that stores them, edits and deletes by triggers; see
//! [`super::schema`]): the query words become an FTS5 query that user input can never turn
//! into FTS5 syntax.

use rusqlite::{params, Connection};

use super::rows::{row_message, MESSAGE_COLS};
use crate::model::Message;
use crate::store::{rules, StoreResult};

/// Turns free text into an FTS5 query: every word must match (last one as a prefix); user
/// input never reaches FTS5's query syntax.
pub(super) fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = rules::search_words(q)
        .into_iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut s = words.join(" ");
    s.push('*');
    Some(s)
}

/// Non-deleted messages matching the FTS5 query `q` in channels `user` can read (its own and
/// public ones), optionally only in `channel`, newest first.
pub(super) fn search(
    c: &Connection,
    q: String,
    user: String,
    channel: Option<String>,
    limit: usize,
) -> StoreResult<Vec<Message>> {
    let cols = MESSAGE_COLS
        .split(", ")
        .map(|col| format!("m.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {cols} FROM messages_fts f JOIN messages m ON m.rowid = f.rowid
         WHERE messages_fts MATCH ?1 AND m.deleted = 0
           AND (m.channel_id IN (SELECT channel_id FROM members WHERE user_id = ?2)
                OR m.channel_id IN (SELECT id FROM channels WHERE kind = 'public'))
           AND (?3 IS NULL OR m.channel_id = ?3)
         ORDER BY m.rowid DESC LIMIT ?4"
    ))?;
    let msgs = stmt
        .query_map(params![q, user, channel, limit as i64], row_message)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(msgs)
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn search_input_never_reaches_fts_syntax() {
        assert_eq!(
            fts_query("hello world").as_deref(),
            Some("\"hello\" \"world\"*")
        );
        assert_eq!(
            fts_query("a\" OR NEAR(x").as_deref(),
            Some("\"a\" \"OR\" \"NEAR\" \"x\"*")
        );
        assert_eq!(fts_query("  ** () "), None);
    }
}
