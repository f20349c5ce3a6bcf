//! A rough monthly cost for what a stack runs, from a small built-in price table (us-east-1
//! on-demand list prices, Linux, 730 hours a month). It is labelled an estimate everywhere it
//! is shown: other regions, data transfer, CloudWatch, ECR storage and taxes are not included.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::resource::{Kind, Resource};

/// Hours in the month AWS bills by.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// On-demand USD per hour for the instance types this table knows.
pub fn instance_hourly(instance_type: &str) -> Option<f64> {
    Some(match instance_type {
        "t3.nano" => 0.0052,
        "t3.micro" => 0.0104,
        "t3.small" => 0.0208,
        "t3.medium" => 0.0416,
        "t3.large" => 0.0832,
        "t3.xlarge" => 0.1664,
        "t3.2xlarge" => 0.3328,
        "t4g.nano" => 0.0042,
        "t4g.micro" => 0.0084,
        "t4g.small" => 0.0168,
        "t4g.medium" => 0.0336,
        "t4g.large" => 0.0672,
        "t4g.xlarge" => 0.1344,
        "m5.large" => 0.096,
        "m6i.large" => 0.096,
        "m6i.xlarge" => 0.192,
        "m7i.large" => 0.1008,
        "m7i.xlarge" => 0.2016,
        "m6g.large" => 0.077,
        "m7g.large" => 0.0816,
        "c5.large" => 0.085,
        "c6i.large" => 0.085,
        "c6i.xlarge" => 0.17,
        "c7i.large" => 0.08925,
        "c7i.xlarge" => 0.1785,
        "c7g.large" => 0.0725,
        "r6i.large" => 0.126,
        "r7i.large" => 0.1323,
        _ => return None,
    })
}

/// gp3 storage, USD per GiB-month.
pub const GP3_GB_MONTH: f64 = 0.08;
/// A public IPv4 address (Elastic IP or the ALB's), USD per hour.
pub const IPV4_HOURLY: f64 = 0.005;
/// Fargate (Linux/x86), USD per vCPU-hour.
pub const FARGATE_VCPU_HOURLY: f64 = 0.04048;
/// Fargate (Linux/x86), USD per GB-hour.
pub const FARGATE_GB_HOURLY: f64 = 0.004445;
/// An ALB, USD per hour, plus one LCU-hour for light traffic.
pub const ALB_HOURLY: f64 = 0.0225 + 0.008;

/// One priced line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostLine {
    /// What is priced.
    pub item: String,
    /// USD per month.
    pub monthly_usd: f64,
}

/// The estimate for a stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Priced lines.
    pub lines: Vec<CostLine>,
    /// Things the table has no price for.
    pub unpriced: Vec<String>,
}

impl CostEstimate {
    /// Sum of the lines.
    pub fn total(&self) -> f64 {
        // `+ 0.0`: an empty f64 sum is -0.0, which would print as "$-0.00".
        self.lines.iter().map(|l| l.monthly_usd).sum::<f64>() + 0.0
    }

    /// Estimates what the desired resources cost per month.
    pub fn of(resources: &[Resource]) -> CostEstimate {
        let mut e = CostEstimate::default();
        for r in resources {
            match r.kind {
                Kind::Instance => {
                    let t = r.text("instance_type");
                    match instance_hourly(t) {
                        Some(h) => e.lines.push(CostLine {
                            item: format!("instance {} ({t})", r.name),
                            monthly_usd: h * HOURS_PER_MONTH,
                        }),
                        None => e.unpriced.push(format!("instance {} ({t})", r.name)),
                    }
                    if let Ok(gb) = r.text("volume_gb").parse::<f64>() {
                        e.lines.push(CostLine {
                            item: format!("{gb} GiB gp3 volume of {}", r.name),
                            monthly_usd: gb * GP3_GB_MONTH,
                        });
                    }
                }
                Kind::ElasticIp => e.lines.push(CostLine {
                    item: format!("public IPv4 address {}", r.name),
                    monthly_usd: IPV4_HOURLY * HOURS_PER_MONTH,
                }),
                Kind::LoadBalancer => {
                    let zones = r.list("subnets").len().max(1) as f64;
                    e.lines.push(CostLine {
                        item: format!("load balancer {} (1 LCU)", r.name),
                        monthly_usd: ALB_HOURLY * HOURS_PER_MONTH,
                    });
                    e.lines.push(CostLine {
                        item: format!("{zones} public IPv4 address(es) of the load balancer"),
                        monthly_usd: zones * IPV4_HOURLY * HOURS_PER_MONTH,
                    });
                }
                Kind::EcsService => {
                    let n: f64 = r.text("desired_count").parse().unwrap_or(0.0);
                    let cpu: f64 = r.input("cpu").parse().unwrap_or(0.0) / 1024.0;
                    let gb: f64 = r.input("memory").parse().unwrap_or(0.0) / 1024.0;
                    e.lines.push(CostLine {
                        item: format!("{n} Fargate task(s) of {cpu} vCPU / {gb} GB"),
                        monthly_usd: n
                            * (cpu * FARGATE_VCPU_HOURLY + gb * FARGATE_GB_HOURLY)
                            * HOURS_PER_MONTH,
                    });
                }
                _ => {}
            }
        }
        e
    }

    /// The estimate as text, labelled as such.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "Estimated monthly cost once applied (ESTIMATE: us-east-1 on-demand list prices, 730 h/month; excludes data transfer, logs, storage of images and taxes):\n",
        );
        for l in &self.lines {
            let _ = writeln!(out, "  {:<56} ${:>9.2}", l.item, l.monthly_usd);
        }
        for u in &self.unpriced {
            let _ = writeln!(out, "  {u:<56} (no price in the table)");
        }
        // An unpriced item makes the total a lower bound, and the total says so.
        let unpriced = match self.unpriced.len() {
            0 => String::new(),
            1 => " + 1 item not priced".to_string(),
            n => format!(" + {n} items not priced"),
        };
        let _ = writeln!(
            out,
            "  {:<56} ${:>9.2}/month{unpriced}",
            "total (estimate)",
            self.total()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_an_ec2_stack() {
        let rs = vec![
            Resource::new(Kind::Instance, "s-1")
                .attr("instance_type", "t3.small")
                .attr("volume_gb", "20"),
            Resource::new(Kind::ElasticIp, "s-1"),
        ];
        let e = CostEstimate::of(&rs);
        let want = 0.0208 * 730.0 + 20.0 * 0.08 + 0.005 * 730.0;
        assert!((e.total() - want).abs() < 1e-9);
        assert!(e.render().contains("ESTIMATE"));
        let e =
            CostEstimate::of(
                &[Resource::new(Kind::Instance, "x").attr("instance_type", "z9.huge")],
            );
        assert_eq!(e.unpriced, vec!["instance x (z9.huge)".to_string()]);
        assert!(
            e.render().contains("$     0.00/month + 1 item not priced"),
            "{}",
            e.render()
        );
        // The example stacks' types are in the table.
        for t in ["t3.small", "c7i.large", "t4g.small"] {
            assert!(instance_hourly(t).is_some(), "{t}");
        }
    }
}
