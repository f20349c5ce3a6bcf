//! Getting the release's image onto the host.
//!
//! Module map:
//! - [`ensure_image`]: skip (the host has the image id), stream (no registry) or log in and
//!   pull (registry; the password goes on stdin).
//! - [`stream`] and its helpers: the registry-free path. The host is asked which layer chains
//!   it has ([`host_chains`]). When it has none of the image's, `docker save` here is piped
//!   straight into `docker load` there ([`pipe_whole`]: both run side by side). Otherwise
//!   `docker save` writes a spool file in a temporary directory (removed when the transfer
//!   ends, whatever happened): its `manifest.json`, which maps each layer to its
//!   `<dir>/layer.tar`, comes at the end of the stream, so the tar cannot be filtered as it is
//!   produced. The tar sent into `docker load` is the saved one without the `layer.tar` of
//!   every layer whose chain ID the host has ([`plan_omissions`]). Docker's legacy `docker
//!   load` (graphdriver image store) looks each layer up by chain ID and opens `layer.tar`
//!   only when the layer is missing, so such a tar loads; a redeploy where only the binary
//!   changed sends the binary's layer and the small metadata files. A host whose `docker
//!   load` rejects the partial tar (a containerd image store, or a layer removed in between)
//!   gets the whole tar right after, so it is never left without the image. Optionally the
//!   stream is gzip-compressed (`--compress-image`; `docker load` takes gzip): it costs more
//!   CPU here than it saves on a fast link, see docs/deploy.md.
//!
//! Memory stays bounded: the spool is read entry by entry, only the small JSON files
//! (manifest, image config) are held, and the filtered tar is written by a blocking thread
//! into a pipe the connection reads from.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Target, Transfer};
use crate::commands::docker;
use crate::error::CliError;
use crate::runner::{LocalRunner, RunError, Runner};

/// What the transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Sent {
    /// Bytes streamed over the connection (compressed when `compressed`; both attempts when
    /// `fell_back`).
    pub bytes: u64,
    /// Whether the host already had the image (nothing sent).
    pub skipped: bool,
    /// Layers whose content was sent.
    pub layers_sent: usize,
    /// Layers the host already had: their `layer.tar` was left out of the stream.
    pub layers_skipped: usize,
    /// Uncompressed size of the `layer.tar` files left out.
    pub bytes_not_sent: u64,
    /// Whether the stream was gzip-compressed.
    pub compressed: bool,
    /// Whether the host's `docker load` rejected the tar without the layers it had, and the
    /// whole image was sent after it.
    pub fell_back: bool,
    /// How long the transfer took (spool, host query, stream, load), in milliseconds.
    pub ms: u64,
}

impl Sent {
    /// One line for the deploy output: what went over the connection.
    pub fn describe(&self) -> String {
        if self.skipped {
            return "image already there".into();
        }
        let mut s = format!("{} bytes of image sent", self.bytes);
        if self.layers_sent + self.layers_skipped > 0 {
            s.push_str(&format!(
                " ({} layer(s) sent, {} skipped: the host had them, {} bytes not sent",
                self.layers_sent, self.layers_skipped, self.bytes_not_sent
            ));
            if self.compressed {
                s.push_str("; gzip");
            }
            s.push(')');
        }
        if self.fell_back {
            s.push_str(
                "; the host's docker load refused the image without the layers it had, so the whole image was sent",
            );
        }
        s
    }
}

/// The image id the host has for `image`, if any.
pub async fn host_image_id<R: Runner>(r: &R, image: &str) -> Result<Option<String>, CliError> {
    let out = r.run(&docker::image_id(image)).await?;
    Ok(out
        .success()
        .then(|| out.stdout.trim().to_string())
        .filter(|s| !s.is_empty()))
}

