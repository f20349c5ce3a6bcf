//! How MongoDB errors become store answers: which mean "unavailable" (nothing stored, the
//! caller acknowledges nothing), which are duplicate keys (conflicts, or a concurrent twin
//! that won), which are worth retrying inside a transaction; and documents that do not
//! deserialize, reported with their collection.

use mongodb::error::{
    Error as MongoError, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};

use crate::store::StoreError;

/// Server error codes that mean "this node cannot take the write now" (stepping down, shutting
/// down, network trouble between nodes): nothing was stored.
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];
pub(super) const DUPLICATE_KEY: i32 = 11000;
const WRITE_CONFLICT: i32 = 112;

/// A failed step inside a write: either a store-level answer or a driver error that may still
/// be retried (transient transaction errors) or mapped (duplicate keys).
#[derive(Debug)]
pub(super) enum Fail {
    Store(StoreError),
    Db(MongoError),
}

impl From<MongoError> for Fail {
    fn from(e: MongoError) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Store(e) => e,
            Fail::Db(e) => classify(e),
        }
    }
}

impl Fail {
    pub(super) fn is_duplicate_key(&self) -> bool {
        matches!(self, Fail::Db(e) if code_of(e) == Some(DUPLICATE_KEY))
    }

    /// Worth running the transaction again. The driver labels "no server reachable" inside a
    /// transaction as transient too; retrying that (each try waits out server selection) kept
    /// a send unanswered for minutes while the database was down, so it is refused at once.
    pub(super) fn is_transient(&self) -> bool {
        !self.is_unreachable()
            && matches!(self, Fail::Db(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR)
                || code_of(e) == Some(WRITE_CONFLICT))
    }

    /// No server could be selected: the database is down or cut off.
    pub(super) fn is_unreachable(&self) -> bool {
        matches!(self, Fail::Db(e) if matches!(e.kind.as_ref(), ErrorKind::ServerSelection { .. }))
    }
}

pub(super) fn code_of(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errs| errs.first().map(|w| w.code))
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Network and server-selection trouble → `Unavailable` (the caller acknowledges nothing);
/// duplicate keys → `Conflict`; anything else → `Internal`.
pub(super) fn classify(e: MongoError) -> StoreError {
    let code = code_of(&e);
    let unavailable = matches!(
        e.kind.as_ref(),
        ErrorKind::Io(_)
            | ErrorKind::ServerSelection { .. }
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::DnsResolve { .. }
            | ErrorKind::Shutdown
    ) || e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || e.contains_label("RetryableWriteError")
        || code.is_some_and(|c| UNAVAILABLE_CODES.contains(&c));
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else if code == Some(DUPLICATE_KEY) {
        StoreError::Conflict(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// A read's driver error: a document of `collection` that does not deserialize is corrupt
/// data (reported with the collection, and serde's account of the field); the rest as
/// [`classify`] says.
pub(super) fn read_error(collection: &'static str) -> impl Fn(MongoError) -> StoreError {
    move |e| match e.kind.as_ref() {
        ErrorKind::BsonDeserialization(d) => {
            StoreError::Internal(format!("undecodable {collection} document: {d}"))
        }
        _ => classify(e),
    }
}

/// [`read_error`] for a read inside a write transaction: a driver error stays a [`Fail::Db`]
/// (it may be transient and retried); only an undecodable document becomes a store answer.
pub(super) fn txn_read_error(collection: &'static str) -> impl Fn(MongoError) -> Fail {
    move |e| match e.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) => Fail::Store(read_error(collection)(e)),
        _ => Fail::Db(e),
    }
}
