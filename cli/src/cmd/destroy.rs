//! `fullslack destroy`: removes everything a stack created in AWS (found by its tags) after
//! showing the plan and asking, under the stack's lock.

use fullslack_aws::Aws;

use super::aws_run::{locked, show_and_run, Prompt};
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
        let prompt = Prompt {
            what: "destroy",
            question: (!a.yes)
                .then(|| format!("Destroy everything of stack `{}` listed above?", s.name)),
            nothing: format!(
                "Nothing to destroy: no resource is tagged fullslack:stack={}.",
                s.name
            ),
        };
        show_and_run(&aws, &plan, r, prompt).await
    })
    .await
}
