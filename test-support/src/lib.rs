//! fullslack-test-support: what the chat server's and the CLI's tests share. A
//! dev-dependency only: nothing here ships.
//!
//! Module map:
//!
//! | module | what it is |
//! | --- | --- |
//! | [`ports`] | a free loopback port |
//! | [`process`] | [`process::ProcessGuard`]: a child process killed (and reaped) on drop |
//! | [`server`] | spawning the `fullslack-chat` binary on a free port and waiting until it answers |
//! | [`paths`] | the workspace root, the test runtime directory, temporary directories, system programs |
//! | [`chat_binary`] | the chat server as a process for tests outside its crate (the CLI's), found in the target directory |
//! | [`certs`] | a throwaway CA and server certificate made with `openssl` |
//! | [`moto`] | a moto server (AWS API emulator) per test, and the environment that points the CLI at it |
//! | [`report`] | the CLI's check reports (`health --json`, `doctor --json`) read for assertions: which checks passed |
//! | [`registry`] | a real container registry (`docker-registry`) on loopback, with or without htpasswd auth |
//! | [`wire`] | the server's frames read as the protocol's types, for assertions on meaning |
//! | [`client`] | the one API client: [`client::Client`] (REST) and [`client::Ws`] (WebSocket), requests written with the protocol types, answers kept as raw JSON for the tests' assertions on the wire |
//! | [`pebble`] | a real ACME CA (pebble + pebble-challtestsrv as its DNS) on loopback, its roots from the management port |
//! | [`hosts`] | a program run where test names resolve to 127.0.0.1 (its own /etc/hosts in a private mount namespace) |
//! | [`sshd`] | a private sshd on loopback (own host key, authorized client key, known_hosts): the "host" of the CLI's SSH and deploy tests |

pub mod certs;
pub mod chat_binary;
pub mod client;
pub mod hosts;
pub mod moto;
pub mod paths;
pub mod pebble;
pub mod ports;
pub mod process;
pub mod registry;
pub mod report;
pub mod server;
pub mod sshd;
pub mod wire;

pub use client::{seqs, Client, RemoteServer, ServerAddr, Ws, WAIT};
pub use ports::free_port;
pub use ports::wait_for_port;
pub use process::ProcessGuard;
pub use sshd::Sshd;

/// `std::process::Command` for the `fullslack` binary under test. A macro, because the
/// binary's path (`CARGO_BIN_EXE_fullslack`) is known only while compiling the CLI's own tests.
#[macro_export]
macro_rules! fullslack {
    () => {
        ::std::process::Command::new(env!("CARGO_BIN_EXE_fullslack"))
    };
}
