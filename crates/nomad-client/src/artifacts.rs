//! The artifact prestart hook (facts §1.7a/§1.8, §5.8): turns a task's `artifact` blocks into
//! [`nomad_artifact::ArtifactRequest`]s and fetches them.
//!
//! Interpolation, as Nomad's `TaskEnv.ReplaceEnv` (simple replacer, unknown names verbatim,
//! lookup order: task env then node values): `GetterSource`, every `GetterOptions` value and
//! every `GetterHeaders` value. `RelativeDest` goes through `ClientPath`: interpolated with the
//! *host-path* env (so `${NOMAD_ALLOC_DIR}` is the host dir even for chroot drivers), joined to
//! the task dir `<T>` when relative, and it must stay inside `<T>` or the shared `<A>/alloc`
//! ("artifact destination path escapes alloc directory"). The default destination is `local/`.
//!
//! Limits are Nomad's client `artifact {}` defaults: `http_read_timeout = "30m"`,
//! `http_max_size = "100GB"`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nomad_artifact::{ArtifactError, ArtifactRequest, FetchOptions, GetterMode};
use nomad_structs::TaskArtifact;

use crate::taskenv::replace_env;

/// Nomad's default `RelativeDest`.
pub const DEFAULT_DEST: &str = "local/";
/// `artifact { http_read_timeout }` default.
pub const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `artifact { http_max_size }` default (100 GB).
pub const HTTP_MAX_SIZE: u64 = 100_000_000_000;

/// The client's `artifact {}` block: limits of every artifact download on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactConfig {
    /// `http_read_timeout` (default 30m).
    pub http_read_timeout: Duration,
    /// `http_max_size` in bytes (default 100GB).
    pub http_max_size: u64,
    /// `decompression_size_limit` in bytes, 0 for none (default 100GB).
    pub decompression_size_limit: u64,
    /// `decompression_file_count_limit`, 0 for none (default 4096).
    pub decompression_file_count_limit: u64,
    /// `disable_filesystem_isolation`: local sources may be read from anywhere on the host.
    pub disable_filesystem_isolation: bool,
}

impl Default for ArtifactConfig {
    fn default() -> Self {
        let f = FetchOptions::default();
        ArtifactConfig {
            http_read_timeout: HTTP_READ_TIMEOUT,
            http_max_size: HTTP_MAX_SIZE,
            decompression_size_limit: f.decompression_size_limit,
            decompression_file_count_limit: f.decompression_file_count_limit,
            disable_filesystem_isolation: false,
        }
    }
}

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactHookError {
    /// The destination leaves both the task dir and the shared alloc dir.
    #[error("artifact destination path escapes alloc directory")]
    Escapes,
    /// `GetterMode` is not `any`, `file` or `dir`.
    #[error(transparent)]
    Mode(#[from] nomad_artifact::InvalidGetterMode),
    /// The fetch itself failed.
    #[error(transparent)]
    Fetch(#[from] ArtifactError),
    /// The blocking fetch thread died.
    #[error("artifact download aborted: {0}")]
    Aborted(String),
}

impl ArtifactHookError {
    /// Whether the restart policy should retry: as [`ArtifactError::is_recoverable`]; a bad
    /// destination or mode never is.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ArtifactHookError::Fetch(e) => e.is_recoverable(),
            ArtifactHookError::Aborted(_) => true,
            ArtifactHookError::Escapes | ArtifactHookError::Mode(_) => false,
        }
    }
}

/// The env views an artifact is interpolated with.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactEnv<'a> {
    /// The task's env as the task sees it (`EnvMap`).
    pub task_env: &'a BTreeMap<String, String>,
    /// The same env with host paths (`EnvMapClient`), for the destination.
    pub client_env: &'a BTreeMap<String, String>,
    /// Node values (`node.*`, `attr.*`, `meta.*`).
    pub node: &'a BTreeMap<String, String>,
}

