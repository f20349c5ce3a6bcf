//! fullslack-test-support: what the chat server's tests (and later the CLI's) share. A
//! dev-dependency only: nothing here ships.
//!
//! Module map:
//!
//! | module | what it is |
//! | --- | --- |
//! | [`ports`] | a free loopback port |
//! | [`process`] | [`process::ProcessGuard`]: a child process killed (and reaped) on drop |
//! | [`server`] | spawning the `fullslack-chat` binary on a free port and waiting until it answers |
//! | [`client`] | the one API client: [`client::Client`] (REST) and [`client::Ws`] (WebSocket), requests written with the protocol types, answers kept as raw JSON for the tests' assertions on the wire |
//! | [`sshd`] | a private sshd on loopback (own host key, authorized client key, known_hosts): the "host" of the CLI's SSH and deploy tests |

pub mod client;
pub mod ports;
pub mod process;
pub mod server;
pub mod sshd;

pub use client::{seqs, Client, RemoteServer, ServerAddr, Ws, WAIT};
pub use ports::free_port;
pub use process::ProcessGuard;
pub use sshd::Sshd;
