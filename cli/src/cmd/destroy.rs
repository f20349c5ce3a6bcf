//! `fullslack destroy`: removes everything a stack created in AWS (found by its tags) after
//! showing the plan and asking, under the stack's lock.

use fullslack_aws::Aws;

use super::aws_run::{cancelled, confirm, locked, run_plan};
use crate::args::DestroyArgs;
use crate::aws_spec::spec_of;
use crate::error::CliError;
use crate::output::Reporter;

/// `fullslack destroy --stack FILE [--yes]`: shows what goes, asks, removes it.
pub async fn run(a: &DestroyArgs, r: &Reporter) -> Result<(), CliError> {
    let s = crate::stack::load(&a.stack.stack)?;
    let spec = spec_of(&s, &a.opts, true).await?;
    let aws = Aws::connect(&spec.region).await?;
    locked(&aws, &spec.name, "destroy", &a.lock, r, || async {
        let plan = fullslack_aws::plan_destroy(&aws, &spec).await?;
        if !r.json {
            print!("{}", plan.render());
            println!();
        }
        if plan.is_empty() {
            if r.json {
                r.print_json(&serde_json::json!({"applied": 0, "outputs": []}));
            } else {
                println!(
                    "Nothing to destroy: no resource is tagged fullslack:stack={}.",
                    s.name
                );
            }
            return Ok(());
        }
        if !a.yes
            && !confirm(&format!(
                "Destroy everything of stack `{}` listed above?",
                s.name
            ))?
        {
            return Err(cancelled("destroy"));
        }
        run_plan(&aws, &plan, r).await
    })
    .await
}
