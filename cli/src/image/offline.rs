//! The offline build: an image FROM scratch holding a prebuilt `fullslack-chat`, exactly the
//! shared libraries `ldd` reports for it (at the paths it reports, the dynamic loader
//! included), the `fullslack-healthcheck` probe, a non-root user and nothing else. No base
//! image is pulled, so it builds on an engine that cannot reach any registry.
//!
//! Its layers go from what changes least to what changes on every release: libraries and
//! `/etc`, then `/data`, then the probe, then the server binary on top. A Docker layer is
//! named by its chain (itself and everything below it), so a release whose binary alone
//! changed shares every layer but the top one with the last release, and the registry-free
//! deploy sends only that one (`deploy::transfer`).
//!
//! The web client is embedded in every build of the server (rust-embed with `debug-embed`),
//! so the binary is all the image needs. The server's data (SQLite store, generated JWT secret) lives in `/data`,
//! owned by the image's user: mount a volume there to keep it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::context::Context;
use super::ImageError;

/// Where the server binary lives in the image.
pub const SERVER_PATH: &str = "/usr/local/bin/fullslack-chat";
/// Where the probe lives in the image.
pub const PROBE_PATH: &str = "/usr/local/bin/fullslack-healthcheck";
/// The image's user and group id (not 0; high enough not to collide with a host user).
pub const UID: u32 = 10001;
/// Port the server listens on inside the container.
pub const PORT: u16 = 8080;
/// The environment every chat-server image carries (both build paths; `cli/templates/Dockerfile`
/// spells the same line, a unit test keeps them equal). A deployed image runs in production
/// mode: it refuses to start without `FULLSLACK_AUTH__JWT_SECRET` instead of signing with a
/// secret of its own, so every node and every release accept each other's tokens. Only a
/// `local` stack sets `FULLSLACK_MODE=local` on its container.
pub const IMAGE_ENV: &[(&str, &str)] = &[
    ("FULLSLACK_MODE", "production"),
    ("FULLSLACK_LISTEN", "0.0.0.0:8080"),
    ("FULLSLACK_DATA_DIR", "/data"),
];

/// `ENV A=1 B=2` of [`IMAGE_ENV`].
pub fn env_instruction() -> String {
    let pairs: Vec<String> = IMAGE_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("ENV {}", pairs.join(" "))
}

/// What goes into an offline image.
#[derive(Debug, Clone)]
pub struct OfflineInputs {
    /// The `fullslack-chat` binary.
    pub server: PathBuf,
    /// The `fullslack-healthcheck` binary; `None` builds without a HEALTHCHECK (the
    /// orchestrator's own check of `/healthz` must then do).
    pub probe: Option<PathBuf>,
    /// Drop the server binary's symbol table (binutils `strip`): ~4 MB less, but panics and
    /// profilers show addresses instead of function names.
    pub strip: bool,
    /// Image labels, written as one `LABEL` instruction (the classic builder commits one
    /// image per instruction, so one label per step would cost about a second each).
    pub labels: BTreeMap<String, String>,
}

/// Parses `ldd` output into the absolute library paths it names (the loader included; the
/// kernel's vDSO has no file and is skipped). `not found` libraries are an error.
pub fn parse_ldd(out: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    let mut missing = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rhs)) => {
                let rhs = rhs.trim();
                if rhs.starts_with("not found") {
                    missing.push(name.trim().to_string());
                    continue;
                }
                rhs.split_whitespace().next().unwrap_or_default()
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            let p = PathBuf::from(path);
            if !libs.contains(&p) {
                libs.push(p);
            }
        }
    }
    if missing.is_empty() {
        Ok(libs)
    } else {
        Err(format!("missing shared libraries: {}", missing.join(", ")))
    }
}

/// The shared libraries of `binary` per `ldd`; empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Binary(format!("cannot run ldd: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(ImageError::Binary(format!(
            "ldd {}: {}",
            binary.display(),
            stderr.trim()
        )));
    }
    parse_ldd(&stdout).map_err(|e| ImageError::Binary(format!("{}: {e}", binary.display())))
}

