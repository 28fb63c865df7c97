//! objects ─▶ components ─▶ layers.
//!
//! [`sources`] decides which component owns each content object (the `user.component` xattr,
//! the dpkg or rpm database, `--contentmeta`, or a directory fallback); [`pack`] bins
//! components into at most `max_layers - 1` chunk layers (layer 0 is the commit):
//!
//! - the largest components get a layer each, the small rest share a few size-balanced bins;
//! - everything that changes every build (unowned files, the initramfs) shares one bin;
//! - the last bin is reserved for packages that appear in later builds;
//! - with a prior build's layout, every component stays in the bin it was in, new ones go to
//!   the last bin, and the layer count stays the same, so an update only changes the layers
//!   whose content changed.

pub mod sources;

use std::collections::{BTreeMap, HashMap};

/// The fewest layers a chunked image may have (commit, one chunk, churn, reserved).
pub const MIN_LAYERS: u32 = 4;
/// The default layer budget.
pub const DEFAULT_MAX_LAYERS: u32 = 64;

/// A group of content objects that travel together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// Total content bytes.
    pub size: u64,
    /// Changes every build (unowned content, initramfs).
    pub churn: bool,
    /// Content object checksums, sorted.
    pub objects: Vec<String>,
}

/// Build components from an object → (component, churn) assignment.
pub fn components_from(
    assignment: &BTreeMap<String, (String, bool)>,
    sizes: &HashMap<String, u64>,
) -> Vec<Component> {
    let mut by_name: BTreeMap<&str, Component> = BTreeMap::new();
    for (obj, (name, churn)) in assignment {
        let c = by_name.entry(name).or_insert_with(|| Component {
            name: name.clone(),
            size: 0,
            churn: *churn,
            objects: Vec::new(),
        });
        c.size += sizes.get(obj).copied().unwrap_or(0);
        c.churn |= *churn;
        c.objects.push(obj.clone());
    }
    by_name.into_values().collect()
}

/// How the previous build laid its components out: one entry per chunk layer (layers 1..),
/// each the component names of that layer.
pub type PriorLayout = Vec<Vec<String>>;

/// The result of packing: bins of component indices, the last one reserved for new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    pub bins: Vec<Vec<usize>>,
    /// Set when a prior layout was asked for but could not be used.
    pub prior_ignored: Option<String>,
}

/// Bin `components` into at most `max_layers - 1` chunk layers.
pub fn pack(components: &[Component], max_layers: u32, prior: Option<&PriorLayout>) -> Packing {
    let max_layers = max_layers.max(MIN_LAYERS);
    let mut prior_ignored = None;
    if let Some(p) = prior {
        if p.is_empty() {
            prior_ignored = Some("the prior build has no chunk layers".to_string());
        } else {
            return Packing {
                bins: pack_with_prior(components, p),
                prior_ignored: None,
            };
        }
    }
    Packing {
        bins: pack_fresh(components, max_layers),
        prior_ignored,
    }
}

fn pack_fresh(components: &[Component], max_layers: u32) -> Vec<Vec<usize>> {
    let mut regular: Vec<usize> = (0..components.len())
        .filter(|&i| !components[i].churn)
        .collect();
    let churn: Vec<usize> = (0..components.len())
        .filter(|&i| components[i].churn)
        .collect();
    regular.sort_by(|&a, &b| {
        let (a, b) = (&components[a], &components[b]);
        b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name))
    });
    let avail = (max_layers - 1) as usize; // layer 0 is the commit
    let budget = avail - 1 - usize::from(!churn.is_empty()); // minus reserved and churn bins
    let mut bins: Vec<Vec<usize>> = Vec::new();
    if regular.len() <= budget {
        bins.extend(regular.iter().map(|&i| vec![i]));
    } else {
        let grouped = (budget / 4).max(1);
        let singles = budget - grouped;
        bins.extend(regular[..singles].iter().map(|&i| vec![i]));
        // Longest-processing-time first: each next-largest goes to the lightest bin.
        let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); grouped];
        for &i in &regular[singles..] {
            let (w, g) = groups
                .iter_mut()
                .min_by_key(|(w, _)| *w)
                .expect("at least one group");
            *w += components[i].size;
            g.push(i);
        }
        bins.extend(groups.into_iter().map(|(_, g)| g));
    }
    if !churn.is_empty() {
        bins.push(churn);
    }
    bins.push(Vec::new()); // reserved for new packages
    bins
}

fn pack_with_prior(components: &[Component], prior: &PriorLayout) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut placed = vec![false; components.len()];
    let mut bins: Vec<Vec<usize>> = prior
        .iter()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .filter(|&i| !std::mem::replace(&mut placed[i], true))
                .collect()
        })
        .collect();
    let new: Vec<usize> = (0..components.len()).filter(|&i| !placed[i]).collect();
    if let Some(last) = bins.last_mut() {
        last.extend(new);
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(spec: &[(&str, u64, bool)]) -> Vec<Component> {
        spec.iter()
            .map(|(n, s, c)| Component {
                name: n.to_string(),
                size: *s,
                churn: *c,
                objects: vec![],
            })
            .collect()
    }

    fn names(c: &[Component], p: &Packing) -> Vec<Vec<String>> {
        p.bins
            .iter()
            .map(|b| b.iter().map(|&i| c[i].name.clone()).collect())
            .collect()
    }

    #[test]
    fn few_components_get_a_layer_each_plus_churn_and_reserved() {
        let c = comps(&[("a", 10, false), ("b", 30, false), ("u", 5, true)]);
        let p = pack(&c, 64, None);
        assert_eq!(names(&c, &p), vec![vec!["b"], vec!["a"], vec!["u"], vec![]]);
    }

    #[test]
    fn many_components_respect_the_budget() {
        let spec: Vec<(String, u64, bool)> = (0..200)
            .map(|i| (format!("p{i:03}"), 1000 + i, false))
            .collect();
        let spec: Vec<(&str, u64, bool)> =
            spec.iter().map(|(n, s, c)| (n.as_str(), *s, *c)).collect();
        let c = comps(&spec);
        for max in [4u32, 8, 16, 64, 128] {
            let p = pack(&c, max, None);
            assert!(
                p.bins.len() < max as usize,
                "max {max}: {} bins",
                p.bins.len()
            );
            let placed: usize = p.bins.iter().map(Vec::len).sum();
            assert_eq!(placed, 200);
            assert!(p.bins.last().unwrap().is_empty());
        }
    }

    #[test]
    fn prior_layout_keeps_bins_and_appends_new_components() {
        let c = comps(&[
            ("a", 1, false),
            ("b", 2, false),
            ("c", 3, false),
            ("new", 4, false),
        ]);
        let prior: PriorLayout = vec![
            vec!["b".into(), "gone".into()],
            vec!["a".into(), "c".into()],
            vec![],
        ];
        let p = pack(&c, 64, Some(&prior));
        assert_eq!(names(&c, &p), vec![vec!["b"], vec!["a", "c"], vec!["new"]]);
        let empty: PriorLayout = vec![];
        assert!(pack(&c, 64, Some(&empty)).prior_ignored.is_some());
    }
}
