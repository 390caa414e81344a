//! The files in deploy/ that can be checked here, checked by the tools
//! that consume them: systemd's own analyzer for the unit, sysusers and
//! tmpfiles applied to a scratch root, the Kubernetes manifests against the
//! API schemas (kubernetes-validate, strict) with the config they carry
//! checked by `portcullis config check`. (The MTA recipes are exercised by
//! the door tests: deploy/postfix by tests/milter.rs, deploy/haraka and
//! deploy/rspamd-proxy by tests/clients.rs, deploy/exim by tests/exim.rs.
//! deploy/container is checked as far as can be without building it: no
//! container engine runs on these machines and CI reaches no image
//! registry.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn output(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (systemd's tools are part of Debian's systemd)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The unit with ExecStart pointing at this build's binary: `verify`
/// checks that the executable exists.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(deploy("systemd/portcullis.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/portcullis serve"));
    let unit = unit.replace(
        "/usr/local/bin/portcullis",
        env!("CARGO_BIN_EXE_portcullis"),
    );
    let path = dir.join("portcullis.service");
    std::fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    let unit = unit.to_str().expect("utf-8 path");
    let (ok, text) = output("systemd-analyze", &["verify", unit]);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );

    // systemd's exposure score: 0 is fully sandboxed, 10 not at all; under
    // 2 is what systemd calls "OK". A change that loosens the sandbox
    // fails here.
    let (_, text) = output(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", unit],
    );
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("portcullis.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(score <= 2.0, "exposure {score}: {text}");
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_directories() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path().to_str().expect("utf-8 path");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let sysusers = deploy("systemd/portcullis.sysusers.conf");
    let (ok, text) = output(
        "systemd-sysusers",
        &[&format!("--root={r}"), sysusers.to_str().expect("path")],
    );
    assert!(ok, "systemd-sysusers: {text}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("portcullis:"))
        .unwrap_or_else(|| panic!("no portcullis user in {passwd}"));
    // A system user without a login shell, at home in its state directory.
    let fields: Vec<&str> = user.split(':').collect();
    assert!(fields[2].parse::<u32>().expect("uid") < 1000, "{user}");
    assert_eq!(fields[5], "/var/lib/portcullis");
    assert!(fields[6].ends_with("nologin"), "{user}");

    let tmpfiles = deploy("systemd/portcullis.tmpfiles.conf");
    let (ok, text) = output(
        "systemd-tmpfiles",
        &[
            "--create",
            &format!("--root={r}"),
            tmpfiles.to_str().expect("path"),
        ],
    );
    assert!(ok, "systemd-tmpfiles: {text}");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for (dir, mode) in [
        ("var/lib/portcullis", 0o750),
        ("var/lib/portcullis/quarantine", 0o750),
        ("etc/portcullis", 0o750),
    ] {
        let meta =
            std::fs::metadata(root.path().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{dir}");
        // Owned by the group sysusers just made (no world access at all).
        assert_eq!(meta.gid().to_string(), fields[3], "{dir}");
    }
}

#[test]
fn the_unit_runs_the_shipped_config_which_checks() {
    // The unit points at /etc/portcullis/portcullis.toml; deploy/ ships it.
    let config = deploy("portcullis.toml");
    let (ok, text) = output(
        env!("CARGO_BIN_EXE_portcullis"),
        &["config", "check", config.to_str().expect("path")],
    );
    assert!(ok, "portcullis config check: {text}");
}

/// The TOML in the ConfigMap's `portcullis.toml: |` block.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("portcullis.toml: |"));
    let header = lines.next().expect("a portcullis.toml block");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_manifests_validate_and_carry_a_valid_config() {
    let dir = deploy("kubernetes");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    let names: Vec<&str> = files
        .iter()
        .filter_map(|f| Path::new(f).file_stem()?.to_str())
        .collect();
    assert_eq!(
        names,
        ["configmap", "deployment", "hpa", "pdb", "secret", "service"],
        "every manifest is validated; pods keep nothing durable, so no volume claim"
    );
    let tool = std::env::var("PORTCULLIS_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "/var/cache/portcullis/venv/bin/kubernetes-validate".into());
    let mut args = vec!["--strict"];
    args.extend(files.iter().map(String::as_str));
    let (ok, text) = output(&tool, &args);
    assert!(ok, "kubernetes-validate: {text}");
    for f in &files {
        let name = Path::new(f)
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            text.contains(&format!("{name} passed")),
            "{name} not validated: {text}"
        );
    }
    let yaml = std::fs::read_to_string(dir.join("configmap.yaml")).expect("configmap");
    let toml = configmap_toml(&yaml);
    assert!(toml.contains("[quarantine]"), "{toml}");
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("portcullis.toml");
    std::fs::write(&path, toml).expect("write");
    let (ok, text) = output(
        env!("CARGO_BIN_EXE_portcullis"),
        &["config", "check", path.to_str().expect("path")],
    );
    assert!(ok, "the ConfigMap's config: {text}");
    // The Deployment mounts what the config names.
    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).expect("deployment");
    assert!(deployment.contains("mountPath: /etc/portcullis/secrets"));
    assert!(yaml.contains("secret_file = \"/etc/portcullis/secrets/secret.key\""));
    assert!(deployment.contains("path: /readyz") && deployment.contains("path: /healthz"));
}

/// The Dockerfile's instructions, continuation lines joined (no engine
/// parses it here, so the test does the little parsing it needs).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("container/Dockerfile")).expect("Dockerfile");
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim_end();
        if pending.is_empty() && (line.trim_start().starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (op, rest) = pending
            .trim()
            .split_once(' ')
            .unwrap_or((pending.trim(), ""));
        out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
        pending.clear();
    }
    out
}

