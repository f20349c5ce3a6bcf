//! Errors of the AWS boundary. SDK errors are classified (no credentials, bad credentials,
//! permission denied, region, limits, throttling, not found, network) so that every one
//! carries a hint that tells the user what to do. The error shows as one short sentence (the
//! call, AWS's code and message); the SDK's full text (`DisplayErrorContext`, kilobytes of
//! debug output) is logged at debug level, so `-vv` shows it.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS call had; decides the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No credentials were found by the provider chain.
    NoCredentials,
    /// Credentials were found but AWS refused them (expired, wrong key, bad signature).
    BadCredentials,
    /// The identity lacks an IAM permission.
    AccessDenied,
    /// The region is wrong, unknown or not enabled for the account.
    Region,
    /// An account quota or service limit was reached.
    Limit,
    /// AWS throttled the requests.
    Throttled,
    /// Something named does not exist.
    NotFound,
    /// AWS refused because of the resource's state (in use, a dependency, transitional).
    Conflict,
    /// A resource of that name exists already (made by hand or by another stack).
    AlreadyExists,
    /// The endpoint could not be reached.
    Network,
    /// Anything else.
    Other,
}

/// Errors surfaced by this crate.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("{action} failed: {}", short(.code.as_deref(), .message))]
    Api {
        /// What was being done (`ec2:DescribeInstances`, …).
        action: String,
        /// The class of failure.
        kind: ErrorKind,
        /// AWS error code, when AWS answered.
        code: Option<String>,
        /// AWS's message, or the first line of the SDK's text when AWS did not answer.
        message: String,
        /// The full error text (logged at debug level, shown with -vv).
        detail: String,
    },
    /// Someone else holds the stack's lock.
    #[error("stack `{stack}` is locked by {holder} since {since} ({command}){}", waited(*.waited_secs))]
    Locked {
        /// The stack.
        stack: String,
        /// `user@host`.
        holder: String,
        /// When it was taken.
        since: String,
        /// For what.
        command: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The stack asks for something this tool cannot do, or input is invalid.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// The fix.
        hint: String,
    },
    /// Reality changed since the plan was made.
    #[error("the plan no longer matches what exists in AWS: {detail}")]
    StalePlan {
        /// Which resource differs and how.
        detail: String,
    },
    /// A wait did not finish in time.
    #[error("{what} did not finish within {secs} s: {state}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        secs: u64,
        /// The last state seen.
        state: String,
    },
}

impl AwsError {
    /// Shorthand for [`AwsError::Invalid`].
    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        AwsError::Invalid {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The class of an API failure (`None` for non-API errors).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            AwsError::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// AWS's error code, if AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// What the user should do.
    pub fn hint(&self) -> String {
        match self {
            AwsError::Api { kind, .. } => match kind {
                ErrorKind::NoCredentials => "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile from ~/.aws/credentials (`aws configure`), or run where an instance/task role is available".into(),
                ErrorKind::BadCredentials => "AWS refused the credentials: check the access key and secret (and AWS_SESSION_TOKEN for temporary ones), refresh expired SSO/STS sessions (`aws sso login`), and check the machine's clock".into(),
                ErrorKind::AccessDenied => "the AWS identity lacks a permission for this action: grant it in IAM (the action is named above) or use a profile that has it".into(),
                ErrorKind::Region => "check the stack's region (e.g. `us-east-1`): it must exist and be enabled for the account (AWS console → Account → Regions)".into(),
                ErrorKind::Limit => "an AWS quota was reached: free unused resources (instances, Elastic IPs, load balancers) or request a quota increase in the Service Quotas console, then re-run".into(),
                ErrorKind::Throttled => "AWS throttled the requests: wait a minute and re-run".into(),
                ErrorKind::NotFound => "something the stack names does not exist in this account and region: check the ids in the stack file (subnets, security groups, certificate ARN) and the region".into(),
                ErrorKind::Conflict => "the resource is in use or in a transitional state: wait a little and re-run `fullslack plan` to see the current state".into(),
                ErrorKind::AlreadyExists => "a resource of that name already exists (made by hand or by another stack), and waiting will not change that: give this stack its own names in the stack file, or remove the other resource; `fullslack plan` shows what the stack owns".into(),
                ErrorKind::Network => "the AWS endpoint could not be reached: check the network, proxies, AWS_ENDPOINT_URL and the region".into(),
                ErrorKind::Other => "re-run with -vv for details; `fullslack plan` shows the current state".into(),
            },
            AwsError::Invalid { hint, .. } => hint.clone(),
            AwsError::Locked { .. } => "another apply, destroy or deploy of this stack is running: wait for it (--lock-wait 10m waits here), or if that run died, pass --break-lock (ask its holder first)".into(),
            AwsError::StalePlan { .. } => "make a new plan (`fullslack plan --stack FILE --out PLAN`), review it and apply that one".into(),
            AwsError::Timeout { .. } => "look at the resource in the AWS console (ECS service events, task stopped reasons, target health); raise --wait-timeout if it is only slow".into(),
        }
    }

    /// Classifies an SDK error of the call `action`.
    pub fn from_sdk<E, R>(action: &str, err: SdkError<E, R>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let code = err.code().map(str::to_string);
        let detail = DisplayErrorContext(&err).to_string();
        let kind = classify(code.as_deref(), &detail, &err);
        let message = match err.message() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => first_cause(&detail),
        };
        tracing::debug!("{action} failed: {detail}");
        AwsError::Api {
            action: action.to_string(),
            kind,
            code,
            message,
            detail,
        }
    }
}

