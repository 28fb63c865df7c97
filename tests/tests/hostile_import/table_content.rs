//! The table: OCI metadata and ostree content.

use super::*;

pub(super) fn oci_metadata() -> Vec<Case> {
    let c = "OCI metadata";
    vec![
        refused(
            c,
            "a manifest whose digest does not match",
            reindexed(|w, m| {
                // The manifest's bytes under the digest of other bytes.
                let wrong = sha256_digest(b"another manifest");
                w.put_as(&wrong, m)?;
                Ok(serde_json::json!({"digest": wrong, "size": m.len()}))
            }),
            None,
            "has digest",
        ),
        refused(
            c,
            "a manifest descriptor whose size does not match",
            reindexed(|_, m| {
                let d = sha256_digest(m);
                Ok(serde_json::json!({"digest": d, "size": m.len() + 7}))
            }),
            None,
            "its descriptor says",
        ),
        refused(
            c,
            "a config descriptor whose size does not match",
            edited(|_, m| {
                let n = m["config"]["size"].as_u64().context("size")?;
                m["config"]["size"] = (n - 1).into();
                Ok(())
            }),
            None,
            "its descriptor says",
        ),
        refused(
            c,
            "a config whose digest does not match",
            edited(|w, m| {
                let wrong = sha256_digest(b"another config");
                let cfg = std::fs::read(
                    w.dir.join("blobs/sha256").join(
                        m["config"]["digest"]
                            .as_str()
                            .context("cd")?
                            .trim_start_matches("sha256:"),
                    ),
                )?;
                w.put_as(&wrong, &cfg)?;
                m["config"]["digest"] = wrong.into();
                Ok(())
            }),
            None,
            "has digest",
        ),
        refused(
            c,
            "a layer whose digest does not match",
            edited(|w, m| {
                let wrong = sha256_digest(b"another layer");
                w.put_as(&wrong, &t().file("usr/evil", b"e").finish())?;
                m["layers"][0]["digest"] = wrong.into();
                Ok(())
            }),
            Some(0),
            "has digest",
        ),
        refused(
            c,
            "a layer whose size is larger than the blob",
            edited(|_, m| {
                let s = m["layers"][0]["size"].as_u64().context("size")?;
                m["layers"][0]["size"] = (s + 512).into();
                Ok(())
            }),
            Some(0),
            "the manifest says",
        ),
        refused(
            c,
            "a layer whose size is smaller than the blob",
            edited(|_, m| {
                m["layers"][0]["size"] = 512.into();
                Ok(())
            }),
            Some(0),
            "limit of 512 bytes",
        ),
        refused(
            c,
            "a diff_id that does not match",
            parts(|_| {
                let mut p =
                    ImageParts::plain(vec![RawLayer::tar(t().file("usr/a", b"a").finish())]);
                p.config["rootfs"]["diff_ids"][0] = sha256_digest(b"other").into();
                Ok(p)
            }),
            Some(0),
            "the config's diff_id is",
        ),
        refused(
            c,
            "more layers than diff_ids",
            parts(|_| {
                let mut p = ImageParts::plain(vec![
                    RawLayer::tar(t().file("usr/a", b"a").finish()),
                    RawLayer::tar(t().file("usr/b", b"b").finish()),
                ]);
                p.config["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .context("ids")?
                    .pop();
                Ok(p)
            }),
            None,
            "the manifest lists 2 layers but the config 1 diff_ids",
        ),
        refused(
            c,
            "fewer layers than diff_ids",
            parts(|_| {
                let mut p =
                    ImageParts::plain(vec![RawLayer::tar(t().file("usr/a", b"a").finish())]);
                p.config["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .context("ids")?
                    .push(sha256_digest(b"x").into());
                Ok(p)
            }),
            None,
            "the manifest lists 1 layers but the config 2 diff_ids",
        ),
        refused(
            c,
            "an unknown layer media type",
            plain_layers(|_| {
                let tar = t().file("usr/a", b"a").finish();
                let d = sha256_digest(&tar);
                vec![RawLayer::raw(
                    tar,
                    "application/vnd.example.layer.v1.tar+lz4",
                    &d,
                )]
            }),
            Some(0),
            "unsupported layer media type",
        ),
        refused(
            c,
            "an image index where the manifest should be",
            edited(|w, m| {
                let inner = w.put(&serde_json::to_vec(m)?)?;
                *m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [inner]});
                Ok(())
            }),
            None,
            "the manifest names no config",
        ),
        refused(
            c,
            "a config that is not JSON",
            edited(|w, m| {
                m["config"] = w.put(b"\x00\x01 not json {")?;
                Ok(())
            }),
            None,
            "parsing the config",
        ),
        refused(
            c,
            "a manifest that is not JSON",
            reindexed(|w, _| w.put(b"{\"schemaVersion\": 2, \"config\": ")),
            None,
            "parsing the manifest",
        ),
        refused(
            c,
            "a manifest over 4 MiB",
            edited(|_, m| {
                m["annotations"] = serde_json::json!({"padding": "p".repeat(5 << 20)});
                Ok(())
            }),
            None,
            "over the 4194304 byte limit",
        ),
        refused(
            c,
            "a config over 4 MiB",
            edited(|w, m| {
                let cfg =
                    serde_json::json!({"padding": "p".repeat(5 << 20), "rootfs": {"diff_ids": []}});
                m["config"] = w.put(&serde_json::to_vec(&cfg)?)?;
                Ok(())
            }),
            None,
            "over the 4194304 byte limit",
        ),
        refused(
            c,
            "a layer digest that climbs out of blobs/",
            edited(|_, m| {
                m["layers"][0]["digest"] = "sha256:../../../victim/keep".into();
                Ok(())
            }),
            Some(0),
            "invalid digest",
        ),
        refused(
            c,
            "a layer digest of another algorithm",
            edited(|_, m| {
                m["layers"][0]["digest"] = format!("sha512:{}", "0".repeat(128)).into();
                Ok(())
            }),
            None,
            "invalid digest \"sha512:",
        ),
        refused(
            c,
            "a layer without a size",
            edited(|_, m| {
                m["layers"][0]
                    .as_object_mut()
                    .context("desc")?
                    .remove("size");
                Ok(())
            }),
            Some(0),
            "has no size",
        ),
        imported(
            c,
            "the same layer twice in one image",
            plain(|_| {
                let l = t().file("usr/twice", b"2").finish();
                vec![l.clone(), l]
            }),
            |tr| tr.expect_cat("/usr/twice", "2"),
        ),
        imported(
            c,
            "3000 layers finish in bounded time",
            plain(|_| {
                (0..3000u64)
                    .map(|i| t().entry(hdr(b'5', "usr", |h| h.mtime = i), &[]).finish())
                    .collect()
            }),
            |tr| tr.expect_stat("/usr", "d"),
        ),
    ]
}