/// Lexically normalises an absolute path (`.`/`..` removed; `..` never climbs above `/`).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// A fetch: the request and the options (local roots) it runs with.
#[derive(Debug, Clone)]
pub struct PlannedFetch {
    /// What to fetch.
    pub request: ArtifactRequest,
    /// With which options.
    pub options: FetchOptions,
}

/// Builds the fetch of one artifact of a task whose dir is `task_dir` (`<T>`), in an alloc whose
/// shared dir is `shared_dir` (`<A>/alloc`).
pub fn plan(
    a: &TaskArtifact,
    env: ArtifactEnv<'_>,
    task_dir: &Path,
    shared_dir: &Path,
    limits: &ArtifactConfig,
) -> Result<PlannedFetch, ArtifactHookError> {
    let task_view = |s: &str| replace_env(s, &[env.task_env, env.node]);
    let source = task_view(a.getter_source.as_deref().unwrap_or_default());
    let options = a
        .getter_options
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), task_view(v)))
        .collect();
    let headers = a
        .getter_headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), task_view(v)))
        .collect();
    let mode: GetterMode = a.getter_mode.as_deref().unwrap_or_default().parse()?;

    let raw_dest = a
        .relative_dest
        .as_deref()
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_DEST);
    let dest = replace_env(raw_dest, &[env.client_env, env.node]);
    let dest = Path::new(&dest);
    let joined = if dest.is_absolute() {
        clean(dest)
    } else {
        clean(&task_dir.join(dest))
    };
    let (t, s) = (clean(task_dir), clean(shared_dir));
    // The sandbox root of the fetch is whichever of <T> and <A>/alloc holds the destination;
    // local sources may also be read from the other one.
    let (root, extra) = if joined.starts_with(&t) {
        (task_dir.to_path_buf(), shared_dir.to_path_buf())
    } else if joined.starts_with(&s) {
        (shared_dir.to_path_buf(), task_dir.to_path_buf())
    } else {
        return Err(ArtifactHookError::Escapes);
    };
    Ok(PlannedFetch {
        request: ArtifactRequest {
            source,
            destination: joined,
            task_dir: root,
            mode,
            options,
            headers,
            insecure: a.getter_insecure.unwrap_or(false),
            timeout: limits.http_read_timeout,
            max_size: limits.http_max_size,
        },
        options: FetchOptions {
            extra_local_roots: vec![extra],
            decompression_size_limit: limits.decompression_size_limit,
            decompression_file_count_limit: limits.decompression_file_count_limit,
            allow_any_local_path: limits.disable_filesystem_isolation,
        },
    })
}