/// Puts the image on the host; what was sent.
pub async fn ensure_image<R: Runner>(
    r: &R,
    target: &Target,
    how: &Transfer,
) -> Result<Sent, CliError> {
    let there = host_image_id(r, &target.image).await?;
    // A registry pull always runs: it is cheap when the host has every layer, and it proves
    // the host can pull (credentials, network) before the release depends on it.
    let skip = match how {
        Transfer::Stream { always, .. } => !always && there.is_some() && there == target.image_id,
        Transfer::AlreadyThere => there.is_some(),
        Transfer::Registry { .. } => false,
    };
    if skip {
        return Ok(Sent {
            skipped: true,
            ..Sent::default()
        });
    }
    match how {
        Transfer::AlreadyThere => Err(CliError::Failed {
            message: format!(
                "{} no longer has the image {} of this release",
                r.host(),
                target.image
            ),
            hint: "deploy that version again with `fullslack deploy --version TAG` (the host keeps only the last --keep releases' images)".into(),
        }),
        Transfer::Stream { always, compress } => {
            stream(r, &target.image, *compress, *always).await
        }
        Transfer::Registry {
            server,
            username,
            password,
        } => {
            r.check(&docker::login(server, username, password.clone()))
                .await?;
            r.check(&docker::pull(&target.image)).await?;
            Ok(Sent::default())
        }
    }
}

/// `docker save` here (spooled), the layers the host lacks piped into `docker load` there;
/// the whole image after a refused partial load. `as_if_absent` (`--send-image`): the host's
/// images with exactly this image's layers (the image itself, another tag of it, a rebuild
/// of the same inputs, the build's last intermediate images) do not count, so the host gets
/// what a host without this image would get: the layers no other image of it has.
pub async fn stream<R: Runner>(
    r: &R,
    image: &str,
    compress: bool,
    as_if_absent: bool,
) -> Result<Sent, CliError> {
    let started = std::time::Instant::now();
    let mut sent = stream_image(r, image, compress, as_if_absent).await?;
    sent.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(sent)
}

async fn stream_image<R: Runner>(
    r: &R,
    image: &str,
    compress: bool,
    as_if_absent: bool,
) -> Result<Sent, CliError> {
    // The image's layers here first: when the host has none of them, nothing is left out and
    // the spool (the whole image written to disk before the first byte goes) is not needed.
    let here = LocalRunner
        .check(&docker::rootfs_layers(&[image.to_string()]))
        .await?;
    let diffs: Vec<String> = serde_json::from_str(here.stdout.trim()).unwrap_or_default();
    // What the host has only decides what may be left out: if asking fails, send it all.
    let unlike = as_if_absent.then_some(diffs.as_slice());
    let have = match host_chains(r, unlike).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(host = %r.host(), error = %e, "cannot list the host's layers; sending the whole image");
            HashSet::new()
        }
    };
    if !compress && !chain_ids(&diffs).iter().any(|c| have.contains(c)) {
        let bytes = pipe_whole(r, image).await?;
        return Ok(Sent {
            bytes,
            layers_sent: diffs.len(),
            ..Sent::default()
        });
    }
    let spool_dir = tempfile::Builder::new()
        .prefix("fullslack-image-")
        .tempdir()
        .map_err(|e| {
            failed(format!(
                "cannot make a temporary directory for the image: {e}"
            ))
        })?;
    let spool = spool_dir.path().join("image.tar");
    LocalRunner
        .check(&docker::save_to(image, &spool.to_string_lossy()))
        .await?;
    let index = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || SaveIndex::read(&spool))
            .await
            .map_err(|e| failed(format!("reading the saved image: {e}")))??
    };
    let omit = plan_omissions(&index, &have);
    let layers = index.layer_paths.len();
    let first = send(r, &spool, omit.clone(), compress).await?;
    let mut sent = Sent {
        bytes: first.bytes,
        skipped: false,
        layers_sent: layers - omit.layers,
        layers_skipped: omit.layers,
        bytes_not_sent: omit.bytes,
        compressed: compress,
        fell_back: false,
        ms: 0,
    };
    if first.loaded {
        return Ok(sent);
    }
    if omit.paths.is_empty() {
        return Err(first.error());
    }
    tracing::warn!(host = %r.host(), stderr = %first.stderr.trim(), "docker load refused the image without the layers the host has; sending the whole image");
    let whole = send(r, &spool, Omissions::default(), compress).await?;
    sent.bytes += whole.bytes;
    sent.layers_sent = layers;
    sent.layers_skipped = 0;
    sent.bytes_not_sent = 0;
    sent.fell_back = true;
    if whole.loaded {
        Ok(sent)
    } else {
        Err(whole.error())
    }
}

