//! The layering the code keeps, checked on the source: no file of `src/wall/` imports another
//! in a loop; `net` does not import the command line; the wall does not import `bench`; the
//! layers below `net` see neither tokio nor bevy. (`docs/ARCHITECTURE.md`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A file's code without comments and without its `#[cfg(test)] mod tests`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A module of `src/wall`: its file, or its folder's files (`panels/`) as one.
fn module_code(wall: &Path, m: &str) -> String {
    let dir = wall.join(m);
    if dir.is_dir() {
        let mut all = files(&dir);
        all.sort();
        all.iter().map(|p| code(p)).collect::<Vec<_>>().join("\n")
    } else {
        code(&wall.join(format!("{m}.rs")))
    }
}

/// The `.rs` files under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// Names `text` refers to as `prefix<name>` (e.g. `super::` → the sibling modules named).
fn referred(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// A loop in `graph`, if there is one (as the list of modules on it).
fn a_loop(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].to_vec());
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(l) = visit(next, graph, path, done) {
                return Some(l);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_loop_finder_finds_loops() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
            g.entry((*b).into()).or_default();
        }
        g
    };
    assert_eq!(a_loop(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        a_loop(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into()])
    );
}

#[test]
fn the_walls_files_import_each_other_one_way_and_the_layers_keep_their_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let wall = root.join("wall");
    let modules: BTreeSet<String> = std::fs::read_dir(&wall)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "mod")
        .collect();
    assert!(modules.contains("panels"), "{modules:?}");
    assert!(modules.contains("nav") && modules.contains("feed"));
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| {
            let text = module_code(&wall, m);
            // A folder's files name their siblings `crate::wall::…` (their `super` is the
            // folder's own module).
            let mut deps = referred(&text, "super::");
            deps.extend(referred(&text, "crate::wall::"));
            let deps = deps
                .into_iter()
                .filter(|d| d != m && modules.contains(d))
                .collect();
            (m.clone(), deps)
        })
        .collect();
    assert_eq!(
        a_loop(&graph),
        None,
        "files of src/wall import each other in a loop"
    );
    // The ground floor imports no view.
    let nav = &graph["nav"];
    assert!(
        nav.iter()
            .all(|d| ["outbox", "theme"].contains(&d.as_str())),
        "nav imports {nav:?}"
    );
    for m in &modules {
        // Nothing under mod.rs reaches up into it (its items live in nav).
        let file = wall.join(format!("{m}.rs"));
        let file = if file.exists() {
            file
        } else {
            wall.join(m).join("mod.rs")
        };
        let text = code(&file);
        let up: Vec<String> = referred(&text, "super::")
            .into_iter()
            .filter(|d| d.starts_with(char::is_uppercase))
            .collect();
        assert!(up.is_empty(), "wall/{m}.rs uses wall/mod.rs's {up:?}");
    }
    let uses = |dir: &str, what: &str| -> Vec<String> {
        files(&root.join(dir))
            .into_iter()
            .filter(|p| code(p).contains(what))
            .map(|p| p.display().to_string())
            .collect()
    };
    assert_eq!(
        uses("net", "crate::cli"),
        Vec::<String>::new(),
        "net takes config types"
    );
    assert_eq!(
        uses("wall", "crate::bench"),
        Vec::<String>::new(),
        "the wall does not import bench"
    );
    for below in ["protocol", "model", "sim"] {
        for engine in ["tokio::", "bevy::"] {
            assert_eq!(
                uses(below, engine),
                Vec::<String>::new(),
                "{below} uses {engine}"
            );
        }
    }
}