/// What can be checked of the image without a container engine (none runs
/// here, and CI reaches no image registry to pull the base images from):
/// its runtime stage runs as a non-root user, the command it starts parses
/// and serves with this build's binary, and its HEALTHCHECK command, run
/// as written, passes against that server and fails once it is gone. The
/// build stage itself is not exercised.
#[test]
fn the_container_runs_non_root_and_its_command_and_health_check_work() {
    let steps = dockerfile();
    let froms: Vec<&String> = steps
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: build, then runtime");
    let runtime_start = steps
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a runtime stage");
    let runtime = &steps[runtime_start..];
    let get = |name: &str| {
        runtime
            .iter()
            .find(|(op, _)| op == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {name} in the runtime stage"))
    };
    let user = get("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    assert!(get("COPY").contains("--from=build"));

    // The command the image runs, on loopback ports of our choosing.
    let json = |s: String| -> Vec<String> {
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s}: {e}"))
    };
    let entry = json(get("ENTRYPOINT"));
    assert_eq!(entry, vec!["/usr/local/bin/portcullis"]);
    let (http, milter) = (crate::harness::free_port(), crate::harness::free_port());
    let data = tempfile::tempdir().expect("data dir");
    let args: Vec<String> = json(get("CMD"))
        .into_iter()
        .map(|a| {
            a.replace("0.0.0.0:11333", &format!("127.0.0.1:{http}"))
                .replace("0.0.0.0:11332", &format!("127.0.0.1:{milter}"))
                .replace("/var/lib/portcullis", &data.path().display().to_string())
        })
        .collect();
    assert!(args.iter().any(|a| a == "--log-json"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(&args).current_dir(data.path());
    let server = crate::harness::Server::spawn(cmd, tempfile::tempdir().expect("dir"));

    // HEALTHCHECK … CMD ["bash", "-c", "…"], port swapped.
    let hc = get("HEALTHCHECK");
    let at = hc.find("CMD").expect("HEALTHCHECK CMD");
    let check: Vec<String> = json(hc[at + 3..].trim().to_string())
        .into_iter()
        .map(|a| a.replace("11333", &http.to_string()))
        .collect();
    let run_check = || {
        Command::new(&check[0])
            .args(&check[1..])
            .status()
            .expect("running the health check")
            .success()
    };
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(30), || run_check()
            .then_some(()))
        .is_some(),
        "health check never passed; log:\n{}",
        server.log()
    );
    assert!(server.log().contains("\"level\":\"INFO\""), "--log-json");
    drop(server);
    assert!(!run_check(), "the health check fails when nothing answers");

    // The example config the image carries is valid.
    let (ok, text) = output(
        env!("CARGO_BIN_EXE_portcullis"),
        &[
            "config",
            "check",
            deploy("portcullis.toml").to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "{text}");
}
