//! Accessories: the Redis and MongoDB a stack runs itself (`mode = "managed"`).
//!
//! Each runs as one container `STACK-redis` / `STACK-mongodb` on its host (the service's
//! `host` key, else the stack's first host), with `--restart unless-stopped`, its data on the
//! named volume `STACK-redis-data` / `STACK-mongodb-data`, and no published port: it joins
//! the stack's Docker network `STACK-net`, which every chat container of the stack joins too,
//! and the chat containers reach it by its container name ([`url`]).
//!
//! [`ensure`] is idempotent and runs before any chat release switches, never during one: a
//! running accessory whose image id is the wanted one is left alone (no restart, the data
//! stays where it is); a stopped one is started; one running another image is stopped (SIGTERM,
//! so Redis writes its append-only file) and replaced, on the same volume, and the caller says
//! so.

use serde::Serialize;

use super::transfer;
use super::{Target, Transfer};
use crate::commands::docker::{self, AccessorySpec};
use crate::error::CliError;
use crate::runner::Runner;
pub use crate::stack::services::{container, network, url, Kind};
use crate::stack::{ServiceMode, Stack};

/// Seconds an accessory gets to shut down cleanly when it is replaced.
const STOP_GRACE_SECS: u32 = 30;

impl Kind {
    /// Where the service keeps its data inside the container (the volume goes there).
    fn data_path(self) -> &'static str {
        match self {
            Kind::Redis => "/data",
            Kind::Mongodb => "/data/db",
        }
    }

    /// The service's options after the image. Each starts with `--`, so the image's entrypoint
    /// gets them either way: the official `redis` image's entrypoint prepends `redis-server`
    /// to options, and an image whose entrypoint is `redis-server` itself (Debian's binary
    /// packed by `fullslack build --offline`) takes them directly.
    fn args(self) -> Vec<String> {
        match self {
            // Append-only file in the data directory: every acknowledged write survives a
            // replacement. Protected mode refuses every non-loopback client when no password
            // is set; the port is never published, only the stack's network reaches it.
            Kind::Redis => [
                "--appendonly",
                "yes",
                "--dir",
                "/data",
                "--protected-mode",
                "no",
            ]
            .map(String::from)
            .to_vec(),
            // The official image's entrypoint adds `--bind_ip_all` and uses /data/db.
            Kind::Mongodb => Vec::new(),
        }
    }
}

/// One accessory of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessory {
    /// Which service.
    pub kind: Kind,
    /// The stack's name.
    pub stack: String,
    /// Image reference.
    pub image: String,
    /// The `host` key of the service (a host's `name` or `address`), if given.
    pub host: Option<String>,
}

impl Accessory {
    /// The stack's managed services, Redis first.
    pub fn of_stack(s: &Stack) -> Vec<Accessory> {
        [(Kind::Redis, &s.redis), (Kind::Mongodb, &s.mongodb)]
            .into_iter()
            .filter(|(_, svc)| svc.mode == ServiceMode::Managed)
            .map(|(kind, svc)| Accessory {
                kind,
                stack: s.name.clone(),
                image: svc
                    .image
                    .clone()
                    .unwrap_or_else(|| kind.default_image().to_string()),
                host: svc.host.clone(),
            })
            .collect()
    }

    /// Its container name.
    pub fn container(&self) -> String {
        container(&self.stack, self.kind)
    }

    /// Its data volume.
    pub fn volume(&self) -> String {
        format!("{}-data", self.container())
    }

    /// Its `docker run` settings.
    pub fn spec(&self) -> AccessorySpec {
        AccessorySpec {
            name: self.container(),
            image: self.image.clone(),
            network: network(&self.stack),
            volume: (self.volume(), self.kind.data_path().to_string()),
            labels: labels(&self.stack, Some(self.kind)),
            args: self.kind.args(),
        }
    }
}

fn labels(stack: &str, kind: Option<Kind>) -> Vec<(String, String)> {
    let mut l = vec![("fullslack.stack".to_string(), stack.to_string())];
    if let Some(k) = kind {
        l.push(("fullslack.accessory".to_string(), k.name().to_string()));
    }
    l
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    /// There was none: started on a new or existing volume.
    Started,
    /// Running with the wanted image: left alone.
    Unchanged,
    /// It existed but was stopped: started again.
    Restarted,
    /// It ran another image: stopped and replaced on the same volume.
    Replaced {
        /// The image id it ran.
        from_image_id: String,
    },
}

/// One accessory's outcome, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Ensured {
    /// Host label.
    pub host: String,
    /// Which service.
    pub kind: Kind,
    /// Container name.
    pub container: String,
    /// Image reference.
    pub image: String,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
}

