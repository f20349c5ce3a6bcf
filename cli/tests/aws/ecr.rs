//! The stack's ECR repository and fresh registry credentials.

use super::*;
use fullslack_aws::ExposeSecret;

#[test]
fn ecr_repository_and_fresh_registry_credentials() {
    let moto = Moto::start(None);
    moto.env_here();
    let rt = rt();
    let aws = rt.block_on(Aws::connect("us-east-1")).expect("connect");
    let a = rt
        .block_on(fullslack_aws::ecr::registry_auth(&aws))
        .expect("auth");
    assert_eq!(a.username, "AWS");
    assert!(
        a.server.ends_with(".amazonaws.com") && !a.server.starts_with("https://"),
        "{}",
        a.server
    );
    assert!(!a.password.expose_secret().is_empty());
    let shown = format!("{a:?}");
    assert!(!shown.contains(a.password.expose_secret()), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    // Fetched again each time (tokens expire after 12 h): a second call answers too.
    let b = rt
        .block_on(fullslack_aws::ecr::registry_auth(&aws))
        .expect("auth again");
    assert_eq!(b.server, a.server);
}
