//! `fullslack certs issue|status|renew`: the stack's hosts (this machine for a `local` stack,
//! SSH otherwise), the paths on them, and the outcome printed as text or `--json`.

use crate::args::{CertsArgs, CertsCommand};
use crate::certs::{self, DomainStatus, IssueReport, Options, Outcome};
use crate::commands::nginx::NginxPaths;
use crate::error::CliError;
use crate::output::Reporter;
use crate::runner::{LocalRunner, Runner, SshRunner};
use crate::stack::{Stack, Target};

use super::usage;

/// Runs one `certs` subcommand.
pub async fn run(c: &CertsCommand, r: &Reporter) -> Result<(), CliError> {
    let (a, force) = match c {
        CertsCommand::Issue(i) | CertsCommand::Renew(i) => (&i.certs, i.force),
        CertsCommand::Status(a) => (a, false),
    };
    let mut s = crate::stack::load(&a.stack.stack)?;
    crate::hosts::resolve(&mut s).await?;
    if s.target == Target::Ecs {
        return Err(usage(
            format!("stack `{}` runs on ECS: the ALB holds its certificate", s.name),
            "ECS stacks use an ACM certificate (ecs.certificate_arn); `certs` is for ec2, ssh and local stacks",
        ));
    }
    if !s.tls.enabled {
        return Err(usage(
            format!("stack `{}` has tls.enabled = false", s.name),
            "set tls.enabled = true and tls.acme_email in the stack file",
        ));
    }
    let o = options(a, &s);
    if s.target == Target::Local {
        return act(c, &s, &[LocalRunner], &o, force, r).await;
    }
    let mut runners = Vec::new();
    for t in super::lock::ssh_targets(&s, a.known_hosts.as_ref()) {
        runners.push(SshRunner::connect(&t).await?);
    }
    let res = act(c, &s, &runners, &o, force, r).await;
    for runner in runners {
        let _ = runner.close().await;
    }
    res
}

fn options(a: &CertsArgs, s: &Stack) -> Options {
    let mut o = Options::for_stack(&a.stack.stack, s);
    if let Some(d) = &a.cert_dir {
        o.cert_dir.clone_from(d);
    }
    o.acme_root.clone_from(&a.acme_root);
    o.nginx = NginxPaths {
        conf: a.nginx_conf.clone(),
        prefix: a.nginx_prefix.clone(),
    };
    o.dns_server = a.dns_server;
    o.skip_checks = a.skip_checks;
    o
}

async fn act<R: Runner>(
    c: &CertsCommand,
    s: &Stack,
    hosts: &[R],
    o: &Options,
    force: bool,
    r: &Reporter,
) -> Result<(), CliError> {
    let gh = crate::actions::detect();
    match c {
        CertsCommand::Issue(_) | CertsCommand::Renew(_) => {
            let out = match c {
                CertsCommand::Issue(_) => Outcome::Issued(certs::issue(s, hosts, o, force).await?),
                _ => certs::renew(s, hosts, o, force).await?,
            };
            print_outcome(&out, r);
            if let Some(gh) = gh {
                gh.summary(&crate::actions::certs_outcome_markdown(&s.name, &out));
            }
        }
        CertsCommand::Status(_) => {
            let st = certs::status(s, hosts, o).await?;
            print_status(&st, r);
            if let Some(gh) = gh {
                gh.summary(&crate::actions::certs_status_markdown(&s.name, &st));
            }
        }
    }
    Ok(())
}

fn print_outcome(out: &Outcome, r: &Reporter) {
    if r.json {
        r.print_json(out);
        return;
    }
    let issued = |verb: &str, rep: &IssueReport| {
        let c = &rep.certificate;
        println!(
            "{verb} a certificate for {} in {:.1} s: serial {}, expires {}, issuer {}",
            c.names.join(", "),
            rep.seconds,
            c.serial,
            certs::rfc3339(c.not_after),
            c.issuer
        );
        println!("installed on {} and Nginx reloaded", rep.hosts.join(", "));
    };
    match out {
        Outcome::Issued(rep) => issued("issued", rep),
        Outcome::Renewed(rep) => issued("renewed", rep),
        Outcome::NotDue {
            certificate,
            window,
        } => println!(
            "not due: the certificate for {} (serial {}) expires {}; renewal is due from {}",
            certificate.names.join(", "),
            certificate.serial,
            certs::rfc3339(certificate.not_after),
            certs::rfc3339(window.start)
        ),
    }
}

fn print_status(st: &[DomainStatus], r: &Reporter) {
    if r.json {
        r.print_json(&serde_json::json!({ "domains": st }));
        return;
    }
    for d in st {
        match &d.certificate {
            None => println!("{} on {}: no certificate", d.domain, d.host),
            Some(c) => {
                let cover = if d.covered {
                    ""
                } else {
                    " (does NOT cover this domain)"
                };
                println!("{} on {}{cover}", d.domain, d.host);
                println!("  issuer   {}", c.issuer);
                println!("  serial   {}", c.serial);
                println!("  expires  {} ({} days left)", c.not_after, c.days_left);
                println!(
                    "  window   {} .. {} ({:?})",
                    c.window_start, c.window_end, c.window_source
                );
                let due = if c.due { " (due now)" } else { "" };
                println!("  renewal  {}{due}", c.next_renewal_due);
            }
        }
    }
}