impl std::fmt::Display for Ensured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.change {
            Change::Started => "started".to_string(),
            Change::Unchanged => "running, unchanged".to_string(),
            Change::Restarted => "was stopped: started again".to_string(),
            Change::Replaced { from_image_id } => format!(
                "replaced: it ran image {} (same data volume)",
                short_id(from_image_id)
            ),
        };
        write!(
            f,
            "{}: {} {} ({}) {what}",
            self.host,
            self.kind.name(),
            self.container,
            self.image
        )
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// The stack's network on this engine, created if missing (idempotent).
pub async fn ensure_network<R: Runner>(r: &R, stack: &str) -> Result<(), CliError> {
    let name = network(stack);
    if r.run(&docker::network_inspect(&name)).await?.success() {
        return Ok(());
    }
    r.check(&docker::network_create(&name, &labels(stack, None)))
        .await?;
    Ok(())
}

/// Makes the accessory run with its image on `r`'s host (see the module doc). `local_image_id`:
/// the id of the image on this machine when the host is another one (the image is then
/// streamed over the connection if the host lacks it); `None` makes the host pull it.
pub async fn ensure<R: Runner>(
    r: &R,
    a: &Accessory,
    local_image_id: Option<String>,
) -> Result<Ensured, CliError> {
    ensure_network(r, &a.stack).await?;
    let wanted = match transfer::host_image_id(r, &a.image).await? {
        Some(id) => id,
        None => {
            match local_image_id {
                Some(id) => {
                    let t = Target {
                        image: a.image.clone(),
                        version: a.image.clone(),
                        image_id: Some(id),
                    };
                    transfer::ensure_image(
                        r,
                        &t,
                        &Transfer::Stream {
                            always: false,
                            compress: false,
                        },
                    )
                    .await?;
                }
                None => {
                    r.check(&docker::pull(&a.image)).await?;
                }
            }
            transfer::host_image_id(r, &a.image)
                .await?
                .ok_or_else(|| CliError::Failed {
                    message: format!("{} has no image {} after loading it", r.host(), a.image),
                    hint: "check the image reference in the stack file".into(),
                })?
        }
    };
    let name = a.container();
    let current = r.run(&docker::container_image(&name)).await?;
    let change = if current.success() {
        let mut parts = current.stdout.split_whitespace();
        let (image_id, state) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if image_id == wanted {
            if state == "running" {
                Change::Unchanged
            } else {
                r.check(&docker::start(&name)).await?;
                Change::Restarted
            }
        } else {
            r.check(&docker::stop(&name, STOP_GRACE_SECS)).await?;
            r.check(&docker::rm(&name)).await?;
            run(r, a).await?;
            Change::Replaced {
                from_image_id: image_id.to_string(),
            }
        }
    } else {
        run(r, a).await?;
        Change::Started
    };
    Ok(Ensured {
        host: r.host(),
        kind: a.kind,
        container: name,
        image: a.image.clone(),
        change,
    })
}

async fn run<R: Runner>(r: &R, a: &Accessory) -> Result<(), CliError> {
    r.check(&docker::volume_create(
        &a.volume(),
        &labels(&a.stack, Some(a.kind)),
    ))
    .await?;
    r.check(&docker::run_accessory(&a.spec())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_managed_redis_runs_on_the_stack_network_with_its_volume() {
        let s: Stack = toml::from_str(
            "name = \"chat\"\ndomains = [\"chat.example.com\"]\ntarget = \"ssh\"\n\
             [[hosts]]\naddress = \"203.0.113.7\"\n[image]\nname = \"chat/chat\"\n\
             [redis]\nmode = \"managed\"\nimage = \"chat/redis:7\"\n\
             [mongodb]\nmode = \"managed\"\n",
        )
        .expect("stack");
        let acc = Accessory::of_stack(&s);
        assert_eq!(acc.len(), 2);
        assert_eq!(
            docker::run_accessory(&acc[0].spec()).to_shell(),
            "docker run --detach --restart unless-stopped --name chat-redis --network chat-net \
             --volume chat-redis-data:/data --label fullslack.stack=chat \
             --label fullslack.accessory=redis chat/redis:7 \
             --appendonly yes --dir /data --protected-mode no"
        );
        assert_eq!(acc[1].image, "mongo:7");
        assert_eq!(acc[1].volume(), "chat-mongodb-data");
        assert_eq!(url("chat", Kind::Redis), "redis://chat-redis:6379");
        assert_eq!(
            url("chat", Kind::Mongodb),
            "mongodb://chat-mongodb:27017/fullslack"
        );
        let e = Ensured {
            host: "web1".into(),
            kind: Kind::Redis,
            container: "chat-redis".into(),
            image: "chat/redis:8".into(),
            change: Change::Replaced {
                from_image_id: "sha256:0123456789abcdef0123".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "web1: redis chat-redis (chat/redis:8) replaced: it ran image 0123456789ab (same data volume)"
        );
    }
}
