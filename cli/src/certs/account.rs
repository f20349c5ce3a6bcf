//! The ACME directory of a stack and its account: created once per stack and directory, its
//! credentials (the account's private key) kept on this machine in a file only its owner
//! reads (mode 0600), never printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountBuilder, AccountCredentials, LetsEncrypt, NewAccount};

use super::CertsError;
use crate::stack::{AcmeDirectory, Stack};

/// The directory URL: `tls.directory_url`, else Let's Encrypt staging or production.
pub fn directory_url(stack: &Stack) -> String {
    match (&stack.tls.directory_url, stack.tls.directory) {
        (Some(u), _) => u.clone(),
        (None, AcmeDirectory::Production) => LetsEncrypt::Production.url().into(),
        (None, AcmeDirectory::Staging) => LetsEncrypt::Staging.url().into(),
    }
}

/// The credentials file of one directory: `account-<directory URL as a file name>.json`.
pub fn credentials_path(state_dir: &Path, directory: &str) -> PathBuf {
    let safe: String = directory
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join(format!("account-{safe}.json"))
}

fn builder(stack: &Stack) -> Result<AccountBuilder, CertsError> {
    match &stack.tls.directory_ca_file {
        Some(ca) => Account::builder_with_root(ca).map_err(|e| CertsError::Acme {
            what: format!("cannot trust the directory CA file {ca}"),
            source: e,
        }),
        None => Account::builder().map_err(|e| CertsError::Acme {
            what: "cannot set up the HTTPS client".into(),
            source: e,
        }),
    }
}

/// The stored account, if this machine has one for the directory.
pub async fn existing(stack: &Stack, state_dir: &Path) -> Result<Option<Account>, CertsError> {
    let directory = directory_url(stack);
    let path = credentials_path(state_dir, &directory);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CertsError::local(&path, e)),
    };
    let creds: AccountCredentials = serde_json::from_str(&text).map_err(|e| CertsError::Local {
        what: format!("cannot read the ACME account in {}: {e}", path.display()),
        hint: "the file is damaged: move it away and rerun (a new account is created)".into(),
    })?;
    let account = builder(stack)?
        .from_credentials(creds)
        .await
        .map_err(|e| CertsError::acme(format!("cannot reach the ACME directory {directory}"), e))?;
    Ok(Some(account))
}

/// The stored account, or a new one (its credentials saved before it is used).
pub async fn load_or_create(stack: &Stack, state_dir: &Path) -> Result<Account, CertsError> {
    if let Some(a) = existing(stack, state_dir).await? {
        return Ok(a);
    }
    let directory = directory_url(stack);
    let contact = stack.tls.acme_email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder(stack)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            CertsError::acme(format!("cannot create an ACME account at {directory}"), e)
        })?;
    save(&credentials_path(state_dir, &directory), &creds)?;
    tracing::info!(directory = %directory, id = %account.id(), "ACME account created");
    Ok(account)
}

/// Writes the credentials with mode 0600 from the first byte, then renames into place.
fn save(path: &Path, creds: &AccountCredentials) -> Result<(), CertsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CertsError::local(dir, e))?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(creds).map_err(|e| CertsError::Local {
        what: format!("cannot serialize the ACME account: {e}"),
        hint: "this is a bug: please report it".into(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CertsError::local(&tmp, e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| CertsError::local(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CertsError::local(path, e))
}