/// Fetches one planned artifact on a blocking thread.
pub async fn fetch(p: PlannedFetch) -> Result<nomad_artifact::FetchResult, ArtifactHookError> {
    tokio::task::spawn_blocking(move || nomad_artifact::fetch_with(&p.request, &p.options))
        .await
        .map_err(|e| ArtifactHookError::Aborted(e.to_string()))?
        .map_err(ArtifactHookError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> (
        BTreeMap<String, String>,
        BTreeMap<String, String>,
        BTreeMap<String, String>,
    ) {
        let task = BTreeMap::from([
            ("NOMAD_ALLOC_DIR".to_string(), "/alloc".to_string()),
            ("NOMAD_TASK_NAME".to_string(), "web".to_string()),
            ("VERSION".to_string(), "1.2".to_string()),
        ]);
        let client = BTreeMap::from([
            ("NOMAD_ALLOC_DIR".to_string(), "/data/a1/alloc".to_string()),
            ("NOMAD_TASK_NAME".to_string(), "web".to_string()),
        ]);
        let node = BTreeMap::from([("attr.kernel.name".to_string(), "linux".to_string())]);
        (task, client, node)
    }

    fn art(src: &str, dest: Option<&str>) -> TaskArtifact {
        TaskArtifact {
            getter_source: Some(src.into()),
            relative_dest: dest.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn interpolates_source_options_headers() {
        let (t, c, n) = env();
        let e = ArtifactEnv {
            task_env: &t,
            client_env: &c,
            node: &n,
        };
        let mut a = art(
            "https://example.com/${VERSION}/app-${attr.kernel.name}.tgz?x=${nope}",
            None,
        );
        a.getter_options = Some(BTreeMap::from([(
            "checksum".to_string(),
            "sha256:${VERSION}".to_string(),
        )]));
        a.getter_headers = Some(BTreeMap::from([(
            "X-Task".to_string(),
            "${NOMAD_TASK_NAME}".to_string(),
        )]));
        a.getter_mode = Some("file".into());
        a.getter_insecure = Some(true);
        let p = plan(
            &a,
            e,
            Path::new("/data/a1/web"),
            Path::new("/data/a1/alloc"),
            &ArtifactConfig::default(),
        )
        .expect("ok");
        let r = &p.request;
        assert_eq!(r.source, "https://example.com/1.2/app-linux.tgz?x=${nope}");
        assert_eq!(r.options["checksum"], "sha256:1.2");
        assert_eq!(r.headers["X-Task"], "web");
        assert_eq!(r.mode, GetterMode::File);
        assert!(r.insecure);
        let tight = ArtifactConfig {
            http_read_timeout: Duration::from_secs(5),
            http_max_size: 10,
            decompression_size_limit: 20,
            decompression_file_count_limit: 3,
            disable_filesystem_isolation: true,
        };
        let q = plan(
            &a,
            e,
            Path::new("/data/a1/web"),
            Path::new("/data/a1/alloc"),
            &tight,
        )
        .expect("ok");
        assert_eq!(
            (q.request.timeout, q.request.max_size),
            (Duration::from_secs(5), 10)
        );
        assert_eq!(q.options.decompression_size_limit, 20);
        assert_eq!(q.options.decompression_file_count_limit, 3);
        assert!(q.options.allow_any_local_path);
        assert_eq!(r.destination, PathBuf::from("/data/a1/web/local"));
        assert_eq!(r.task_dir, PathBuf::from("/data/a1/web"));
        assert_eq!(
            p.options.extra_local_roots,
            vec![PathBuf::from("/data/a1/alloc")]
        );
        assert_eq!(r.max_size, HTTP_MAX_SIZE);
    }

    #[test]
    fn destinations() {
        let (t, c, n) = env();
        let e = ArtifactEnv {
            task_env: &t,
            client_env: &c,
            node: &n,
        };
        let td = Path::new("/data/a1/web");
        let sd = Path::new("/data/a1/alloc");
        let limits = ArtifactConfig::default();
        let dest = |d: &str| plan(&art("x", Some(d)), e, td, sd, &limits);
        assert_eq!(
            dest("local/sub/../bin").expect("ok").request.destination,
            PathBuf::from("/data/a1/web/local/bin")
        );
        // The host-path env is used: ${NOMAD_ALLOC_DIR} is the host shared dir.
        let p = dest("${NOMAD_ALLOC_DIR}/data").expect("ok");
        assert_eq!(p.request.destination, PathBuf::from("/data/a1/alloc/data"));
        assert_eq!(p.request.task_dir, PathBuf::from("/data/a1/alloc"));
        assert_eq!(p.options.extra_local_roots, vec![td.to_path_buf()]);
        assert_eq!(
            dest("../other").expect_err("escapes").to_string(),
            "artifact destination path escapes alloc directory"
        );
        assert!(matches!(dest("/etc"), Err(ArtifactHookError::Escapes)));
        assert!(!dest("/etc").expect_err("e").is_recoverable());
        let mut bad = art("x", None);
        bad.getter_mode = Some("weird".into());
        let err = plan(&bad, e, td, sd, &limits).expect_err("mode");
        assert!(!err.is_recoverable());
    }
}
