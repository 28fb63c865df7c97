//! The table: paths, links and whiteouts.

use super::*;

// ---- the table -------------------------------------------------------------------------

pub(super) fn paths() -> Vec<Case> {
    let c = "paths";
    let long_component = "n".repeat(255);
    let long_path = format!("usr/{}/f", vec![long_component.as_str(); 15].join("/"));
    let long_path2 = long_path.clone();
    let deep = format!("usr/{}f", "d/".repeat(200));
    let deep2 = deep.clone();
    vec![
        imported(
            c,
            "dot components are skipped",
            plain(|_| {
                vec![t()
                    .dir("./")
                    .dir("./usr/.")
                    .file("./usr/./a/./b", b"b")
                    .file("usr//c", b"c")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/a/b", "b")?;
                tr.expect_cat("/usr/c", "c")
            },
        ),
        imported(
            c,
            "an empty name or `/` is the root directory",
            plain(|_| vec![t().dir("").dir("/").dir(".").file("usr/x", b"x").finish()]),
            |tr| tr.expect_cat("/usr/x", "x"),
        ),
        refused(
            c,
            "a regular file with an empty name",
            plain(|_| vec![t().file("", b"data").finish()]),
            Some(0),
            "an entry with an empty path (the root) that is not a directory",
        ),
        refused(
            c,
            "a whiteout name as a directory (`usr/.wh.d/y`)",
            plain(|_| vec![t().file("usr/.wh.d/y", b"y").finish()]),
            Some(0),
            "a whiteout name used as a directory",
        ),
        refused(
            c,
            "`.wh..` as a directory (`usr/.wh../x`)",
            plain(|_| vec![t().file("usr/.wh../x", b"x").finish()]),
            Some(0),
            "a whiteout name used as a directory",
        ),
        refused(
            c,
            "a path over 4096 bytes (GNU long name)",
            plain(|_| {
                let p = format!("usr/{}", "a/".repeat(2100));
                vec![t().gnu_long_name(p.as_bytes()).file("x", b"x").finish()]
            }),
            Some(0),
            "the path is longer than 4096 bytes",
        ),
        refused(
            c,
            "a path over 4096 bytes (PAX path)",
            plain(|_| {
                let p = format!("usr/{}", "b".repeat(5000));
                vec![t().pax(&[("path", p.as_bytes())]).file("x", b"x").finish()]
            }),
            Some(0),
            "the path is longer than 4096 bytes",
        ),
        imported(
            c,
            "a 3900-byte path of 255-byte names",
            plain(move |_| {
                vec![t()
                    .gnu_long_name(long_path.as_bytes())
                    .file("x", b"long")
                    .finish()]
            }),
            move |tr| tr.expect_cat(&format!("/{long_path2}"), "long"),
        ),
        imported(
            c,
            "200 levels of directories",
            plain(move |_| {
                vec![t()
                    .gnu_long_name(deep.as_bytes())
                    .file("x", b"deep")
                    .finish()]
            }),
            move |tr| tr.expect_cat(&format!("/{deep2}"), "deep"),
        ),
        imported(
            c,
            "the same file twice: the later wins",
            plain(|_| {
                vec![t()
                    .file("usr/f", b"first")
                    .file("usr/f", b"second")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/f", "second"),
        ),
        imported(
            c,
            "a file, then a directory of that name: the directory wins",
            plain(|_| {
                vec![t()
                    .file("usr/x", b"file")
                    .dir("usr/x")
                    .file("usr/x/in", b"in")
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/x", "d")?;
                tr.expect_cat("/usr/x/in", "in")
            },
        ),
        imported(
            c,
            "a directory with children, then a file of that name: the file wins",
            plain(|_| {
                vec![t()
                    .dir("usr/x")
                    .file("usr/x/in", b"in")
                    .file("usr/x", b"file")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/x", "file")?;
                tr.expect_absent("/usr/x/in")
            },
        ),
        imported(
            c,
            "a file replaced by a directory in a later layer",
            plain(|_| {
                vec![
                    t().file("usr/x", b"file").finish(),
                    t().file("usr/x/in", b"in").finish(),
                ]
            }),
            |tr| tr.expect_cat("/usr/x/in", "in"),
        ),
    ]
}

pub(super) fn links() -> Vec<Case> {
    let c = "links";
    vec![
        imported(
            c,
            "a symlinked directory, then a file through it in a later layer",
            plain(|c| {
                vec![
                    t().dir("usr").symlink("usr/evil", &c.victim).finish(),
                    t().file("usr/evil/keep", b"pwned").finish(),
                ]
            }),
            // The later path replaces the symlink with a directory of the image.
            |tr| {
                tr.expect_stat("/usr/evil", "d")?;
                tr.expect_cat("/usr/evil/keep", "pwned")
            },
        ),
        imported(
            c,
            "a chain of relative symlinks, then a file through it, same layer",
            plain(|_| {
                vec![t()
                    .symlink("usr/a", "b")
                    .symlink("usr/b", "../../../../../..")
                    .symlink("usr/c", "/usr/a")
                    .file("usr/c/x", b"through")
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/a", "l")?;
                tr.expect_stat("/usr/b", "l")?;
                tr.expect_cat("/usr/c/x", "through")
            },
        ),
        imported(
            c,
            "symlinks pointing outside are stored, never followed",
            plain(|c| {
                vec![t()
                    .symlink("usr/abs", &c.victim)
                    .symlink("usr/rel", "../../../../../../../../tmp")
                    .symlink("usr/etc-shadow", "/etc/shadow")
                    .finish()]
            }),
            |tr| {
                let s = tr.stat("/usr/rel")?;
                ensure!(s.ends_with("-> ../../../../../../../../tmp"), "{s}");
                tr.expect_stat("/usr/etc-shadow", "l")
            },
        ),
        imported(
            c,
            "a whiteout through a symlinked directory removes nothing",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim)
                        .file("usr/keep", b"k")
                        .finish(),
                    t().file("usr/lnk/.wh.keep", b"").finish(),
                ]
            }),
            |tr| {
                tr.expect_stat("/usr/lnk", "l")?;
                tr.expect_cat("/usr/keep", "k")
            },
        ),
        imported(
            c,
            "an opaque marker through a symlinked directory",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim).finish(),
                    t().file("usr/lnk/.wh..wh..opq", b"").finish(),
                ]
            }),
            |tr| tr.expect_stat("/usr/lnk", "l"),
        ),
        refused(
            c,
            "a hardlink through a symlinked directory",
            plain(|c| {
                vec![
                    t().symlink("usr/lnk", &c.victim).finish(),
                    t().hardlink("usr/h", "usr/lnk/keep").finish(),
                ]
            }),
            Some(1),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink cycle",
            plain(|_| {
                vec![t()
                    .hardlink("usr/a", "usr/b")
                    .hardlink("usr/b", "usr/a")
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to itself",
            plain(|_| vec![t().hardlink("usr/a", "usr/a").finish()]),
            Some(0),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to `usr/../../x`",
            plain(|_| {
                vec![t()
                    .file("usr/x", b"x")
                    .hardlink("usr/h", "usr/../../x")
                    .finish()]
            }),
            Some(0),
            "`..` component",
        ),
        refused(
            c,
            "a hardlink to an absolute host path",
            plain(|c| {
                vec![t()
                    .hardlink("usr/h", &format!("{}/keep", c.victim))
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
        imported(
            c,
            "a hardlink to a target later in the stream",
            plain(|_| {
                vec![t()
                    .hardlink("usr/h", "usr/t")
                    .file("usr/t", b"target")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/h", "target"),
        ),
        imported(
            c,
            "a hardlink chain",
            plain(|_| {
                vec![t()
                    .file("usr/a", b"chain")
                    .hardlink("usr/b", "usr/a")
                    .hardlink("usr/c", "usr/b")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/c", "chain"),
        ),
        refused(
            c,
            "a hardlink to a directory of a lower layer",
            plain(|_| {
                vec![
                    t().dir("usr/d").finish(),
                    t().hardlink("usr/h", "usr/d").finish(),
                ]
            }),
            Some(1),
            "is not a file in this layer or below",
        ),
        refused(
            c,
            "a hardlink to a symlink's target path outside",
            plain(|_| {
                vec![t()
                    .symlink("usr/s", "/etc")
                    .hardlink("usr/h", "usr/s/passwd")
                    .finish()]
            }),
            Some(0),
            "is not a file in this layer or below",
        ),
    ]
}

pub(super) fn whiteouts() -> Vec<Case> {
    let c = "whiteouts";
    vec![
        refused(
            c,
            "`.wh...`",
            plain(|_| vec![t().file("usr/.wh...", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh.` at the root",
            plain(|_| vec![t().file(".wh.", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh..` at the root (a whiteout of `/`)",
            plain(|_| vec![t().file("./.wh..", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh..wh.x` (a whiteout of a whiteout)",
            plain(|_| vec![t().file("usr/.wh..wh.x", b"").finish()]),
            Some(0),
            "malformed whiteout",
        ),
        refused(
            c,
            "`.wh.` + `..` further down",
            plain(|_| vec![t().file("usr/.wh.x/../../y", b"").finish()]),
            Some(0),
            "`..` component",
        ),
        refused(
            c,
            "an opaque marker at the root",
            plain(|_| vec![t().file("./.wh..wh..opq", b"").finish()]),
            Some(0),
            "opaque marker at the root",
        ),
        imported(
            c,
            "an opaque marker inside a dropped directory is dropped",
            plain(|_| {
                vec![
                    t().file("usr/k", b"k").finish(),
                    t().file("opt/.wh..wh..opq", b"").finish(),
                ]
            }),
            |tr| tr.expect_cat("/usr/k", "k"),
        ),
        imported(
            c,
            "an opaque marker as a directory entry, in a dir no layer made",
            plain(|_| {
                vec![t()
                    .dir("usr/nowhere/.wh..wh..opq")
                    .file("usr/k", b"k")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/k", "k"),
        ),
        imported(
            c,
            "an opaque marker on /etc hides the lower usr/etc only",
            derived(|_| {
                vec![t()
                    .file("etc/.wh..wh..opq", b"")
                    .file("etc/new", b"n")
                    .finish()]
            }),
            |tr| {
                tr.expect_cat("/usr/etc/new", "n")?;
                tr.expect_absent("/usr/etc/passwd")?;
                tr.expect_stat("/usr/bin/busybox", "-")
            },
        ),
        imported(
            c,
            "a whiteout of a whole top-level directory",
            derived(|_| vec![t().file(".wh.var", b"").finish()]),
            |tr| {
                tr.expect_absent("/var")?;
                tr.expect_stat("/usr/bin/busybox", "-")
            },
        ),
        imported(
            c,
            "whiteouts in the ostree object area are dropped",
            derived(|_| {
                vec![t()
                    .file("sysroot/ostree/repo/objects/.wh..wh..opq", b"")
                    .file("sysroot/ostree/repo/.wh.objects", b"")
                    .file("sysroot/.wh.ostree", b"")
                    .finish()]
            }),
            |tr| tr.expect_stat("/usr/bin/busybox", "-"),
        ),
        refused(
            c,
            "a whiteout climbing out of the object area",
            derived(|_| {
                vec![t()
                    .file("sysroot/ostree/repo/objects/../../../../usr/.wh.bin", b"")
                    .finish()]
            }),
            None,
            "`..` component",
        ),
    ]
}
