//! End-to-end tests: real files, a real HTTP server on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use digest::Digest;

use crate::*;

// ---- a tiny HTTP server ----

#[derive(Clone)]
struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send no Content-Length; the body ends when the connection closes.
    close_delimited: bool,
    /// Wait this long before answering (for the timeout test).
    delay: Duration,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: "200 OK",
            headers: Vec::new(),
            body: body.into(),
            close_delimited: false,
            delay: Duration::ZERO,
        }
    }
}

struct Server {
    addr: std::net::SocketAddr,
    /// Raw request heads received, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(routes: Vec<(&str, Reply)>) -> Server {
        let routes: Arc<HashMap<String, Reply>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stopping) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (routes, reqs) = (routes.clone(), reqs.clone());
                std::thread::spawn(move || serve(conn, &routes, &reqs));
            }
        });
        Server {
            addr,
            requests,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, routes: &HashMap<String, Reply>, reqs: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line == "\r\n" || line == "\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    reqs.lock().unwrap().push(head);
    let path_only = path.split('?').next().unwrap_or("/");
    let reply = routes
        .get(&path)
        .or_else(|| routes.get(path_only))
        .cloned()
        .unwrap_or(Reply {
            status: "404 Not Found",
            headers: Vec::new(),
            body: b"not found".to_vec(),
            close_delimited: false,
            delay: Duration::ZERO,
        });
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    let mut out = conn;
    let mut resp = format!("HTTP/1.1 {}\r\nConnection: close\r\n", reply.status);
    if !reply.close_delimited {
        resp.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    for (k, v) in &reply.headers {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    let _ = out.write_all(resp.as_bytes());
    let _ = out.write_all(&reply.body);
    let _ = out.flush();
}

// ---- fixtures ----

struct Sandbox {
    _root: tempfile::TempDir,
    /// `<root>/task`: the task dir.
    task: PathBuf,
    /// `<root>/outside`: a directory next to the task dir that must stay empty.
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().expect("tempdir");
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let task = root_path.join("task");
        let outside = root_path.join("outside");
        std::fs::create_dir_all(task.join("local")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Sandbox {
            _root: root,
            task,
            outside,
        }
    }

    fn request(&self, source: &str) -> ArtifactRequest {
        ArtifactRequest {
            source: source.to_string(),
            destination: self.task.join("local"),
            task_dir: self.task.clone(),
            mode: GetterMode::Any,
            options: BTreeMap::new(),
            headers: BTreeMap::new(),
            insecure: false,
            timeout: Duration::from_secs(10),
            max_size: 0,
        }
    }

    fn local(&self, rel: &str) -> PathBuf {
        self.task.join("local").join(rel)
    }

    /// Nothing escaped next to the task dir, and no temp file was left in it.
    fn assert_clean(&self) {
        let outside: Vec<_> = std::fs::read_dir(&self.outside).unwrap().collect();
        assert!(outside.is_empty(), "files written outside: {outside:?}");
        let parent = self.task.parent().unwrap();
        for entry in std::fs::read_dir(parent).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                name == "task" || name == "outside",
                "unexpected {name:?} next to the task dir"
            );
        }
        for entry in std::fs::read_dir(&self.task).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(".nomad-artifact-"),
                "temp file left: {name}"
            );
        }
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn hex(bytes: &[u8]) -> String {
    crate::checksum::to_hex(bytes)
}

fn tar_entry(builder: &mut tar::Builder<impl Write>, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

/// A tar.gz with `bin/run.sh` (0755) and `README` (0644).
fn app_tar_gz() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_path("bin/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_cksum();
    b.append(&dir, std::io::empty()).unwrap();
    tar_entry(&mut b, "bin/run.sh", 0o755, b"#!/bin/sh\necho hi\n");
    tar_entry(&mut b, "README", 0o644, b"read me\n");
    b.into_inner().unwrap().finish().unwrap()
}

/// A raw tar entry: name, type, link name, data.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// A plain tar whose entry names are written raw (bypassing the builder's own checks).
fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn zip_bytes(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, mode, data) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

// ---- HTTP ----

#[test]
fn http_plain_file_mode_any() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/files/hello.txt", Reply::ok("hello world"))]);
    let res = fetch(&sb.request(&srv.url("/files/hello.txt"))).unwrap();
    let path = sb.local("hello.txt");
    assert_eq!(res.files, vec![path.clone()]);
    assert_eq!(res.bytes, 11);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello world");
    assert_eq!(mode_of(&path), 0o644);
    sb.assert_clean();
}