fn waited(secs: u64) -> String {
    if secs > 0 {
        format!("; waited {secs} s")
    } else {
        String::new()
    }
}

/// `CODE: message`, one line, at most 300 characters.
fn short(code: Option<&str>, message: &str) -> String {
    let mut m: String = message.lines().next().unwrap_or_default().to_string();
    if m.chars().count() > 300 {
        m = m.chars().take(300).collect::<String>() + "…";
    }
    match code {
        Some(c) if !m.is_empty() => format!("{c}: {m}"),
        Some(c) => c.to_string(),
        None => m,
    }
}

/// Without an answer from AWS, the most specific cause in the SDK's text (`a: b: c` → `c`)
/// stripped of its debug dump.
fn first_cause(detail: &str) -> String {
    let cut = detail.find(" (").map(|i| &detail[..i]).unwrap_or(detail);
    let cause = cut.rsplit(": ").next().unwrap_or(cut).trim();
    if cause.is_empty() {
        "no answer".into()
    } else {
        cause.to_string()
    }
}

fn classify<E, R>(code: Option<&str>, detail: &str, err: &SdkError<E, R>) -> ErrorKind {
    if let Some(code) = code {
        return classify_code(code);
    }
    // An error body the SDK could not parse for this protocol (a proxy or an emulator answering
    // XML to a JSON service) still names the code: use it.
    if let Some(code) = detail
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c)
    {
        return classify_code(code);
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("credentials")
        && (lower.contains("no credentials")
            || lower.contains("failed to load")
            || lower.contains("not loaded")
            || lower.contains("could not find"))
    {
        return ErrorKind::NoCredentials;
    }
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            if lower.contains("dns error") || lower.contains("failed to lookup") {
                // An unknown region has no endpoint host name.
                ErrorKind::Region
            } else {
                ErrorKind::Network
            }
        }
        _ => ErrorKind::Other,
    }
}

/// Error codes (EC2, ECS, ECR, SSM, ELBv2 spellings) to a kind.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedException" => ErrorKind::AccessDenied,
        "AuthFailure"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "IncompleteSignature" => ErrorKind::BadCredentials,
        "OptInRequired" | "InvalidRegion" | "InvalidEndpointException" => ErrorKind::Region,
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => ErrorKind::Throttled,
        "DependencyViolation"
        | "IncorrectState"
        | "IncorrectInstanceState"
        | "ResourceInUse"
        | "ResourceInUseException"
        | "InvalidGroup.InUse"
        | "ClusterContainsServicesException"
        | "ClusterContainsTasksException"
        | "ConcurrentModificationException" => ErrorKind::Conflict,
        c if c.contains("LimitExceeded")
            || c.contains("QuotaExceeded")
            || c.starts_with("TooMany")
            || c == "InsufficientInstanceCapacity" =>
        {
            ErrorKind::Limit
        }
        c if c.contains("NotFound")
            || c.ends_with(".Malformed")
            || c == "InvalidParameterNotFound"
            || c == "ParameterNotFound"
            || c == "ClusterNotFoundException"
            || c == "ServiceNotFoundException"
            || c == "RepositoryNotFoundException" =>
        {
            ErrorKind::NotFound
        }
        c if c.contains("AlreadyExists") || c.contains("Duplicate") => ErrorKind::AlreadyExists,
        _ => ErrorKind::Other,
    }
}

/// `.ctx("ec2:RunInstances")` on an SDK result: classify the error, keep its full text.
pub(crate) trait SdkResultExt<T> {
    fn ctx(self, action: &str) -> Result<T, AwsError>;
}

impl<T, E, R> SdkResultExt<T> for Result<T, SdkError<E, R>>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    fn ctx(self, action: &str) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(action, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds_with_hints() {
        assert_eq!(
            classify_code("UnauthorizedOperation"),
            ErrorKind::AccessDenied
        );
        assert_eq!(classify_code("AuthFailure"), ErrorKind::BadCredentials);
        assert_eq!(classify_code("AddressLimitExceeded"), ErrorKind::Limit);
        assert_eq!(classify_code("VcpuLimitExceeded"), ErrorKind::Limit);
        assert_eq!(classify_code("InvalidGroup.NotFound"), ErrorKind::NotFound);
        assert_eq!(classify_code("ParameterNotFound"), ErrorKind::NotFound);
        assert_eq!(classify_code("OptInRequired"), ErrorKind::Region);
        assert_eq!(
            classify_code("InvalidKeyPair.Duplicate"),
            ErrorKind::AlreadyExists
        );
        let e = AwsError::Api {
            action: "ec2:RunInstances".into(),
            kind: ErrorKind::Limit,
            code: Some("VcpuLimitExceeded".into()),
            message:
                "You have requested more vCPU capacity than your current vCPU limit of 32 allows"
                    .into(),
            detail: "x".repeat(2000),
        };
        assert!(e.hint().contains("quota"));
        assert_eq!(
            e.to_string(),
            "ec2:RunInstances failed: VcpuLimitExceeded: You have requested more vCPU capacity than your current vCPU limit of 32 allows"
        );
    }
}
