//! End-to-end behaviour of the chat server over real sockets (see tests/common). One test
//! binary (`chat`) in modules by subject; the imports they share are here.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod catch_up;
mod frames;
mod history;
mod limits;
mod messaging;

use std::{collections::HashMap, time::Duration};

use common::{seqs, Client, TestServer, Ws};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{
    protocol::frame::{coding::OpCode, Frame},
    Message,
};
