//! `fullslack plan`: what `apply` would change in AWS; optionally saved for `apply PLAN`.
//! Exit 0 without changes, 2 with changes ([`CliError::PendingChanges`]).

use fullslack_aws::Aws;

use super::aws_run::{print_plan, write_plan};
use crate::args::PlanArgs;
use crate::aws_spec::spec_of;
use crate::error::CliError;
use crate::output::Reporter;

/// `fullslack plan`: exit 0 without changes, 2 with changes (`CliError::PendingChanges`).
pub async fn run(a: &PlanArgs, r: &Reporter) -> Result<(), CliError> {
    let s = crate::stack::load(&a.stack.stack)?;
    let spec = spec_of(&s, &a.opts, false).await?;
    let aws = Aws::connect(&spec.region).await?;
    let plan = fullslack_aws::plan(&aws, &spec).await?;
    print_plan(&plan, r);
    if let Some(gh) = crate::actions::detect() {
        gh.summary(&crate::actions::plan_markdown(&plan));
    }
    if let Some(out) = &a.out {
        write_plan(&plan, out)?;
        if !r.json {
            println!(
                "\nSaved the plan to {}: apply it with `fullslack apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    if plan.is_empty() {
        Ok(())
    } else {
        Err(CliError::PendingChanges)
    }
}
