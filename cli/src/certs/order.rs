//! One ACME order: HTTP-01 tokens written on every host where Nginx serves
//! `/.well-known/acme-challenge/` from the ACME webroot, validation, finalization with a fresh
//! key and CSR (rcgen, P-256), the chain. Tokens are removed whatever happens. A failed
//! validation comes back with the CA's problem document turned into a reason and a fix.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, Problem, RetryPolicy,
};

use super::CertsError;
use crate::commands::files;
use crate::runner::Runner;
use crate::secret::SecretString;

/// How long the CA may take to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new().timeout(Duration::from_secs(90));

/// What an order produced.
pub struct Issued {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM private key of the leaf (new for every order).
    pub key_pem: SecretString,
}

/// Orders a certificate for `names`, answering HTTP-01 on `hosts` under `acme_root`.
pub async fn order<R: Runner>(
    account: &Account,
    names: &[String],
    hosts: &[R],
    acme_root: &str,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, CertsError> {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new = NewOrder::new(&ids);
    if let Some(r) = replaces {
        new = new.replaces(r);
    }
    let mut order = account
        .new_order(&new)
        .await
        .map_err(|e| CertsError::acme("the CA refused the order", e))?;
    let mut placed = Vec::new();
    let answered = answer_challenges(&mut order, hosts, acme_root, &mut placed).await;
    let validated = match answered {
        Ok(()) => wait_until_ready(&mut order).await,
        Err(e) => Err(e),
    };
    for path in &placed {
        for h in hosts {
            // A token left behind is harmless (it proves nothing without the account key).
            let _ = h.run(&files::remove(path)).await;
        }
    }
    validated?;
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| CertsError::acme("the CA refused to finalize the order", e))?;
    let chain_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| CertsError::acme("the CA did not deliver the certificate", e))?;
    Ok(Issued {
        chain_pem,
        key_pem: SecretString::from(key_pem),
    })
}

/// Writes each pending authorization's token on every host and tells the CA to validate.
async fn answer_challenges<R: Runner>(
    order: &mut Order,
    hosts: &[R],
    acme_root: &str,
    placed: &mut Vec<String>,
) -> Result<(), CertsError> {
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(|e| CertsError::acme("cannot read an authorization", e))?;
        let name = authz.identifier().to_string();
        match authz.status {
            // The CA remembers a recent validation for this account and name.
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(CertsError::acme_str(format!(
                    "the authorization for {name} is {other:?}, not pending"
                )))
            }
        }
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            CertsError::acme_str(format!("the CA offers no HTTP-01 challenge for {name}"))
        })?;
        // The token becomes a file name on the host: only the base64url alphabet RFC 8555
        // allows, so a CA cannot make us write anywhere else.
        if challenge.token.is_empty()
            || !challenge
                .token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CertsError::acme_str(format!(
                "the CA sent an unusable token for {name}"
            )));
        }
        let path = format!(
            "{}/.well-known/acme-challenge/{}",
            acme_root.trim_end_matches('/'),
            challenge.token
        );
        let key_auth = challenge.key_authorization();
        for h in hosts {
            h.check(&files::write(&path, key_auth.as_str(), 0o644))
                .await?;
        }
        placed.push(path);
        challenge
            .set_ready()
            .await
            .map_err(|e| validation_error(&name, e))?;
    }
    Ok(())
}

/// Polls the order until it is ready; an invalid one is explained from its challenge's problem.
async fn wait_until_ready(order: &mut Order) -> Result<(), CertsError> {
    let status = match order.poll_ready(&POLL).await {
        Ok(s) => s,
        Err(instant_acme::Error::Api(p)) => return Err(failure(order, Some(p)).await),
        Err(e) => return Err(CertsError::acme("waiting for validation failed", e)),
    };
    if status == OrderStatus::Ready {
        Ok(())
    } else {
        Err(failure(order, None).await)
    }
}

/// The problem of the first failed challenge (what the CA saw), else the order's.
async fn failure(order: &mut Order, order_problem: Option<Problem>) -> CertsError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            if let Some(p) = state.challenges.iter().find_map(|c| c.error.clone()) {
                return CertsError::validation(&name, &p);
            }
        }
    }
    match order_problem {
        Some(p) => CertsError::validation("the order", &p),
        None => CertsError::acme_str("the order became invalid and the CA gave no reason".into()),
    }
}

fn validation_error(name: &str, e: instant_acme::Error) -> CertsError {
    match e {
        instant_acme::Error::Api(p) => CertsError::validation(name, &p),
        e => CertsError::acme(format!("cannot start the validation of {name}"), e),
    }
}