/// `docker save` here piped straight into `docker load` there (nothing to leave out, no
/// compression): no spool, the two run side by side.
async fn pipe_whole<R: Runner>(r: &R, image: &str) -> Result<u64, CliError> {
    let save = docker::save(image);
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(save.to_shell())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            host: "localhost".into(),
            cmd: save.to_string(),
            source,
        })?;
    let Some(stdout) = child.stdout.take() else {
        return Err(failed("docker save has no output pipe".into()));
    };
    let load = docker::load();
    let (out, bytes) = r.run_streaming(&load, stdout).await?;
    let saved = child
        .wait_with_output()
        .await
        .map_err(|source| RunError::Spawn {
            host: "localhost".into(),
            cmd: save.to_string(),
            source,
        })?;
    if !saved.status.success() {
        return Err(RunError::Failed {
            host: "localhost".into(),
            cmd: save.to_string(),
            status: saved.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&saved.stderr).trim().to_string(),
        }
        .into());
    }
    if !out.success() {
        return Err(RunError::failed(r.host(), &load, &out).into());
    }
    Ok(bytes)
}

fn failed(message: String) -> CliError {
    CliError::Failed {
        message,
        hint: "check the disk space of the temporary directory ($TMPDIR) and that `docker save` works here".into(),
    }
}

/// One `docker load` attempt.
struct Attempt {
    bytes: u64,
    loaded: bool,
    host: String,
    status: i32,
    stderr: String,
}

impl Attempt {
    fn error(&self) -> CliError {
        RunError::Failed {
            host: self.host.clone(),
            cmd: docker::load().to_string(),
            status: self.status,
            stderr: self.stderr.trim().to_string(),
        }
        .into()
    }
}

/// Streams the spool minus `omit` (gzip-compressed if asked) into `docker load` on the host.
/// A blocking thread writes the tar into a pipe; the connection reads the other end.
async fn send<R: Runner>(
    r: &R,
    spool: &Path,
    omit: Omissions,
    compress: bool,
) -> Result<Attempt, CliError> {
    let (tx, rx) = tokio::net::unix::pipe::pipe()
        .map_err(|e| failed(format!("cannot make a pipe for the image stream: {e}")))?;
    let writer = std::fs::File::from(
        tx.into_blocking_fd()
            .map_err(|e| failed(format!("cannot make a pipe for the image stream: {e}")))?,
    );
    let spool = spool.to_path_buf();
    let producer =
        tokio::task::spawn_blocking(move || write_filtered(&spool, &omit.paths, writer, compress));
    let load = docker::load();
    let streamed = r.run_streaming(&load, rx).await;
    // The producer ends once the reader is gone (a broken pipe when `docker load` stopped
    // reading early); its error matters only when the load itself succeeded.
    let produced = producer
        .await
        .map_err(|e| failed(format!("writing the image stream: {e}")))?;
    let (out, bytes) = streamed?;
    if out.success() {
        produced.map_err(|e| failed(format!("reading the saved image: {e}")))?;
    }
    Ok(Attempt {
        bytes,
        loaded: out.success(),
        host: r.host(),
        status: out.status,
        stderr: out.stderr,
    })
}

/// Copies the saved tar into `out` without the entries in `omit`.
fn write_filtered(
    spool: &Path,
    omit: &HashSet<PathBuf>,
    out: std::fs::File,
    compress: bool,
) -> std::io::Result<()> {
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    if compress {
        // Level 1: the point is fewer bytes on a slow link at the least CPU here.
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        copy_entries(spool, omit, gz)?.finish()?.flush()
    } else {
        copy_entries(spool, omit, out)?.flush()
    }
}

fn copy_entries<W: Write>(spool: &Path, omit: &HashSet<PathBuf>, out: W) -> std::io::Result<W> {
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(spool)?));
    let mut builder = tar::Builder::new(out);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if omit.contains(&normalize(&path)) {
            continue;
        }
        let mut header = entry.header().clone();
        if entry.header().entry_type().is_symlink() {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            builder.append_link(&mut header, &path, &target)?;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()
}

