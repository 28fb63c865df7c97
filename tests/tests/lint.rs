//! `container lint` flags planted problems and passes a clean tree.

use ostree_bridge_tests::TestEnv;
use serde_json::Value;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn lint(env: &TestEnv, root: &Path) -> (i32, Value) {
    let o = env
        .ostree_container()
        .args(["container", "lint", "--json", "--rootfs"])
        .arg(root)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap(), v)
}

fn write(root: &Path, p: &str, data: &str) {
    let f = root.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, data).unwrap();
}

fn rules(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn clean_warning_and_fatal_trees() {
    let env = TestEnv::new();
    let root = env.path().join("clean");
    write(&root, "usr/lib/modules/6.1.0/vmlinuz", "k");
    write(&root, "usr/bin/tool", "x");
    write(
        &root,
        "usr/lib/bootc/kargs.d/10.toml",
        "kargs = [\"quiet\"]\n",
    );
    std::fs::create_dir_all(root.join("var/tmp")).unwrap();
    std::fs::create_dir_all(root.join("opt")).unwrap();
    let (code, v) = lint(&env, &root);
    assert_eq!(code, 0, "{v}");
    assert!(v["findings"].as_array().unwrap().is_empty());

    write(&root, "var/lib/app/state", "s");
    write(&root, "opt/app/bin", "b");
    write(&root, "tmp/junk", "j");
    let (code, v) = lint(&env, &root);
    assert_eq!(code, 2, "warnings only: {v}");
    let r = rules(&v);
    for rule in ["var-content", "dropped-toplevel", "run-tmp-content"] {
        assert!(
            r.contains(&("warning".into(), rule.into())),
            "{rule}: {r:?}"
        );
    }
    assert!(v.to_string().contains("/var/lib/app/state") && v.to_string().contains("/opt/app/bin"));

    write(&root, "usr/lib/modules/6.2.0/vmlinuz", "k2");
    write(
        &root,
        "usr/lib/bootc/kargs.d/20-bad.toml",
        "kargs = \"not a list\"\n",
    );
    let bad = root
        .join("usr/share")
        .join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "x").unwrap();
    let (code, v) = lint(&env, &root);
    assert_eq!(code, 1, "fatal: {v}");
    let r = rules(&v);
    for rule in ["kernel", "kargs", "non-utf8-name"] {
        assert!(r.contains(&("fatal".into(), rule.into())), "{rule}: {r:?}");
    }
    assert!(v.to_string().contains("20-bad.toml"));
    // Text output names the paths too.
    let o = env
        .ostree_container()
        .args(["container", "lint", "--rootfs"])
        .arg(&root)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("fatal: kernel (2)") && t.contains("/usr/lib/modules/6.2.0/vmlinuz"),
        "{t}"
    );
}
