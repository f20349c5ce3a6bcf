//! `fullslack apply PLAN` (a saved plan, exactly, without asking) or `fullslack apply --stack
//! FILE` (plan now, show, ask unless `--yes`), under the stack's lock either way.

use fullslack_aws::Aws;

use super::aws_run::{locked, read_plan, show_and_run, Prompt};
use crate::args::{ApplyArgs, DEFAULT_STACK};
use crate::aws_spec::spec_of;
use crate::error::CliError;
use crate::output::Reporter;

/// `fullslack apply PLAN` or `fullslack apply --stack FILE [--yes]`.
pub async fn run(a: &ApplyArgs, r: &Reporter) -> Result<(), CliError> {
    match &a.plan {
        Some(p) => {
            let mut plan = read_plan(p)?;
            // An explicit --wait-timeout wins over the one saved in the plan.
            if let Some(secs) = a.opts.wait_timeout {
                plan.wait_timeout_secs = secs;
            }
            let aws = Aws::connect(&plan.region).await?;
            let stack = plan.stack.clone();
            // apply re-reads AWS under the lock: a plan another run made stale is refused.
            locked(&aws, &stack, "apply", &a.lock, r, || async {
                show_and_run(&aws, &plan, r, prompt(false)).await
            })
            .await
        }
        None => {
            let path = a
                .stack
                .stack
                .clone()
                .unwrap_or_else(|| DEFAULT_STACK.into());
            let s = crate::stack::load(&path)?;
            let spec = spec_of(&s, &a.opts, false).await?;
            let aws = Aws::connect(&spec.region).await?;
            // Plan under the lock: a second apply waits, then plans what the first left.
            locked(&aws, &spec.name, "apply", &a.lock, r, || async {
                let plan = fullslack_aws::plan(&aws, &spec).await?;
                show_and_run(&aws, &plan, r, prompt(!a.yes)).await
            })
            .await
        }
    }
}

fn prompt(ask: bool) -> Prompt {
    Prompt {
        what: "apply",
        question: ask.then(|| "Apply these changes?".to_string()),
        nothing: "Nothing to do.".to_string(),
    }
}