#[test]
fn http_plain_file_mode_file() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/hello.txt", Reply::ok("hi"))]);
    let mut req = sb.request(&srv.url("/hello.txt"));
    req.mode = GetterMode::File;
    req.destination = sb.task.join("local/sub/renamed.cfg");
    let res = fetch(&req).unwrap();
    assert_eq!(res.files, vec![sb.local("sub/renamed.cfg")]);
    assert_eq!(
        std::fs::read_to_string(sb.local("sub/renamed.cfg")).unwrap(),
        "hi"
    );
    assert!(!sb.local("sub/hello.txt").exists());
    sb.assert_clean();
}

#[test]
fn http_headers_redirect_and_forced_getter() {
    let sb = Sandbox::new();
    let mut redirect = Reply::ok("");
    redirect.status = "302 Found";
    redirect
        .headers
        .push(("Location".into(), "/real/data.bin".into()));
    let srv = Server::start(vec![
        ("/old", redirect),
        ("/real/data.bin", Reply::ok("payload")),
    ]);
    let mut req = sb.request(&format!("http::{}", srv.url("/old")));
    req.headers.insert("X-Nomad-Token".into(), "abc123".into());
    req.options.insert("filename".into(), "data.bin".into());
    let res = fetch(&req).unwrap();
    assert_eq!(res.files, vec![sb.local("data.bin")]);
    assert_eq!(
        std::fs::read_to_string(sb.local("data.bin")).unwrap(),
        "payload"
    );
    let reqs = srv.requests.lock().unwrap();
    assert!(reqs[0].starts_with("GET /old "), "{}", reqs[0]);
    assert!(
        reqs[0]
            .to_ascii_lowercase()
            .contains("x-nomad-token: abc123"),
        "{}",
        reqs[0]
    );
    assert!(reqs.iter().any(|r| r.starts_with("GET /real/data.bin ")));
}

#[test]
fn http_404_is_an_error() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![]);
    let url = srv.url("/x.tar.gz");
    let err = fetch(&sb.request(&url)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to download \"{url}\": http status 404 Not Found")
    );
    assert!(err.is_recoverable());
    sb.assert_clean();
    assert!(std::fs::read_dir(sb.task.join("local"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn http_connection_refused_and_timeout() {
    let sb = Sandbox::new();
    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/a.txt");
    let err = fetch(&sb.request(&url)).unwrap_err();
    assert!(matches!(err, ArtifactError::Download { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("failed to download \"{url}\": ")),
        "{err}"
    );

    let mut slow = Reply::ok("late");
    slow.delay = Duration::from_secs(3);
    let srv = Server::start(vec![("/slow.txt", slow)]);
    let mut req = sb.request(&srv.url("/slow.txt"));
    req.timeout = Duration::from_millis(300);
    let start = std::time::Instant::now();
    let err = fetch(&req).unwrap_err();
    assert!(matches!(err, ArtifactError::Download { .. }), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    sb.assert_clean();
}

#[test]
fn https_reaches_a_tls_handshake() {
    // No TLS server here: speaking TLS to the plain HTTP server must fail as a download
    // error from the TLS layer (not "no TLS provider"), with insecure on or off.
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/a.txt", Reply::ok("a"))]);
    for insecure in [false, true] {
        let mut req = sb.request(&srv.url("/a.txt").replace("http://", "https://"));
        req.insecure = insecure;
        let err = fetch(&req).unwrap_err();
        assert!(matches!(err, ArtifactError::Download { .. }), "{err}");
        let text = err.to_string().to_ascii_lowercase();
        assert!(
            !text.contains("provider") && !text.contains("not enabled"),
            "{err}"
        );
    }
    sb.assert_clean();
}

#[test]
fn http_tar_gz_keeps_exec_bit() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/app.tar.gz", Reply::ok(app_tar_gz()))]);
    let res = fetch(&sb.request(&srv.url("/app.tar.gz"))).unwrap();
    let script = sb.local("bin/run.sh");
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode_of(&script), 0o755);
    assert_eq!(mode_of(&sb.local("README")), 0o644);
    assert_eq!(res.files, vec![script, sb.local("README")]);
    assert!(!sb.local("app.tar.gz").exists());
    sb.assert_clean();
}

#[test]
fn http_zip_and_forced_archive_type() {
    let sb = Sandbox::new();
    let zip = zip_bytes(&[
        ("tool/run", 0o755, b"#!/bin/sh\n"),
        ("tool/conf.txt", 0o644, b"x=1"),
    ]);
    let srv = Server::start(vec![
        ("/bundle.zip", Reply::ok(zip.clone())),
        ("/download", Reply::ok(zip)),
    ]);
    fetch(&sb.request(&srv.url("/bundle.zip"))).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.local("tool/conf.txt")).unwrap(),
        "x=1"
    );
    assert_eq!(mode_of(&sb.local("tool/run")), 0o755);

    // No extension: archive = "zip" forces unpacking.
    let mut req = sb.request(&srv.url("/download"));
    req.destination = sb.task.join("local/forced");
    req.options.insert("archive".into(), "zip".into());
    fetch(&req).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.local("forced/tool/conf.txt")).unwrap(),
        "x=1"
    );
    sb.assert_clean();
}