/// The first regular content object (`.file`) of at least `min` bytes in an ostree layer.
fn content_object(tar: &[u8], min: usize) -> Result<rawtar::Located> {
    let (es, _) = rawtar::locate(tar)?;
    es.into_iter()
        .find(|e| e.kind == b'0' && e.path.ends_with(".file") && e.size >= min)
        .context("no content object in the layer")
}

pub(super) fn ostree_content() -> Vec<Case> {
    let c = "ostree content";
    let tamper = |tar: &[u8]| -> Result<Vec<u8>> {
        let e = content_object(tar, 1)?;
        let mut v = tar.to_vec();
        v[e.data_pos] ^= 0x20;
        Ok(v)
    };
    let dirmeta_into_chunk = |c: &Ctx, tar: &[u8]| -> Result<Vec<u8>> {
        let l0 = &c.base.layers[0].blob;
        let (es, _) = rawtar::locate(l0)?;
        let m = es
            .iter()
            .find(|e| e.path.ends_with(".dirmeta"))
            .context("no dirmeta")?;
        let mut extra = t();
        extra.entry(
            Hdr::new(b'0', &m.path),
            &l0[m.data_pos..m.data_pos + m.size],
        );
        Ok(rawtar::append(tar, &extra.buf)?)
    };
    vec![
        refused(
            c,
            "a tampered object in a chunk layer",
            ostree_edit(1, tamper),
            Some(1),
            "content does not match its name",
        )
        .unencapsulate(),
        refused(
            c,
            "a tampered object in a chunk layer (image pull)",
            ostree_edit(1, tamper),
            Some(1),
            "content does not match its name",
        ),
        refused(
            c,
            "a commit other than the ostree.commit label",
            parts(|c| {
                let mut p = c.base.clone();
                p.set_label(LABEL_COMMIT, &"ab".repeat(32));
                Ok(p)
            }),
            None,
            "label says abab",
        )
        .unencapsulate(),
        refused(
            c,
            "a metadata object in a chunk layer",
            Box::new(move |c: &Ctx, dir: &Path| {
                let chunk = dirmeta_into_chunk(c, &c.base.layers[1].blob)?;
                ostree_edit(1, move |_| Ok(chunk.clone()))(c, dir)
            }),
            Some(1),
            "metadata objects belong in the commit layer only",
        )
        .unencapsulate(),
        refused(
            c,
            "a second commit object in a chunk layer",
            Box::new(|c: &Ctx, dir: &Path| {
                let l0 = &c.base.layers[0].blob;
                let (es, _) = rawtar::locate(l0)?;
                let m = es
                    .iter()
                    .find(|e| e.path.ends_with(".commit"))
                    .context("no commit")?;
                let mut extra = t();
                extra.entry(
                    Hdr::new(b'0', &m.path),
                    &l0[m.data_pos..m.data_pos + m.size],
                );
                let chunk = rawtar::append(&c.base.layers[1].blob, &extra.buf)?;
                ostree_edit(1, move |_| Ok(chunk.clone()))(c, dir)
            }),
            Some(1),
            "metadata objects belong in the commit layer only",
        )
        .unencapsulate(),
        refused(
            c,
            "an object path climbing out of the object store",
            ostree_edit(1, |tar| {
                let mut extra = t();
                extra.file("sysroot/ostree/repo/objects/../../../../usr/x.file", b"x");
                Ok(rawtar::append(tar, &extra.buf)?)
            }),
            Some(1),
            "not an ostree object name",
        )
        .unencapsulate(),
        refused(
            c,
            "a whiteout in a chunk layer's object store",
            ostree_edit(1, |tar| {
                let mut extra = t();
                extra.file("sysroot/ostree/repo/objects/.wh.00", b"");
                Ok(rawtar::append(tar, &extra.buf)?)
            }),
            Some(1),
            "not an ostree object name",
        )
        .unencapsulate(),
        refused(
            c,
            "a chunk layer left out",
            parts(|c| {
                let mut p = c.base.clone();
                let keep_last = p.layers.len() - 1;
                // Drop the first chunk that holds content objects.
                let i = (1..keep_last)
                    .find(|&i| content_object(&p.layers[i].blob, 0).is_ok())
                    .context("no chunk with content")?;
                p.layers.remove(i);
                if let Some(l) = p.manifest["layers"].as_array_mut() {
                    l.remove(i);
                }
                p.sync_diff_ids();
                Ok(p)
            }),
            None,
            "the image lacks content object",
        )
        .unencapsulate(),
        refused(
            c,
            "an ostree.final-diffid that names no layer",
            parts(|c| {
                let mut p = c.base.clone();
                p.set_label("ostree.final-diffid", &sha256_digest(b"nothing"));
                Ok(p)
            }),
            None,
            "is not among the config's diff_ids",
        )
        .unencapsulate(),
        imported(
            c,
            "the untouched sample image (control)",
            parts(|c| Ok(c.base.clone())),
            |tr| tr.expect_stat("/usr/bin/su-like", "-04755"),
        )
        .unencapsulate(),
    ]
}
