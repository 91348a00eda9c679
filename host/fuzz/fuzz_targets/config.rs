//! Arbitrary bytes as a configuration file, through the part of `vtep check` that reads it:
//! `Config::load` reads the file as UTF-8 (anything else is its error) and hands the text to
//! `Config::parse`, which parses the TOML and validates every field. What `vtep check` does
//! next asks the machine (`check_interfaces`: do the ports exist here; loading the plugins'
//! files) and is left out. A configuration that passes must build the pipeline, as `vtep run`
//! then does: `Vtep::new` refusing settings the configuration accepted would be a hole in the
//! validation. Errors are fine; panics are not.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use wasm_vtep::config::Config;
use wasm_vtep::vtep::Vtep;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(e) => {
            // The one line `vtep check` prints.
            let line = e.to_string();
            assert!(!line.contains('\n'), "a multi-line error: {line:?}");
            return;
        }
    };
    for name in &config.ports {
        assert!(config.port_id(name).is_some(), "port {name:?} has no id");
    }
    let _ = config.datapath.worker_count();
    if let Err(e) = Vtep::new(config.settings.clone(), Instant::now()) {
        panic!("a configuration that passed its checks does not build the pipeline: {e}");
    }
});