#[test]
fn http_archive_false_keeps_the_file() {
    let sb = Sandbox::new();
    let tgz = app_tar_gz();
    let srv = Server::start(vec![("/app.tar.gz", Reply::ok(tgz.clone()))]);
    let res = fetch(&sb.request(&format!("{}?archive=false", srv.url("/app.tar.gz")))).unwrap();
    assert_eq!(res.files, vec![sb.local("app.tar.gz")]);
    assert_eq!(std::fs::read(sb.local("app.tar.gz")).unwrap(), tgz);
    assert!(!sb.local("bin").exists());
    // The getter option is not sent to the server.
    assert!(srv.requests.lock().unwrap()[0].starts_with("GET /app.tar.gz HTTP/1.1"));
    sb.assert_clean();
}

#[test]
fn mode_file_never_unpacks() {
    let sb = Sandbox::new();
    let tgz = app_tar_gz();
    let srv = Server::start(vec![("/app.tar.gz", Reply::ok(tgz.clone()))]);
    let mut req = sb.request(&srv.url("/app.tar.gz"));
    req.mode = GetterMode::File;
    req.destination = sb.task.join("local/app.tgz");
    fetch(&req).unwrap();
    assert_eq!(std::fs::read(sb.local("app.tgz")).unwrap(), tgz);
}

#[test]
fn http_gz_single_file() {
    let sb = Sandbox::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"line1\nline2\n").unwrap();
    let srv = Server::start(vec![("/data.txt.gz", Reply::ok(gz.finish().unwrap()))]);
    let res = fetch(&sb.request(&srv.url("/data.txt.gz"))).unwrap();
    assert_eq!(res.files, vec![sb.local("data.txt")]);
    assert_eq!(
        std::fs::read_to_string(sb.local("data.txt")).unwrap(),
        "line1\nline2\n"
    );
    sb.assert_clean();
}

#[cfg(feature = "bzip2")]
#[test]
fn tar_bz2() {
    let sb = Sandbox::new();
    let bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    let mut b = tar::Builder::new(bz);
    tar_entry(&mut b, "x/y.sh", 0o700, b"echo y");
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let srv = Server::start(vec![("/a.tar.bz2", Reply::ok(bytes))]);
    fetch(&sb.request(&srv.url("/a.tar.bz2"))).unwrap();
    assert_eq!(mode_of(&sb.local("x/y.sh")), 0o700);
}

// ---- checksums ----

