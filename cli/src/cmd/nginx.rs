//! `fullslack nginx render`: the stack's Nginx site config with the command line's overrides,
//! to stdout or a file, and optionally a self-contained main `nginx.conf` including it.

use std::path::{Path, PathBuf};

use super::{usage, write_file};
use crate::args::RenderArgs;
use crate::error::CliError;
use crate::nginx::{self, SiteParams};
use crate::stack::Stack;

/// Renders the site (and main) config.
pub fn render(a: &RenderArgs) -> Result<(), CliError> {
    let s = crate::stack::load(&a.stack.stack)?;
    let site = nginx::render_site(&site_params(a, &s)?)?;
    match (&a.output, &a.main_prefix) {
        (None, Some(_)) => Err(usage(
            "--main-prefix needs --output",
            "pass --output SITE.conf so the main config can include it",
        )),
        (None, None) => {
            print!("{site}");
            Ok(())
        }
        (Some(out), prefix) => {
            write_file(out, &site)?;
            match prefix {
                Some(prefix) => write_main(prefix, out),
                None => Ok(()),
            }
        }
    }
}

/// The stack's site parameters, with every flag that was given applied over them.
fn site_params(a: &RenderArgs, s: &Stack) -> Result<SiteParams, CliError> {
    let mut p = SiteParams::from_stack(s)?;
    p.active = a.active;
    if let Some(d) = &a.cert_dir {
        p.cert_dir = d.clone();
    }
    p.acme_root = a.acme_root.clone();
    p.http_port = a.http_port;
    p.https_port = a.https_port;
    if let Some(v4) = a.listen_v4 {
        p.listen_v4 = Some(v4.to_string());
    }
    if let Some(v6) = a.listen_v6 {
        p.listen_v6 = Some(v6.to_string());
    }
    if a.no_ipv6 {
        p.listen_v6 = None;
    }
    if !a.blue.is_empty() {
        p.blue = a.blue.clone();
    }
    if !a.green.is_empty() {
        p.green = a.green.clone();
    }
    Ok(p)
}

/// Writes `PREFIX/nginx.conf`, which includes the site file by its absolute path.
fn write_main(prefix: &Path, site: &Path) -> Result<(), CliError> {
    let abs = |p: &Path| -> Result<PathBuf, CliError> {
        std::path::absolute(p).map_err(|source| CliError::Io {
            action: "cannot resolve",
            path: p.to_path_buf(),
            source,
        })
    };
    let prefix = abs(prefix)?;
    std::fs::create_dir_all(&prefix).map_err(|source| CliError::Io {
        action: "cannot create",
        path: prefix.clone(),
        source,
    })?;
    let site_abs = abs(site)?;
    let main = nginx::render_main(
        &prefix.display().to_string(),
        &site_abs.display().to_string(),
        false,
    )?;
    write_file(&prefix.join("nginx.conf"), &main)
}
