//! `keelson-conformance` against the two-node Keelson: every selected conformance-style
//! test must pass. The runner's own output is printed when one does not.

use keelson_e2e::NODE_CLUSTER;
use std::process::Command;

/// Tests that cannot pass on this cluster yet, each with the reason (see
/// docs/conformance.md).
const SKIPPED: &[&str] = &[];

#[test]
fn conformance_runner_passes_against_two_real_nodes() {
    let c = &*NODE_CLUSTER;
    let bin = keelson_testkit::binary("keelson-conformance").expect("the runner binary");
    let junit = tempfile::NamedTempFile::new().expect("junit file");
    let mut args: Vec<String> = vec![
        "--kubeconfig".into(),
        c.cluster.kubeconfig.display().to_string(),
        // Most tests wait on containers; 2 cores run 8 of them at once comfortably.
        "--parallel".into(),
        "8".into(),
        "--timeout".into(),
        "170".into(),
        "--junit".into(),
        junit.path().display().to_string(),
    ];
    for s in SKIPPED {
        args.extend(["--skip".into(), s.to_string()]);
    }
    let listed = Command::new(&bin)
        .args(&args)
        .arg("--list")
        .output()
        .expect("keelson-conformance --list");
    let selected = String::from_utf8_lossy(&listed.stdout).lines().count();
    assert!(selected >= 100, "only {selected} tests selected");

    let started = std::time::Instant::now();
    let out = Command::new(&bin)
        .args(&args)
        .output()
        .expect("keelson-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "after {:?}:\n{stdout}\nstderr:\n{stderr}\nagents:\n{}",
        started.elapsed(),
        c.agent_logs()
    );
    let last = stdout.lines().last().unwrap_or("");
    assert_eq!(last, format!("{selected} passed, 0 failed"), "{report}");
    assert!(
        out.status.success(),
        "exit status {:?}: {report}",
        out.status
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        selected,
        "{report}"
    );
    let xml = std::fs::read_to_string(junit.path()).expect("junit report");
    assert!(
        xml.contains(&format!("tests=\"{selected}\" failures=\"0\"")),
        "{xml}"
    );
    println!("{stdout}");
}
