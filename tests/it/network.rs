//! Company networks: every AWS call goes through the proxy that
//! HTTPS_PROXY / HTTP_PROXY name (a real CONNECT proxy, proxy.py, on
//! loopback), NO_PROXY exempts hosts, and an endpoint signed by a private CA
//! (as a TLS-intercepting proxy's are) is trusted only through `--ca-bundle`
//! or AWS_CA_BUNDLE.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs the openssl command in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A private CA and a certificate it signed for 127.0.0.1, made with the
/// openssl command.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let openssl = |args: &[&str]| openssl(dir.path(), args);
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &p256,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=ssm-audit test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &p256,
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCa { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A simulator serving HTTPS with the CA's certificate.
    fn https_sim(&self, extra: &[&str]) -> Sim {
        let cert = self.path("server.pem");
        let key = self.path("server.key");
        let mut args = vec![
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let sim = Sim::start(&args);
        assert!(sim.endpoint.starts_with("https://"), "{}", sim.endpoint);
        sim
    }
}

/// The CA of a TLS-intercepting proxy, as proxy.py wants it: an RSA CA
/// and the key of the certificates it makes for each host it intercepts.
struct InterceptingCa {
    dir: tempfile::TempDir,
}

impl InterceptingCa {
    fn new() -> InterceptingCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let openssl = |args: &[&str]| openssl(dir.path(), args);
        openssl(&["genrsa", "-out", "corp-ca.key", "2048"]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "corp-ca.key",
            "-out",
            "corp-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=corporate intercepting CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        openssl(&["genrsa", "-out", "signing.key", "2048"]);
        std::fs::create_dir(dir.path().join("made")).expect("mkdir");
        InterceptingCa { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// proxy.py (from the venv) on a free loopback port, its access log in a
/// file; killed when dropped.
struct Proxy {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Proxy {
        Proxy::start_with(&[])
    }

    /// A proxy that intercepts TLS: it presents certificates `ca` signs,
    /// and trusts `upstream_ca` for the servers behind it.
    fn intercepting(ca: &InterceptingCa, upstream_ca: &Path) -> Proxy {
        let arg = |p: PathBuf| p.to_str().expect("utf-8").to_owned();
        Proxy::start_with(&[
            "--ca-key-file".into(),
            arg(ca.path("corp-ca.key")),
            "--ca-cert-file".into(),
            arg(ca.path("corp-ca.pem")),
            "--ca-signing-key-file".into(),
            arg(ca.path("signing.key")),
            "--ca-cert-dir".into(),
            arg(ca.path("made")),
            "--ca-file".into(),
            arg(upstream_ca.to_path_buf()),
        ])
    }

    fn start_with(extra: &[String]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let log = dir.path().join("access.log");
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/proxy");
        assert!(
            binary.exists(),
            "{} is missing: run `make venv`",
            binary.display()
        );
        let child = Command::new(binary)
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                "0",
                "--num-workers",
                "1",
            ])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log-file")
            .arg(&log)
            .args(["--log-level", "INFO"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: proxy.py runs its worker in a child
            // process, which must go with it.
            .process_group(0)
            .spawn()
            .expect("proxy.py starts");
        let mut proxy = Proxy {
            child,
            url: String::new(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let port = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    proxy.url = format!("http://127.0.0.1:{port}");
                    break;
                }
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("proxy.py exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "proxy.py did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// The requests the proxy carried: one access-log line each.
    fn carried(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("access_log"))
            .map(str::to_owned)
            .collect()
    }

    /// The requests carried once the proxy has logged everything before
    /// now. proxy.py logs a tunnel (CONNECT) when it closes, a moment after
    /// the client exits, and a plain request when it is answered: a plain
    /// request sent now through the proxy to `plain_host` (its one
    /// worker handles events in order) is logged after them. Its own line
    /// is left out.
    fn carried_settled(&self, plain_host: &str) -> Vec<String> {
        use std::io::{Read, Write};
        let marker = format!("settled-{}", fastrand::u64(..));
        let proxy = host_port(&self.url);
        let mut stream = std::net::TcpStream::connect(proxy).expect("connect to the proxy");
        write!(
            stream,
            "GET http://{plain_host}/?{marker} HTTP/1.1\r\nHost: {plain_host}\r\nConnection: close\r\n\r\n"
        )
        .expect("send through the proxy");
        let _ = stream.read_to_end(&mut Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.carried();
            if lines.iter().any(|l| l.contains(&marker)) {
                return lines
                    .into_iter()
                    .filter(|l| !l.contains("settled-"))
                    .collect();
            }
            assert!(Instant::now() < deadline, "the proxy never logged {marker}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The whole group: killing proxy.py alone leaves its worker running.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host_port(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
}

#[test]
fn a_private_ca_is_trusted_only_through_the_ca_bundle() {
    let ca = TestCa::new();
    let sim = ca.https_sim(&["--sessions", "40"]);
    let out = tempfile::tempdir().expect("tempdir");
    // Untrusted: refused with a hint, and no retry storm (one attempt).
    let refused = export(&sim, out.path(), &["--max-attempts", "1"]);
    assert_refused(&refused, 1, "--ca-bundle", "an untrusted endpoint");
    assert!(
        stderr(&refused).contains("invalid peer certificate"),
        "{}",
        stderr(&refused)
    );

    let bundle = ca.path("ca.pem");
    let flag = export(
        &sim,
        out.path(),
        &["--ca-bundle", bundle.to_str().expect("utf-8")],
    );
    assert_success(&flag);
    assert_eq!(read_rows(out.path()).len(), 40);

    let second = tempfile::tempdir().expect("tempdir");
    let env = export_command(&sim, second.path(), &[])
        .env("AWS_CA_BUNDLE", &bundle)
        .output()
        .expect("run");
    assert_success(&env);
    assert_eq!(read_rows(second.path()).len(), 40);
}

#[test]
fn a_ca_bundle_that_is_not_pem_is_refused_before_any_call() {
    let sim = Sim::start(&["--sessions", "3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("bundle.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    for (bundle, expected) in [
        (not_pem.clone(), "holds no certificate"),
        (dir.path().join("missing.pem"), "--ca-bundle"),
    ] {
        let out = export(
            &sim,
            &dir.path().join("out"),
            &["--ca-bundle", bundle.to_str().expect("utf-8")],
        );
        assert_refused(&out, 2, expected, "a bad --ca-bundle");
    }
    assert_eq!(sim.stat("describe_calls"), 0);
    assert_eq!(sim.stat("identity_calls"), 0);
}

#[test]
fn every_call_goes_through_the_proxy_and_no_proxy_exempts_hosts() {
    let ca = TestCa::new();
    let sim = ca.https_sim(&["--sessions", "25"]);
    let moto = Moto::start();
    moto.create_bucket("proxied");
    let proxy = Proxy::start();
    let bundle = ca.path("ca.pem");
    let run = |prefix: &str, no_proxy: Option<&str>| {
        let mut cmd = ssm_audit_with_s3(&sim, &moto);
        cmd.args(["export", "--output", &format!("s3://proxied/{prefix}")])
            .arg("--ca-bundle")
            .arg(&bundle)
            // Upper case for HTTPS (the SSM and STS endpoint), lower case
            // for HTTP (moto's S3): both spellings are honoured.
            .env("HTTPS_PROXY", &proxy.url)
            .env("http_proxy", &proxy.url);
        if let Some(hosts) = no_proxy {
            cmd.env("NO_PROXY", hosts);
        }
        cmd.output().expect("run")
    };
    let out = run("through", None);
    assert_success(&out);
    let sim_host = host_port(&sim.endpoint);
    let moto_host = host_port(&moto.endpoint);
    let carried = proxy.carried_settled(moto_host);
    assert!(
        carried
            .iter()
            .any(|l| l.contains(&format!("CONNECT {sim_host}"))),
        "SSM and STS through CONNECT: {carried:#?}"
    );
    assert!(
        carried
            .iter()
            .any(|l| l.contains(moto_host) && !l.contains("CONNECT")),
        "S3 (plain HTTP) through the proxy: {carried:#?}"
    );
    assert_eq!(read_s3_rows(&moto, "proxied", "through").len(), 25);

    let out = run("direct", Some("127.0.0.1"));
    assert_success(&out);
    assert_eq!(
        proxy.carried_settled(moto_host),
        carried,
        "NO_PROXY=127.0.0.1 goes direct"
    );
    assert_eq!(read_s3_rows(&moto, "proxied", "direct").len(), 25);
}

#[test]
fn a_proxy_variable_that_is_not_a_url_is_refused() {
    let sim = Sim::start(&["--sessions", "3"]);
    let out = tempfile::tempdir().expect("tempdir");
    let refused = export_command(&sim, out.path(), &[])
        .env("HTTPS_PROXY", "ftp://proxy.example:21")
        .output()
        .expect("run");
    assert_refused(&refused, 2, "HTTPS_PROXY", "a proxy that is not http(s)");
    assert_eq!(sim.stat("describe_calls"), 0);
}

#[test]
fn a_tls_intercepting_proxy_is_trusted_through_its_ca_bundle() {
    let ca = TestCa::new();
    let sim = ca.https_sim(&["--sessions", "15"]);
    let corporate = InterceptingCa::new();
    let proxy = Proxy::intercepting(&corporate, &ca.path("ca.pem"));
    // By name: the proxy makes certificates for host names.
    let endpoint = sim.endpoint.replace("127.0.0.1", "localhost");
    let run = |bundle: &Path, out: &Path| {
        ssm_audit()
            .args(["export", "--max-attempts", "1", "--endpoint-url", &endpoint])
            .arg("--output")
            .arg(out)
            .arg("--ca-bundle")
            .arg(bundle)
            .env("HTTPS_PROXY", &proxy.url)
            .output()
            .expect("run")
    };
    let out = tempfile::tempdir().expect("tempdir");
    // The endpoint's own CA is not enough: the proxy re-signs everything.
    let refused = run(&ca.path("ca.pem"), &out.path().join("refused"));
    assert_refused(&refused, 1, "UnknownIssuer", "an intercepted endpoint");
    let trusted = run(&corporate.path("corp-ca.pem"), &out.path().join("trusted"));
    assert_success(&trusted);
    assert_eq!(read_rows(&out.path().join("trusted")).len(), 15);
    assert!(
        corporate.path("made").join("localhost.pem").exists(),
        "the proxy made a certificate for the host it intercepted"
    );
}