#[test]
fn checksums_good_and_bad() {
    let sb = Sandbox::new();
    let body = b"checked content".to_vec();
    let sha256 = hex(&sha2::Sha256::digest(&body));
    let md5 = hex(&md5::Md5::digest(&body));
    let srv = Server::start(vec![("/c.txt", Reply::ok(body))]);

    let mut req = sb.request(&srv.url("/c.txt"));
    req.options
        .insert("checksum".into(), format!("sha256:{sha256}"));
    fetch(&req).unwrap();
    std::fs::remove_file(sb.local("c.txt")).unwrap();

    // md5 in the URL query.
    fetch(&sb.request(&format!("{}?checksum=md5:{md5}", srv.url("/c.txt")))).unwrap();
    std::fs::remove_file(sb.local("c.txt")).unwrap();

    let zeros = "0".repeat(64);
    let mut req = sb.request(&srv.url("/c.txt"));
    req.options
        .insert("checksum".into(), format!("sha256:{zeros}"));
    let err = fetch(&req).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checksum mismatch for \"{}\": expected sha256 {zeros}, got {sha256}",
            srv.url("/c.txt")
        )
    );
    assert!(!sb.local("c.txt").exists());

    let url = format!("{}?checksum=md5:{}", srv.url("/c.txt"), "f".repeat(32));
    let err = fetch(&sb.request(&url)).unwrap_err();
    assert!(
        matches!(err, ArtifactError::ChecksumMismatch { kind: "md5", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("got {md5}")), "{err}");
    assert!(!sb.local("c.txt").exists());

    let mut req = sb.request(&srv.url("/c.txt"));
    req.options
        .insert("checksum".into(), "sha256:nothex".into());
    assert!(matches!(
        fetch(&req).unwrap_err(),
        ArtifactError::InvalidOption { .. }
    ));
    sb.assert_clean();
}

// ---- sandboxing ----

#[test]
fn tar_traversal_is_rejected() {
    let sb = Sandbox::new();
    let evil = raw_tar(&[
        (b"ok.txt", tar::EntryType::Regular, b"", b"fine"),
        (b"../evil", tar::EntryType::Regular, b"", b"pwned"),
    ]);
    let srv = Server::start(vec![("/evil.tar", Reply::ok(evil))]);
    let url = srv.url("/evil.tar");
    let err = fetch(&sb.request(&url)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to unpack \"{url}\": archive entry \"../evil\" escapes the destination")
    );
    assert!(!err.is_recoverable());
    assert!(!sb.task.join("evil").exists());
    // Checked before writing: not even the good entry was written.
    assert!(!sb.local("ok.txt").exists());
    sb.assert_clean();
}

#[test]
fn tar_absolute_paths_and_escaping_links_are_rejected() {
    let sb = Sandbox::new();
    let outside = sb.outside.to_string_lossy().into_owned();
    let cases: Vec<Vec<u8>> = vec![
        raw_tar(&[(b"/tmp/abs", tar::EntryType::Regular, b"", b"x")]),
        raw_tar(&[(b"link", tar::EntryType::Symlink, outside.as_bytes(), b"")]),
        raw_tar(&[
            (b"link", tar::EntryType::Symlink, b"../../outside", b""),
            (b"link/file", tar::EntryType::Regular, b"", b"x"),
        ]),
        raw_tar(&[(b"hard", tar::EntryType::Link, b"../../outside/x", b"")]),
        raw_tar(&[(b"a/b/../../../c", tar::EntryType::Regular, b"", b"x")]),
    ];
    for (i, tar) in cases.into_iter().enumerate() {
        let path = format!("/case{i}.tar");
        let srv = Server::start(vec![(path.as_str(), Reply::ok(tar))]);
        let err = fetch(&sb.request(&srv.url(&path))).unwrap_err();
        assert!(
            matches!(err, ArtifactError::EntryEscapes { .. }),
            "case {i}: {err}"
        );
        sb.assert_clean();
        assert!(
            !sb.local("link").exists() && !sb.local("hard").exists(),
            "case {i}"
        );
    }
}

#[test]
fn tar_links_inside_are_fine() {
    let sb = Sandbox::new();
    let tar = raw_tar(&[
        (b"dir/target.txt", tar::EntryType::Regular, b"", b"t"),
        (b"dir/link", tar::EntryType::Symlink, b"target.txt", b""),
        (b"hard", tar::EntryType::Link, b"dir/target.txt", b""),
    ]);
    let srv = Server::start(vec![("/links.tar", Reply::ok(tar))]);
    let res = fetch(&sb.request(&srv.url("/links.tar"))).unwrap();
    assert_eq!(res.files.len(), 3);
    assert_eq!(std::fs::read_to_string(sb.local("dir/link")).unwrap(), "t");
    assert_eq!(std::fs::read_to_string(sb.local("hard")).unwrap(), "t");
}

