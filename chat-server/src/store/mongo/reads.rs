//! The reads that assemble wire types from several documents (a channel and its members, a
//! user's channels with unread counts) and the finds the rest share.

use std::future::IntoFuture;

use futures_util::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    Cursor,
};
use serde::de::DeserializeOwned;

use super::{
    documents::{
        ChannelDoc, ChannelSeqDoc, MemberChannelDoc, MemberDoc, MemberUserDoc, MessageDoc,
    },
    errors::read_error,
    MongoStore,
};
use crate::model::{Channel, ChannelId, Message, UserId};
use crate::store::StoreResult;

/// Runs a `find` on `collection` and reads every document its cursor returns.
pub(super) async fn all<T>(
    collection: &'static str,
    find: impl IntoFuture<Output = mongodb::error::Result<Cursor<T>>>,
) -> StoreResult<Vec<T>>
where
    T: DeserializeOwned + Unpin + Send + Sync,
{
    find.await
        .map_err(read_error(collection))?
        .try_collect()
        .await
        .map_err(read_error(collection))
}

impl MongoStore {
    pub(super) async fn member_ids(&self, channel_id: &str) -> StoreResult<Vec<UserId>> {
        let docs = all(
            "members",
            self.members
                .clone_with_type::<MemberUserDoc>()
                .find(doc! {"channel_id": channel_id})
                .sort(doc! {"joined_at": 1, "user_id": 1})
                .projection(doc! {"user_id": 1}),
        )
        .await?;
        Ok(docs.into_iter().map(|d| d.user_id).collect())
    }

    pub(super) async fn member_channel_ids(&self, user_id: &str) -> StoreResult<Vec<ChannelId>> {
        let docs = all(
            "members",
            self.members
                .clone_with_type::<MemberChannelDoc>()
                .find(doc! {"user_id": user_id})
                .projection(doc! {"channel_id": 1}),
        )
        .await?;
        Ok(docs.into_iter().map(|d| d.channel_id).collect())
    }

    /// A channel document with its members.
    pub(super) async fn with_members(&self, d: ChannelDoc) -> StoreResult<Channel> {
        let mut ch = d.into_channel()?;
        ch.member_ids = self.member_ids(&ch.id).await?;
        Ok(ch)
    }

    pub(super) async fn get_channel(&self, id: &str) -> StoreResult<Option<Channel>> {
        let found = self
            .channels
            .find_one(doc! {"_id": id})
            .await
            .map_err(read_error("channels"))?;
        match found {
            Some(d) => Ok(Some(self.with_members(d).await?)),
            None => Ok(None),
        }
    }

    pub(super) async fn channel_by_dm_key(&self, key: &str) -> StoreResult<Option<Channel>> {
        let found = self
            .channels
            .find_one(doc! {"dm_key": key})
            .await
            .map_err(read_error("channels"))?;
        match found {
            Some(d) => Ok(Some(self.with_members(d).await?)),
            None => Ok(None),
        }
    }

    pub(super) async fn find_messages(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> StoreResult<Vec<Message>> {
        let mut find = self.messages.find(filter).sort(sort);
        if let Some(l) = limit {
            find = find.limit(l);
        }
        let docs = all("messages", find).await?;
        Ok(docs
            .into_iter()
            .map(MessageDoc::into_message)
            .collect::<Result<_, _>>()?)
    }

    pub(super) async fn message_by_client_id(
        &self,
        author_id: &str,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let found = self
            .messages
            .find_one(doc! {"author_id": author_id, "client_id": client_id})
            .await
            .map_err(read_error("messages"))?;
        Ok(found.map(MessageDoc::into_message).transpose()?)
    }

    pub(super) async fn channel_seqs(&self, user_id: &str) -> StoreResult<Vec<(ChannelId, i64)>> {
        let ids = self.member_channel_ids(user_id).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(ChannelId::as_str).collect();
        let docs = all(
            "channels",
            self.channels
                .clone_with_type::<ChannelSeqDoc>()
                .find(doc! {"_id": {"$in": ids}})
                .projection(doc! {"last_seq": 1}),
        )
        .await?;
        Ok(docs.into_iter().map(|d| (d.id, d.last_seq)).collect())
    }

    /// The user's channels, oldest first, with its `read_seq` and `unread` count in each.
    pub(super) async fn user_channels(&self, user_id: &str) -> StoreResult<Vec<Channel>> {
        let memberships: Vec<MemberDoc> =
            all("members", self.members.find(doc! {"user_id": user_id})).await?;
        if memberships.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = memberships.iter().map(|m| m.channel_id.as_str()).collect();
        let docs = all(
            "channels",
            self.channels
                .find(doc! {"_id": {"$in": ids}})
                .sort(doc! {"created_at": 1, "_id": 1}),
        )
        .await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            let mut ch = self.with_members(d).await?;
            let read_seq = memberships
                .iter()
                .find(|m| m.channel_id == ch.id)
                .map_or(0, |m| m.read_seq);
            let unread = self
                .messages
                .count_documents(doc! {
                    "channel_id": ch.id.as_str(),
                    "thread_root": mongodb::bson::Bson::Null,
                    "seq": {"$gt": read_seq},
                    "deleted": false,
                    "author_id": {"$ne": user_id},
                })
                .await
                .map_err(read_error("messages"))?;
            ch.unread = Some(unread as i64);
            ch.read_seq = Some(read_seq);
            out.push(ch);
        }
        Ok(out)
    }

    pub(super) async fn public_channel_list(&self) -> StoreResult<Vec<Channel>> {
        let docs = all(
            "channels",
            self.channels
                .find(doc! {"kind": "public"})
                .sort(doc! {"name": 1}),
        )
        .await?;
        let mut out = Vec::with_capacity(docs.len());
        for d in docs {
            out.push(self.with_members(d).await?);
        }
        Ok(out)
    }
}