/// What `docker save` wrote, without the layer contents.
#[derive(Debug, Default)]
struct SaveIndex {
    /// The `layer.tar` path of each layer, bottom first (from `manifest.json`).
    layer_paths: Vec<PathBuf>,
    /// Each layer's diff ID (from the image config's `rootfs.diff_ids`), bottom first.
    diff_ids: Vec<String>,
    /// Size of each regular file in the tar.
    sizes: HashMap<PathBuf, u64>,
    /// Symlink → the path it points at (`docker save` links a repeated layer to its first).
    links: HashMap<PathBuf, PathBuf>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// JSON files larger than this are not held (manifest and config are a few KiB).
const SMALL_JSON: u64 = 4 << 20;

impl SaveIndex {
    /// Reads the spool's headers (seeking past the layer contents) and its small JSON files.
    fn read(spool: &Path) -> Result<SaveIndex, CliError> {
        Self::read_io(spool)
            .map_err(|e| failed(format!("reading the saved image {}: {e}", spool.display())))
    }

    fn read_io(spool: &Path) -> std::io::Result<SaveIndex> {
        let mut archive = tar::Archive::new(std::fs::File::open(spool)?);
        let mut index = SaveIndex::default();
        let mut jsons: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        for entry in archive.entries_with_seek()? {
            let mut entry = entry?;
            let path = normalize(&entry.path()?);
            let kind = entry.header().entry_type();
            if kind.is_symlink() {
                if let Some(target) = entry.link_name()? {
                    let to = normalize(&path.parent().unwrap_or(Path::new("")).join(target));
                    index.links.insert(path, to);
                }
            } else if kind.is_file() {
                let size = entry.size();
                if path.extension().is_some_and(|e| e == "json") && size <= SMALL_JSON {
                    let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    entry.read_to_end(&mut body)?;
                    jsons.insert(path.clone(), body);
                }
                index.sizes.insert(path, size);
            }
        }
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let manifest: Vec<ManifestEntry> = serde_json::from_slice(
            jsons
                .get(Path::new("manifest.json"))
                .ok_or_else(|| bad("no manifest.json"))?,
        )
        .map_err(|e| bad(&format!("manifest.json: {e}")))?;
        let [one] = &manifest[..] else {
            return Err(bad("manifest.json does not describe exactly one image"));
        };
        let config: ImageConfig = serde_json::from_slice(
            jsons
                .get(&normalize(Path::new(&one.config)))
                .ok_or_else(|| bad("no image config"))?,
        )
        .map_err(|e| bad(&format!("image config: {e}")))?;
        index.layer_paths = one.layers.iter().map(|l| normalize(Path::new(l))).collect();
        index.diff_ids = config.rootfs.diff_ids;
        Ok(index)
    }
}

/// `a/./b/../c` → `a/c` (tar paths are relative; `..` only appears in symlink targets).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Docker's chain IDs of a layer stack: `chain(L0) = diff(L0)`, `chain(Ln) =
/// sha256(chain(Ln-1) + " " + diff(Ln))`. A layer is identified by its chain (what is below
/// it matters), not by its own diff ID.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let digest = Sha256::digest(format!("{prev} {d}").as_bytes());
                let mut hex = String::with_capacity(71);
                hex.push_str("sha256:");
                for b in digest {
                    hex.push_str(&format!("{b:02x}"));
                }
                hex
            }
        };
        out.push(next);
    }
    out
}

/// Every layer chain the host's images have: each prefix of each image's layer list, leaving
/// out images whose list is exactly `unlike`. Two commands (list the images, then their
/// layers): an image removed in between only drops its line, which is why the inspect's exit
/// status is not checked.
pub async fn host_chains<R: Runner>(
    r: &R,
    unlike: Option<&[String]>,
) -> Result<HashSet<String>, CliError> {
    let ids = r.check(&docker::image_ids_all()).await?;
    let ids: Vec<String> = ids
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut have = HashSet::new();
    if ids.is_empty() {
        return Ok(have);
    }
    let out = r.run(&docker::rootfs_layers(&ids)).await?;
    for line in out.stdout.lines() {
        if let Ok(diffs) = serde_json::from_str::<Vec<String>>(line.trim()) {
            if unlike != Some(diffs.as_slice()) {
                have.extend(chain_ids(&diffs));
            }
        }
    }
    Ok(have)
}

/// What to leave out of the stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Omissions {
    /// Tar paths not sent.
    paths: HashSet<PathBuf>,
    /// Layers whose content is not sent.
    layers: usize,
    /// Their total size.
    bytes: u64,
}