#[test]
fn zip_traversal_is_rejected() {
    let sb = Sandbox::new();
    let zip = zip_bytes(&[("../evil.txt", 0o644, b"x")]);
    let srv = Server::start(vec![("/evil.zip", Reply::ok(zip))]);
    let err = fetch(&sb.request(&srv.url("/evil.zip"))).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("archive entry \"../evil.txt\" escapes the destination"),
        "{err}"
    );
    assert!(!sb.task.join("evil.txt").exists());
    sb.assert_clean();
}

#[test]
fn destination_outside_task_dir_is_rejected() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/a.txt", Reply::ok("a"))]);
    let mut req = sb.request(&srv.url("/a.txt"));
    req.destination = sb.task.join("../outside");
    let err = fetch(&req).unwrap_err();
    assert!(
        matches!(err, ArtifactError::DestinationEscapes { .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("artifact destination path escapes the task directory"));

    // A symlink inside the task dir that points outside is caught too.
    std::os::unix::fs::symlink(&sb.outside, sb.task.join("sneaky")).unwrap();
    let mut req = sb.request(&srv.url("/a.txt"));
    req.destination = sb.task.join("sneaky/deeper");
    let err = fetch(&req).unwrap_err();
    assert!(
        matches!(err, ArtifactError::DestinationEscapes { .. }),
        "{err}"
    );
    std::fs::remove_file(sb.task.join("sneaky")).unwrap();

    // Mode file with the task dir itself as the file.
    let mut req = sb.request(&srv.url("/a.txt"));
    req.mode = GetterMode::File;
    req.destination = sb.task.clone();
    assert!(matches!(
        fetch(&req).unwrap_err(),
        ArtifactError::DestinationEscapes { .. }
    ));
    sb.assert_clean();
}

// ---- limits ----

#[test]
fn max_size_is_enforced() {
    let sb = Sandbox::new();
    let mut streamed = Reply::ok(vec![b'x'; 200_000]);
    streamed.close_delimited = true;
    let srv = Server::start(vec![
        ("/big.bin", Reply::ok(vec![b'x'; 200_000])),
        ("/stream.bin", streamed),
    ]);
    for path in ["/big.bin", "/stream.bin"] {
        let mut req = sb.request(&srv.url(path));
        req.max_size = 100_000;
        let err = fetch(&req).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "failed to download \"{}\": artifact exceeds the maximum size of 100000 bytes",
                srv.url(path)
            )
        );
        sb.assert_clean();
    }
    assert!(std::fs::read_dir(sb.task.join("local"))
        .unwrap()
        .next()
        .is_none());
    // Within the limit it works, also without Content-Length.
    let mut req = sb.request(&srv.url("/stream.bin"));
    req.max_size = 200_000;
    assert_eq!(fetch(&req).unwrap().bytes, 200_000);
}

#[test]
fn decompression_limits() {
    let sb = Sandbox::new();
    let srv = Server::start(vec![("/app.tar.gz", Reply::ok(app_tar_gz()))]);
    let opts = FetchOptions {
        decompression_file_count_limit: 2,
        ..FetchOptions::default()
    };
    let err = fetch_with(&sb.request(&srv.url("/app.tar.gz")), &opts).unwrap_err();
    assert!(matches!(err, ArtifactError::Unpack { .. }), "{err}");
    assert!(err.to_string().contains("more than 2 entries"), "{err}");
    assert!(!sb.local("bin").exists());
    let opts = FetchOptions {
        decompression_size_limit: 10,
        ..FetchOptions::default()
    };
    let err = fetch_with(&sb.request(&srv.url("/app.tar.gz")), &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("unpacked size exceeds the limit of 10 bytes"),
        "{err}"
    );
    sb.assert_clean();
}

// ---- local files ----

