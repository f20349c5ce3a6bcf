//! VPC and subnet lookups both targets need: the VPC an EC2 stack's resources go into, the VPC
//! of an ECS stack's subnets, and the subnets' address ranges (which the chat server trusts as
//! its load balancer's).

use aws_sdk_ec2::types::Filter;

use crate::error::SdkResultExt;
use crate::{Aws, AwsError};

/// The VPC of `subnet`, or the account's default VPC when the stack names no subnet.
pub(crate) async fn vpc_of(aws: &Aws, subnet: Option<&str>) -> Result<String, AwsError> {
    if let Some(subnet) = subnet {
        return vpc_of_subnet(aws, subnet, "check ec2.subnet_id and the region").await;
    }
    let out = aws
        .ec2()
        .describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .ctx("ec2:DescribeVpcs")?;
    out.vpcs()
        .first()
        .and_then(|v| v.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::invalid(
                format!("the account has no default VPC in {}", aws.region),
                "set ec2.subnet_id to a public subnet of the VPC to use",
            )
        })
}

/// The VPC a subnet belongs to; `hint` names the stack setting the subnet came from.
pub(crate) async fn vpc_of_subnet(
    aws: &Aws,
    subnet: &str,
    hint: &'static str,
) -> Result<String, AwsError> {
    let out = aws
        .ec2()
        .describe_subnets()
        .subnet_ids(subnet)
        .send()
        .await
        .ctx("ec2:DescribeSubnets")?;
    out.subnets()
        .first()
        .and_then(|s| s.vpc_id())
        .map(str::to_string)
        .ok_or_else(|| {
            AwsError::invalid(format!("subnet {subnet} not found in {}", aws.region), hint)
        })
}

/// The IPv4 CIDR blocks of `subnets`, sorted.
pub(crate) async fn subnet_cidrs(aws: &Aws, subnets: &[String]) -> Result<Vec<String>, AwsError> {
    let out = aws
        .ec2()
        .describe_subnets()
        .set_subnet_ids(Some(subnets.to_vec()))
        .send()
        .await
        .ctx("ec2:DescribeSubnets")?;
    let mut cidrs: Vec<String> = out
        .subnets()
        .iter()
        .filter_map(|s| s.cidr_block().map(str::to_string))
        .collect();
    cidrs.sort();
    cidrs.dedup();
    Ok(cidrs)
}
