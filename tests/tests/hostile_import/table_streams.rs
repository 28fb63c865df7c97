//! The table: special files and metadata, tar format, compression.

use super::*;

pub(super) fn metadata() -> Vec<Case> {
    let c = "special files and metadata";
    vec![
        imported(
            c,
            "setuid and setgid root files keep their mode",
            plain(|_| {
                vec![t()
                    .file_mode("usr/bin/su", 0o4755, b"su")
                    .file_mode("usr/bin/sg", 0o2755, b"sg")
                    .entry(hdr(b'5', "usr/sticky", |h| h.mode = 0o1777), &[])
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/bin/su", "-04755 0 0")?;
                tr.expect_stat("/usr/bin/sg", "-02755 0 0")?;
                tr.expect_stat("/usr/sticky", "d01777")
            },
        ),
        imported(
            c,
            "odd modes: file-type bits in the mode field are masked, 0 and 07777 kept",
            plain(|_| {
                vec![t()
                    .file_mode("usr/typebits", 0o170644, b"t")
                    .file_mode("usr/none", 0, b"n")
                    .file_mode("usr/all", 0o7777, b"a")
                    .entry(hdr(b'5', "usr/d0", |h| h.mode = 0), &[])
                    .finish()]
            }),
            |tr| {
                tr.expect_stat("/usr/typebits", "-00644")?;
                tr.expect_stat("/usr/none", "-00000")?;
                tr.expect_stat("/usr/all", "-07777")?;
                tr.expect_stat("/usr/d0", "d00000")
            },
        ),
        refused(
            c,
            "an xattr over 64 KiB in a PAX record",
            plain(|_| {
                let big = vec![b'x'; 70 * 1024];
                vec![t()
                    .pax(&[("SCHILY.xattr.user.big", &big)])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "larger than 64 KiB",
        ),
        refused(
            c,
            "a PAX record set over 1 MiB",
            plain(|_| {
                let big = vec![b'x'; 60 * 1024];
                let recs: Vec<(String, Vec<u8>)> = (0..20)
                    .map(|i| (format!("SCHILY.xattr.user.x{i}"), big.clone()))
                    .collect();
                let refs: Vec<(&str, &[u8])> = recs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                vec![t().pax(&refs).file("usr/f", b"f").finish()]
            }),
            Some(0),
            "over the 1048576 byte limit",
        ),
        refused(
            c,
            "a malformed security.capability",
            plain(|_| {
                vec![t()
                    .pax(&[("SCHILY.xattr.security.capability", b"\x01\x02garbage")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            // The kernel refuses it as the object is written (the layer is not named yet).
            None,
            "fsetxattr(security.capability): Invalid argument",
        ),
        refused(
            c,
            "an xattr with an empty name",
            plain(|_| {
                vec![t()
                    .pax(&[("SCHILY.xattr.", b"v")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "empty or NUL-containing name",
        ),
        refused(
            c,
            "a uid beyond 32 bits (base-256 field)",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = 1 << 33), b"f")
                    .finish()]
            }),
            Some(0),
            "uid beyond 32 bits",
        ),
        refused(
            c,
            "a gid beyond 32 bits (PAX record)",
            plain(|_| {
                vec![t()
                    .pax(&[("gid", b"1099511627776")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "gid beyond 32 bits",
        ),
        refused(
            c,
            "a uid of 2^32-1 (chown's -1) in a derived layer",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = u32::MAX.into()), b"f")
                    .finish()]
            }),
            Some(0),
            "uid or gid 4294967295 cannot be stored",
        ),
        refused(
            c,
            "a gid of 2^32-1 (chown's -1) in a derived layer",
            plain(|_| {
                vec![t()
                    .pax(&[("gid", b"4294967295")])
                    .file("usr/f", b"f")
                    .finish()]
            }),
            Some(0),
            "uid or gid 4294967295 cannot be stored",
        ),
        imported(
            c,
            "a uid of 2^32-2 is kept",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'0', "usr/f", |h| h.uid = (u32::MAX - 1).into()), b"f")
                    .finish()]
            }),
            |tr| tr.expect_stat("/usr/f", "-00644 4294967294 0"),
        ),
        imported(
            c,
            "device nodes and fifos are dropped",
            plain(|_| {
                vec![t()
                    .entry(hdr(b'3', "usr/null", |_| {}), &[])
                    .entry(hdr(b'4', "usr/sda", |_| {}), &[])
                    .entry(hdr(b'6', "usr/fifo", |_| {}), &[])
                    .file("usr/ok", b"ok")
                    .finish()]
            }),
            |tr| {
                tr.expect_absent("/usr/null")?;
                tr.expect_absent("/usr/sda")?;
                tr.expect_absent("/usr/fifo")?;
                tr.expect_cat("/usr/ok", "ok")
            },
        ),
        refused(
            c,
            "an unknown entry type",
            plain(|_| vec![t().entry(hdr(b'Z', "usr/z", |_| {}), &[]).finish()]),
            Some(0),
            "unsupported tar entry type",
        ),
    ]
}

pub(super) fn tar_format() -> Vec<Case> {
    let c = "tar format";
    vec![
        refused(
            c,
            "a truncated header",
            plain(|_| {
                let mut v = t().file("usr/a", b"a").buf.clone();
                v.extend_from_slice(&Hdr::new(b'0', "usr/b").encode()[..300]);
                vec![v]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a bad header checksum",
            plain(|_| {
                let h = raw_header(Hdr::new(b'0', "usr/a"), |_| {}, true);
                vec![t().block(&h).finish()]
            }),
            Some(0),
            "checksum mismatch",
        ),
        refused(
            c,
            "a size field that is not a number",
            plain(|_| {
                let h = raw_header(
                    Hdr::new(b'0', "usr/a"),
                    |b| b[124..136].copy_from_slice(b"zzzzzzzzzzz\0"),
                    false,
                );
                vec![t().block(&h).finish()]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a uid field that is not a number",
            plain(|_| {
                let h = raw_header(
                    Hdr::new(b'0', "usr/a"),
                    |b| b[108..116].copy_from_slice(b"zzzzzzz\0"),
                    false,
                );
                vec![t().block(&h).finish()]
            }),
            Some(0),
            "entry \"usr/a\": bad header field",
        ),
        refused(
            c,
            "a size field bigger than the data",
            plain(|_| {
                let h = hdr(b'0', "usr/a", |h| h.size = 100_000);
                let mut v = t().block(&h.encode()).buf.clone();
                v.extend_from_slice(&[b'a'; 512]);
                vec![v]
            }),
            Some(0),
            "header says 100000",
        ),
        refused(
            c,
            "a base-256 size of 2^62",
            plain(|_| {
                vec![t()
                    .block(&hdr(b'0', "usr/a", |h| h.size = 1 << 62).encode())
                    .data(b"a")
                    .finish()]
            }),
            Some(0),
            "layer 0",
        ),
        imported(
            c,
            "trailing garbage after the end-of-archive blocks is ignored",
            plain(|_| {
                let mut v = t().file("usr/a", b"a").finish();
                v.extend_from_slice(&[0xff; 3000]);
                vec![v]
            }),
            |tr| tr.expect_cat("/usr/a", "a"),
        ),
        imported(
            c,
            "no end-of-archive blocks at all",
            plain(|_| vec![t().file("usr/a", b"a").buf.clone()]),
            |tr| tr.expect_cat("/usr/a", "a"),
        ),
        imported(
            c,
            "a GNU long name and a PAX path that agree",
            plain(|_| {
                vec![t()
                    .gnu_long_name(b"usr/same")
                    .pax(&[("path", b"usr/same")])
                    .file("x", b"s")
                    .finish()]
            }),
            |tr| tr.expect_cat("/usr/same", "s"),
        ),
        refused(
            c,
            "a GNU long name and a PAX path that disagree",
            plain(|_| {
                vec![t()
                    .gnu_long_name(b"usr/gnu")
                    .pax(&[("path", b"usr/pax")])
                    .file("x", b"?")
                    .finish()]
            }),
            Some(0),
            "disagree",
        ),
        refused(
            c,
            "a GNU sparse file",
            plain(|_| {
                let h = raw_header(
                    hdr(b'S', "usr/sparse", |h| h.size = 512),
                    |b| {
                        // One sparse extent: offset 3584, 512 bytes; real size 4096.
                        b[386..398].copy_from_slice(b"00000007000\0");
                        b[398..410].copy_from_slice(b"00000001000\0");
                        b[483..495].copy_from_slice(b"00000010000\0");
                    },
                    false,
                );
                vec![t().block(&h).data(&[b's'; 512]).finish()]
            }),
            Some(0),
            "unsupported tar entry type",
        ),
        refused(
            c,
            "a GNU sparse file with extension headers",
            plain(|_| {
                let h = raw_header(
                    hdr(b'S', "usr/sparse", |h| h.size = 512),
                    |b| b[482] = 1,
                    false,
                );
                vec![t().block(&h).data(&[0; 512]).data(&[b's'; 512]).finish()]
            }),
            Some(0),
            "GNU sparse files with extension headers",
        ),
        refused(
            c,
            "a 2 MiB GNU long name smuggled past a size field with leading spaces",
            plain(|_| smuggled_long_name(SmuggleBy::LeadingSpaces)),
            Some(0),
            "over the 1048576 byte limit",
        ),
        refused(
            c,
            "a 2 MiB GNU long name smuggled past a PAX size record",
            plain(|_| smuggled_long_name(SmuggleBy::PaxSize)),
            Some(0),
            "over the 1048576 byte limit",
        ),
    ]
}

enum SmuggleBy {
    LeadingSpaces,
    PaxSize,
}

/// A file whose data (one block, as the tar parser counts it) is a fake header claiming to
/// cover the next 2 MiB, followed by a real 2 MiB GNU long name: a reader that counts the
/// file's size differently from the parser skips the long name's header.
fn smuggled_long_name(by: SmuggleBy) -> Vec<Vec<u8>> {
    let name_len = 2 << 20;
    let fake = hdr(b'0', "fake", |h| h.size = 512 + name_len as u64).encode();
    let mut tr = t();
    match by {
        SmuggleBy::LeadingSpaces => {
            let h = raw_header(
                Hdr::new(b'0', "usr/a"),
                |b| b[124..136].copy_from_slice(b"       1000\0"),
                false,
            );
            tr.block(&h);
        }
        SmuggleBy::PaxSize => {
            // On a directory: the importer reads no data, the tar crate skips 512 bytes.
            tr.pax(&[("size", b"512")]);
            tr.block(&hdr(b'5', "usr/d", |h| h.size = 0).encode());
        }
    }
    tr.data(&fake);
    tr.entry(Hdr::new(b'L', "././@LongLink"), &vec![b'n'; name_len]);
    tr.file("x", b"x");
    vec![tr.finish()]
}

pub(super) fn compression() -> Vec<Case> {
    let c = "compression";
    vec![
        imported(
            c,
            "multi-member gzip: a file in member 2 appears",
            plain_layers(|_| {
                let tar = t().file("usr/one", b"1").file("usr/two", b"2").finish();
                let mut blob = gz_member(&tar[..512 * 2]);
                blob.extend(gz_member(&tar[512 * 2..]));
                vec![RawLayer::raw(blob, MT_GZIP, &sha256_digest(&tar))]
            }),
            |tr| {
                tr.expect_cat("/usr/one", "1")?;
                tr.expect_cat("/usr/two", "2")
            },
        ),
        imported(
            c,
            "zstd with a skippable frame first",
            plain_layers(|_| {
                let tar = t().file("usr/z", b"z").finish();
                let mut blob = vec![0x50, 0x2a, 0x4d, 0x18, 8, 0, 0, 0];
                blob.extend_from_slice(b"skipme!!");
                blob.extend(zstd::encode_all(tar.as_slice(), 3).expect("zstd"));
                vec![RawLayer::raw(blob, MT_ZSTD, &sha256_digest(&tar))]
            }),
            |tr| tr.expect_cat("/usr/z", "z"),
        ),
        imported(
            c,
            "zstd as several frames",
            plain_layers(|_| {
                let tar = t().file("usr/z1", b"1").file("usr/z2", b"2").finish();
                let mut blob = zstd::encode_all(&tar[..1024], 3).expect("zstd");
                blob.extend(zstd::encode_all(&tar[1024..], 3).expect("zstd"));
                vec![RawLayer::raw(blob, MT_ZSTD, &sha256_digest(&tar))]
            }),
            |tr| tr.expect_cat("/usr/z2", "2"),
        ),
        refused(
            c,
            "a gzip bomb past the layer limit",
            plain_layers(|_| {
                let zeros = vec![0u8; 8 << 20];
                let tar = t().file("usr/bomb", &zeros).finish();
                vec![RawLayer::gzip(&tar)]
            }),
            Some(0),
            "exceeds its limit of 1048576 bytes",
        )
        .env("OSTREE_CONTAINER_MAX_LAYER_BYTES", (1u64 << 20).to_string()),
        refused(
            c,
            "a zstd bomb past the layer limit",
            plain_layers(|_| {
                let zeros = vec![0u8; 8 << 20];
                vec![RawLayer::zstd(&t().file("usr/bomb", &zeros).finish())]
            }),
            Some(0),
            "exceeds its limit of 1048576 bytes",
        )
        .env("OSTREE_CONTAINER_MAX_LAYER_BYTES", (1u64 << 20).to_string()),
        refused(
            c,
            "a gzip media type on plain tar bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(tar, MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a zstd media type on gzip bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(gz_member(&tar), MT_ZSTD, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a plain tar media type on gzip bytes",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(gz_member(&tar), MT_TAR, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "a truncated gzip stream",
            plain_layers(|_| {
                let tar = t().file("usr/a", &[7; 5000]).finish();
                let d = sha256_digest(&tar);
                let gz = gz_member(&tar);
                vec![RawLayer::raw(gz[..gz.len() - 20].to_vec(), MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
        refused(
            c,
            "garbage after the last gzip member",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                let mut gz = gz_member(&tar);
                gz.extend_from_slice(b"this is not a gzip member");
                vec![RawLayer::raw(gz, MT_GZIP, &d)]
            }),
            Some(0),
            "layer 0",
        ),
    ]
}