fn check_binary(p: &Path, what: &str) -> Result<(), ImageError> {
    let meta = std::fs::metadata(p).map_err(|e| {
        ImageError::Binary(format!(
            "{what} {} is missing or unreadable: {e}",
            p.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(ImageError::Binary(format!(
            "{what} {} is not a file",
            p.display()
        )));
    }
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"\x7fELF";
    if !ok {
        return Err(ImageError::Binary(format!(
            "{what} {} is not an ELF executable (images run Linux binaries)",
            p.display()
        )));
    }
    Ok(())
}

/// The Dockerfile of the offline context.
pub fn dockerfile(with_probe: bool, labels: &BTreeMap<String, String>) -> String {
    let mut d = String::from(
        "# Generated by `fullslack build --offline`: no base image, only what the binary needs.\n\
         FROM scratch\n\
         COPY rootfs/ /\n\
         # COPY creates /data owned by the user, so the server can write its store there.\n",
    );
    d.push_str(&format!("COPY --chown={UID}:{UID} data/ /data/\n"));
    // The binaries last, the server on top: it changes on every release, and a layer below a
    // changed one is a new layer too (see the module doc).
    if with_probe {
        d.push_str("COPY probe/ /\n");
    }
    d.push_str("COPY server/ /\n");
    d.push_str(&format!("USER {UID}:{UID}\n"));
    d.push_str(&env_instruction());
    d.push('\n');
    d.push_str("WORKDIR /data\n");
    d.push_str(&format!("EXPOSE {PORT}/tcp\n"));
    if with_probe {
        d.push_str(&format!(
            "HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD [\"{PROBE_PATH}\"]\n"
        ));
    }
    d.push_str("STOPSIGNAL SIGTERM\n");
    d.push_str(&format!("ENTRYPOINT [\"{SERVER_PATH}\"]\n"));
    // Last: `created` changes on every build, and everything above stays cached.
    if !labels.is_empty() {
        let quote = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
            .collect();
        d.push_str(&format!("LABEL {}\n", pairs.join(" ")));
    }
    d
}

/// A stripped copy of the server binary in the temp directory, removed on drop.
struct Stripped(PathBuf);

impl Drop for Stripped {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn strip(binary: &Path) -> Result<Stripped, ImageError> {
    let out = std::env::temp_dir().join(format!(
        "fullslack-chat-stripped-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let guard = Stripped(out.clone());
    let res = Command::new("strip")
        .arg("--strip-unneeded")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .output()
        .map_err(|e| {
            ImageError::Binary(format!(
                "cannot run strip (Debian package binutils) for --strip: {e}"
            ))
        })?;
    if !res.status.success() {
        return Err(ImageError::Binary(format!(
            "strip {}: {}",
            binary.display(),
            String::from_utf8_lossy(&res.stderr).trim()
        )));
    }
    Ok(guard)
}

/// Assembles the offline build context: `Dockerfile`, `rootfs/` (libraries, `/etc/passwd`,
/// `/etc/group`, `/etc/nsswitch.conf`, `/tmp`), an empty `data/`, and `probe/` and `server/`
/// each holding one binary at its path in the image (one layer each).
pub fn context(inputs: &OfflineInputs) -> Result<Context, ImageError> {
    check_binary(&inputs.server, "server binary")?;
    let mut libs = shared_libraries(&inputs.server)?;
    if let Some(p) = &inputs.probe {
        check_binary(p, "health-check binary")?;
        for l in shared_libraries(p)? {
            if !libs.contains(&l) {
                libs.push(l);
            }
        }
    }
    libs.sort();
    let mut ctx = Context::new();
    ctx.add_bytes(
        "Dockerfile",
        dockerfile(inputs.probe.is_some(), &inputs.labels).as_bytes(),
        0o644,
    )?;
    ctx.add_dir("rootfs", 0o755)?;
    ctx.add_dir("rootfs/tmp", 0o1777)?;
    ctx.add_dir("rootfs/etc", 0o755)?;
    ctx.add_bytes(
        "rootfs/etc/passwd",
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             fullslack:x:{UID}:{UID}:fullslack chat server:/data:/sbin/nologin\n"
        )
        .as_bytes(),
        0o644,
    )?;
    ctx.add_bytes(
        "rootfs/etc/group",
        format!("root:x:0:\nfullslack:x:{UID}:\n").as_bytes(),
        0o644,
    )?;
    // Without it glibc resolves host names in its own default order; say it plainly.
    ctx.add_bytes("rootfs/etc/nsswitch.conf", b"hosts: files dns\n", 0o644)?;
    let stripped = inputs.strip.then(|| strip(&inputs.server)).transpose()?;
    let server = stripped
        .as_ref()
        .map_or(inputs.server.as_path(), |s| s.0.as_path());
    // Each binary in its own directory, one COPY (one layer) each; parent directories are
    // implied, as for the libraries below.
    ctx.add_file(&format!("server{SERVER_PATH}"), server)?;
    if let Some(p) = &inputs.probe {
        ctx.add_file(&format!("probe{PROBE_PATH}"), p)?;
    }
    // Each library at the path ldd reported (symlinks resolved to their content): the loader
    // path is the one written into the binary, the others are where the loader looks.
    for lib in &libs {
        let rel = lib.to_string_lossy();
        ctx.add_file(&format!("rootfs{rel}"), lib)?;
    }
    ctx.add_dir("data", 0o755)?;
    // An empty source directory would leave COPY nothing to create /data from.
    ctx.add_bytes("data/.keep", b"", 0o644)?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_build_paths_set_the_same_environment_with_production_mode() {
        let multi_stage = include_str!("../../templates/Dockerfile");
        let line = env_instruction();
        assert!(line.contains("FULLSLACK_MODE=production"), "{line}");
        assert!(
            multi_stage.lines().any(|l| l == line),
            "cli/templates/Dockerfile must carry `{line}`"
        );
        assert!(dockerfile(true, &BTreeMap::new())
            .lines()
            .any(|l| l == line));
    }

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffc6b3f2000)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                   \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f4)\n";
        let libs = parse_ldd(out).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        let err = parse_ldd("\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")
            .unwrap_err();
        assert!(err.contains("libfoo.so.1"), "{err}");
    }

    #[test]
    fn dockerfile_runs_as_non_root_with_healthcheck() {
        let labels = BTreeMap::from([
            (
                "org.opencontainers.image.revision".to_string(),
                "abc".to_string(),
            ),
            ("x".to_string(), "say \"hi\"".to_string()),
        ]);
        let d = dockerfile(true, &labels);
        assert!(d.starts_with("# Generated"));
        assert!(d.contains("FROM scratch\n"));
        assert!(d.contains("USER 10001:10001\n"));
        assert!(d.contains(
            "HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD [\"/usr/local/bin/fullslack-healthcheck\"]\n"
        ));
        assert!(d.contains("ENTRYPOINT [\"/usr/local/bin/fullslack-chat\"]\n"));
        // The layers, least changing first: the server binary is the top one.
        let copies: Vec<&str> = d.lines().filter(|l| l.starts_with("COPY")).collect();
        assert_eq!(
            copies,
            [
                "COPY rootfs/ /",
                "COPY --chown=10001:10001 data/ /data/",
                "COPY probe/ /",
                "COPY server/ /"
            ]
        );
        assert!(
            d.ends_with(
                "LABEL \"org.opencontainers.image.revision\"=\"abc\" \"x\"=\"say \\\"hi\\\"\"\n"
            ),
            "{d}"
        );
        assert!(!dockerfile(false, &BTreeMap::new()).contains("HEALTHCHECK"));
        assert!(!dockerfile(false, &BTreeMap::new()).contains("LABEL"));
    }

    #[test]
    fn refuses_what_is_not_a_binary() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script.sh");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = context(&OfflineInputs {
            server: f,
            probe: None,
            strip: false,
            labels: BTreeMap::new(),
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("not an ELF"), "{e}");
        let e = context(&OfflineInputs {
            server: dir.path().join("nope"),
            probe: None,
            strip: false,
            labels: BTreeMap::new(),
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