/// The `layer.tar` of every layer whose chain the host has, unless a layer that is sent
/// shares the file (a repeated layer, possibly through a symlink). Nothing when the manifest
/// and the config disagree on the layer count: then the whole image goes.
fn plan_omissions(index: &SaveIndex, have: &HashSet<String>) -> Omissions {
    if index.layer_paths.len() != index.diff_ids.len() || have.is_empty() {
        return Omissions::default();
    }
    let chains = chain_ids(&index.diff_ids);
    let on_host: Vec<bool> = chains.iter().map(|c| have.contains(c)).collect();
    // Files a sent layer needs: its own path and whatever that path links to.
    let mut needed: HashSet<&PathBuf> = HashSet::new();
    for (path, there) in index.layer_paths.iter().zip(&on_host) {
        if !there {
            needed.insert(path);
            if let Some(t) = index.links.get(path) {
                needed.insert(t);
            }
        }
    }
    let mut omit = Omissions::default();
    for (path, there) in index.layer_paths.iter().zip(&on_host) {
        if !there {
            continue;
        }
        omit.layers += 1;
        if !needed.contains(path) && omit.paths.insert(path.clone()) {
            omit.bytes += index.sizes.get(path).copied().unwrap_or(0);
        }
    }
    omit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn chain_ids_follow_docker() {
        // An image of two layers built by Docker Engine 20.10 here: its layer store keeps the
        // top layer under this chain ID (`/var/lib/docker/image/*/layerdb/sha256/b3a8…`).
        let base = "sha256:f8c9354e3483446a8bf74ec6f30122a253c7b14ccedc77b637a3d3080ddfbf52";
        let top = "sha256:dae8119cc309063bd6ba6bb89aa822acab65fce037f4ea51188263838d056982";
        let chains = chain_ids(&[base.to_string(), top.to_string()]);
        assert_eq!(chains[0], base);
        assert_eq!(
            chains[1],
            "sha256:b3a830bdba8f668d7721a609d4870cd7d7c25d9efa163f1a3784d0b1dc167783"
        );
        // The same top on another base is another chain.
        assert_ne!(chain_ids(&[diff(2), top.to_string()])[1], chains[1]);
    }

    fn index(layers: &[&str], diffs: &[u8]) -> SaveIndex {
        SaveIndex {
            layer_paths: layers.iter().map(PathBuf::from).collect(),
            diff_ids: diffs.iter().map(|d| diff(*d)).collect(),
            sizes: layers.iter().map(|l| (PathBuf::from(l), 100)).collect(),
            links: HashMap::new(),
        }
    }

    #[test]
    fn only_layers_whose_chain_the_host_has_are_left_out() {
        let ix = index(&["a/layer.tar", "b/layer.tar", "c/layer.tar"], &[1, 2, 3]);
        let chains = chain_ids(&ix.diff_ids);
        // The host has the bottom two (and, elsewhere, diff 3 on another base: not the same
        // chain, so c is sent).
        let mut have: HashSet<String> = chains[..2].iter().cloned().collect();
        have.extend(chain_ids(&[diff(9), diff(3)]));
        let o = plan_omissions(&ix, &have);
        assert_eq!(o.layers, 2);
        assert_eq!(o.bytes, 200);
        assert!(o.paths.contains(Path::new("a/layer.tar")));
        assert!(o.paths.contains(Path::new("b/layer.tar")));
        assert!(!o.paths.contains(Path::new("c/layer.tar")));
        assert_eq!(plan_omissions(&ix, &HashSet::new()), Omissions::default());
    }

    #[test]
    fn a_file_a_sent_layer_links_to_is_kept() {
        // Layer 2 repeats layer 0's content: docker save links its layer.tar to layer 0's.
        let mut ix = index(&["a/layer.tar", "b/layer.tar", "c/layer.tar"], &[1, 2, 1]);
        ix.links
            .insert(PathBuf::from("c/layer.tar"), PathBuf::from("a/layer.tar"));
        let chains = chain_ids(&ix.diff_ids);
        let have: HashSet<String> = chains[..2].iter().cloned().collect();
        let o = plan_omissions(&ix, &have);
        assert_eq!(o.layers, 2);
        assert_eq!(o.paths, HashSet::from([PathBuf::from("b/layer.tar")]));
        assert_eq!(o.bytes, 100);
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            normalize(Path::new("c/../a/./layer.tar")),
            PathBuf::from("a/layer.tar")
        );
    }
}
