//! The README's examples of `--json` output are what the daemon prints: each one, read into
//! the control protocol's type and written back, is unchanged (no field the type lacks, none
//! it has missing, every value of the right kind).

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_vtep::control::{FdbRow, PluginReport, StatsReport};

/// The JSON block after `<!-- json: NAME -->` in the README.
fn example(name: &str) -> serde_json::Value {
    let readme = include_str!("../../README.md");
    let marker = format!("<!-- json: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in the README"))
        .1;
    let block = after
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no json block after {marker}"))
        .0;
    serde_json::from_str(block).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn round_trips<T: Serialize + DeserializeOwned>(name: &str) {
    let value = example(name);
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        serde_json::to_value(&typed).expect("a protocol type serializes"),
        value,
        "{name}: the README's example and the protocol type differ"
    );
}

#[test]
fn the_readmes_json_examples_are_the_protocols() {
    round_trips::<Vec<FdbRow>>("fdb-show");
    round_trips::<StatsReport>("stats");
    round_trips::<PluginReport>("plugin-show");
    round_trips::<Vec<PluginReport>>("plugin-list");
}
