//! The hosts of an `ec2` stack, found by the stack's tags as `plan` finds them: what `lock`,
//! `doctor` and deploys connect to once `apply` has made them. The stack file does not list
//! them (their addresses are AWS's to choose), so without this a user would copy addresses
//! from the console into `[[hosts]]` after every replacement.

use serde::Serialize;

use crate::config::Aws;
use crate::error::AwsError;
use crate::family::tag_of;
use crate::TAG_RESOURCE;

/// One running instance of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ec2Host {
    /// The instance's logical name within the stack (`fullslack:resource`, e.g. `chat-1`).
    pub name: String,
    /// Instance id.
    pub instance_id: String,
    /// Public IPv4 (the Elastic IP once it is associated), if any.
    pub public_ipv4: Option<String>,
    /// Private IPv4.
    pub private_ipv4: Option<String>,
    /// IPv6 addresses of the primary interface, if the subnet gives any.
    pub ipv6: Option<String>,
}

impl Ec2Host {
    /// The address to connect to: the public IPv4, else the private one.
    pub fn address(&self) -> Option<&str> {
        self.public_ipv4.as_deref().or(self.private_ipv4.as_deref())
    }
}

/// Running instances tagged with `stack`, ordered by logical name (`chat-1`, `chat-2`, …) so
/// that rolling operations go through them in the same order every time.
pub async fn ec2_hosts(aws: &Aws, stack: &str) -> Result<Vec<Ec2Host>, AwsError> {
    let mut hosts = Vec::new();
    for i in crate::ec2::instance::stack_instances(aws, stack, &["running"]).await? {
        let id = i.instance_id().unwrap_or_default().to_string();
        let ipv6 = i
            .network_interfaces()
            .iter()
            .flat_map(aws_sdk_ec2::types::InstanceNetworkInterface::ipv6_addresses)
            .find_map(|a| a.ipv6_address())
            .map(str::to_string);
        hosts.push(Ec2Host {
            name: tag_of(i.tags(), TAG_RESOURCE).unwrap_or(&id).to_string(),
            instance_id: id,
            public_ipv4: i.public_ip_address().map(str::to_string),
            private_ipv4: i.private_ip_address().map(str::to_string),
            ipv6,
        });
    }
    hosts.sort_by(|a, b| natural_key(&a.name).cmp(&natural_key(&b.name)));
    Ok(hosts)
}

/// `chat-10` after `chat-9`: the name with its trailing number compared as a number.
fn natural_key(name: &str) -> (&str, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem, num.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_sort_by_their_number() {
        let mut v = vec!["chat-10", "chat-2", "chat-1"];
        v.sort_by_key(|n| super::natural_key(n));
        assert_eq!(v, ["chat-1", "chat-2", "chat-10"]);
    }
}