#[test]
fn local_file_sources() {
    let sb = Sandbox::new();
    let src_dir = sb.task.join("src");
    std::fs::create_dir_all(&src_dir).unwrap();
    let src = src_dir.join("tool.sh");
    std::fs::write(&src, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();

    // Absolute path: keeps its mode.
    let res = fetch(&sb.request(src.to_str().unwrap())).unwrap();
    assert_eq!(res.files, vec![sb.local("tool.sh")]);
    assert_eq!(mode_of(&sb.local("tool.sh")), 0o750);
    std::fs::remove_file(sb.local("tool.sh")).unwrap();

    // Relative to the task dir, with a checksum.
    let sha = hex(&sha2::Sha256::digest(b"#!/bin/sh\n"));
    let mut req = sb.request("src/tool.sh");
    req.options
        .insert("checksum".into(), format!("sha256:{sha}"));
    fetch(&req).unwrap();
    assert!(sb.local("tool.sh").exists());

    // file:// URL of an archive is unpacked.
    std::fs::write(src_dir.join("app.tar.gz"), app_tar_gz()).unwrap();
    let url = format!("file://{}", src_dir.join("app.tar.gz").display());
    fetch(&sb.request(&url)).unwrap();
    assert_eq!(mode_of(&sb.local("bin/run.sh")), 0o755);

    // A directory is copied in mode any/dir.
    let mut req = sb.request(src_dir.to_str().unwrap());
    req.mode = GetterMode::Dir;
    req.destination = sb.task.join("local/copy");
    let res = fetch(&req).unwrap();
    assert_eq!(res.files.len(), 2);
    assert!(sb.local("copy/tool.sh").exists());

    // Max size applies to local files too.
    let mut req = sb.request(src.to_str().unwrap());
    req.max_size = 3;
    assert!(matches!(
        fetch(&req).unwrap_err(),
        ArtifactError::TooLarge { .. }
    ));
    sb.assert_clean();
}

#[test]
fn local_sources_outside_the_task_dir() {
    let sb = Sandbox::new();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("secret.txt");
    std::fs::write(&file, "s").unwrap();
    let err = fetch(&sb.request(file.to_str().unwrap())).unwrap_err();
    assert!(
        matches!(err, ArtifactError::LocalPathNotAllowed { .. }),
        "{err}"
    );
    // Escaping with .. from a relative path is the same.
    let err = fetch(&sb.request(&format!("../../{}", file.display()))).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::LocalPathNotAllowed { .. } | ArtifactError::Io { .. }
        ),
        "{err}"
    );

    let opts = FetchOptions {
        extra_local_roots: vec![host.path().to_path_buf()],
        ..FetchOptions::default()
    };
    fetch_with(&sb.request(file.to_str().unwrap()), &opts).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.local("secret.txt")).unwrap(),
        "s"
    );

    let missing = sb.task.join("nope.txt");
    let err = fetch(&sb.request(missing.to_str().unwrap())).unwrap_err();
    assert!(matches!(err, ArtifactError::Io { .. }), "{err}");
    sb.assert_clean();
}

#[test]
fn getter_mode_parsing() {
    assert_eq!("any".parse::<GetterMode>().unwrap(), GetterMode::Any);
    assert_eq!("file".parse::<GetterMode>().unwrap(), GetterMode::File);
    assert_eq!("dir".parse::<GetterMode>().unwrap(), GetterMode::Dir);
    assert_eq!("".parse::<GetterMode>().unwrap(), GetterMode::Any);
    assert!("folder".parse::<GetterMode>().is_err());
    assert_eq!(GetterMode::Dir.to_string(), "dir");
}

#[test]
fn unsupported_getters_and_bad_sources() {
    let sb = Sandbox::new();
    let err = fetch(&sb.request("git::https://github.com/hashicorp/nomad")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to download \"git::https://github.com/hashicorp/nomad\": unsupported getter \"git\""
    );
    assert!(!err.is_recoverable());
    let mut req = sb.request("https://bob:hunter2@127.0.0.1:1/x.tar.xz");
    req.mode = GetterMode::Any;
    let err = fetch(&req).unwrap_err();
    assert!(err.to_string().contains("bob:xxxxx@"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // No file name to use in mode any.
    let err = fetch(&sb.request("http://127.0.0.1:1/dir/")).unwrap_err();
    assert!(err.to_string().contains("cannot tell a file name"), "{err}");
    sb.assert_clean();
}
