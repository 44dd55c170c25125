//! The README's promises that can drift: its first command is the quickstart, its second
//! `scripts/test-all`, and its crate map names every member of the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn readme_names_the_two_commands_in_order() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --example quickstart", "scripts/test-all"],
        "the README's indented commands"
    );
    assert!(root().join("scripts/test-all").is_file());
    assert!(root().join("examples/quickstart.rs").is_file());
}

#[test]
fn readme_crate_map_lists_every_workspace_member() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap();
    let members: Vec<&str> = manifest[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(members.len() >= 13, "{members:?}");
    for member in members {
        let dir = member.rsplit('/').next().unwrap();
        assert!(
            readme.contains(&format!("| [`{dir}`]({member})")),
            "README.md's crate map has no row for the workspace member {member}"
        );
    }
}
