//! SDK configuration: one HTTPS client on rustls + ring (no aws-lc, no cmake), the region from
//! the stack, credentials from the standard chain, and `AWS_ENDPOINT_URL` honoured (how the
//! tests point every client at a moto server on loopback).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Connected SDK configuration for one region, and the clients built from it.
#[derive(Debug, Clone)]
pub struct Aws {
    /// Region every client talks to.
    pub region: String,
    /// Endpoint override, when set (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    sdk: SdkConfig,
}

impl Aws {
    /// Loads credentials and settings for `region`. Nothing is sent yet: credential problems
    /// surface on the first call, classified by [`crate::AwsError::from_sdk`].
    pub async fn connect(region: &str) -> Result<Aws, crate::AwsError> {
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(crate::AwsError::invalid(
                format!("`{region}` is not an AWS region name"),
                "set the stack's region to a name such as `us-east-1` or `eu-central-1`",
            ));
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http);
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|s| !s.is_empty());
        if let Some(url) = &endpoint {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        Ok(Aws {
            region: region.to_string(),
            endpoint,
            sdk,
        })
    }

    /// EC2.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    /// ECR.
    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk)
    }

    /// ECS.
    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk)
    }

    /// SSM Parameter Store.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk)
    }

    /// Elastic Load Balancing v2 (ALB).
    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk)
    }

    /// STS (the account id).
    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }
}

/// Looks for credentials the way every command will, through the SDK's default chain
/// (environment, profile files with SSO and `credential_process`, web identity, the ECS
/// container role, the EC2 instance role), without calling an AWS API. `home` is where the
/// profile files are (`~/.aws/config` and `~/.aws/credentials`; `AWS_CONFIG_FILE` and
/// `AWS_SHARED_CREDENTIALS_FILE` still win). Returns the name of the provider that answered.
// `ProfileFiles` is aws-config's name for `aws_runtime`'s `EnvConfigFiles` (which would be a
// dependency of its own for one type).
#[allow(deprecated)]
pub async fn find_credentials(home: Option<&std::path::Path>) -> Result<String, crate::AwsError> {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    use aws_credential_types::provider::ProvideCredentials;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .http_client(http);
    if let Some(h) = home {
        let file = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| h.join(default))
        };
        // A file that does not exist is an empty one (the SDK refuses a named missing file).
        let mut files = ProfileFiles::builder();
        for (kind, path) in [
            (
                ProfileFileKind::Config,
                file("AWS_CONFIG_FILE", ".aws/config"),
            ),
            (
                ProfileFileKind::Credentials,
                file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
            ),
        ] {
            files = if path.is_file() {
                files.with_file(kind, path)
            } else {
                files.with_contents(kind, "")
            };
        }
        loader = loader.profile_files(files.build());
    }
    let sdk = loader.load().await;
    let none = |why: String| crate::AwsError::Api {
        action: "the AWS credential chain".into(),
        kind: crate::ErrorKind::NoCredentials,
        code: None,
        message: why.clone(),
        detail: why,
    };
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| none("no credential provider is configured".into()))?;
    match provider.provide_credentials().await {
        // The provider's name is only in the Debug text (which redacts the secret).
        Ok(c) => Ok(format!("{c:?}")
            .split("provider_name: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("default chain")
            .to_string()),
        Err(e) => Err(none(format!(
            "no credentials found: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ))),
    }
}
