//! The services a stack declares beside its chat nodes (`[redis]`, `[mongodb]`) and how a
//! managed one is named and reached on the stack's Docker network: facts of the stack file,
//! which the chat containers' environment ([`super::env`]) and the deploy that runs them
//! (`crate::deploy::accessory`) both read.

use serde::Serialize;

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Redis: fan-out, presence and rate limits shared by the chat nodes.
    Redis,
    /// MongoDB: the store shared by the chat nodes.
    Mongodb,
}

impl Kind {
    /// `redis` / `mongodb`: the stack file's table and the container's suffix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Mongodb => "mongodb",
        }
    }

    /// The image when the stack names none (pulled by the host from Docker Hub).
    pub fn default_image(self) -> &'static str {
        match self {
            Kind::Redis => "redis:7-alpine",
            Kind::Mongodb => "mongo:7",
        }
    }

    /// The port the service listens on inside the stack's network.
    pub fn port(self) -> u16 {
        match self {
            Kind::Redis => 6379,
            Kind::Mongodb => 27017,
        }
    }

    /// The chat server's variable naming the service's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Redis => "FULLSLACK_REDIS_URL",
            Kind::Mongodb => "FULLSLACK_STORE_URL",
        }
    }
}

/// The stack's Docker network (chat containers and accessories of the stack on one engine).
pub fn network(stack: &str) -> String {
    format!("{stack}-net")
}

/// The container name of a stack's accessory.
pub fn container(stack: &str, kind: Kind) -> String {
    format!("{stack}-{}", kind.name())
}

/// The URL a chat container reaches the accessory at: its container name on the network.
pub fn url(stack: &str, kind: Kind) -> String {
    let host = container(stack, kind);
    match kind {
        Kind::Redis => format!("redis://{host}:{}", kind.port()),
        Kind::Mongodb => format!("mongodb://{host}:{}/fullslack", kind.port()),
    }
}
