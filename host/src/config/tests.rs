use super::*;
use crate::fdb::Location;
use crate::wire::Vni;

const SEED: &str = r#"
[underlay]
local = "198.18.0.1"
port = 4789
interface = "uplink0"
mtu = 1600

[control]
socket = "/tmp/wv.sock"

[[vni]]
id = 5001
ports = ["vm1", "vm3"]
group = "239.1.1.100"
remotes = ["198.18.0.2"]
aging_secs = 30
learning = true
max_entries = 10

[[vni.static]]
mac = "02:00:00:00:00:02"
remote = "198.18.0.2"

[[vni.static]]
mac = "02:00:00:00:00:03"
port = "vm3"

[[vni]]
id = 5002
ports = ["vm2"]
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text).unwrap_err()
}

fn with(extra_vni: &str) -> String {
    format!("[underlay]\nlocal = \"198.18.0.1\"\n[[vni]]\n{extra_vni}")
}

#[test]
fn seed_config_becomes_settings() {
    let c = Config::parse(SEED).unwrap();
    assert_eq!(c.ports, ["vm1", "vm3", "vm2"]);
    assert_eq!(c.port_id("vm2"), Some(PortId(2)));
    assert_eq!(c.socket, PathBuf::from("/tmp/wv.sock"));
    assert_eq!(c.underlay_interface.as_deref(), Some("uplink0"));
    let s = &c.settings;
    assert_eq!((s.dst_port, s.mtu, s.ttl), (4789, 1600, 64));
    let v = &s.vnis[0];
    assert_eq!(v.vni.get(), 5001);
    assert_eq!(v.ports, [PortId(0), PortId(1)]);
    assert_eq!(v.group, Some("239.1.1.100".parse().unwrap()));
    assert_eq!(v.aging, Duration::from_secs(30));
    assert_eq!(v.max_entries, 10);
    assert_eq!(v.statics[1].location, Location::Port(PortId(1)));
    assert_eq!(s.vnis[1].aging, Duration::from_secs(300));
}

#[test]
fn defaults() {
    let c = Config::parse(&with("id = 7")).unwrap();
    assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(c.settings.dst_port, 4789);
    assert_eq!(c.settings.src_ports.range(), 49152..=65535);
    assert_eq!(c.settings.src_ports.ports().len(), 64);
    assert!(c.settings.vnis[0].learning);
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (&with("id = 0"), "vni[0].id", "outside 1..=16777215"),
        (&with("id = 16777216"), "vni[0].id", "outside"),
        (
            &with("id = 1\nports = [\"a\"]\n[[vni]]\nid = 2\nports = [\"a\"]"),
            "vni[1].ports",
            "already on vni[0].ports",
        ),
        (
            &with("id = 1\nports = [\"a\", \"a\"]"),
            "vni[0].ports",
            "port \"a\" is listed twice",
        ),
        (&with("id = 1\n[[vni]]\nid = 1"), "vni[1].id", "already"),
        (
            &with("id = 1\ngroup = \"198.18.0.9\""),
            "vni[0].group",
            "not a multicast",
        ),
        (
            &with("id = 1\ngroup = \"ff05::1:1\""),
            "vni[0].group",
            "family",
        ),
        (
            &with("id = 1\nremotes = [\"nonsense\"]"),
            "vni[0].remotes[0]",
            "not an IP address",
        ),
        (
            &with("id = 1\nremotes = [\"198.18.0.1\"]"),
            "vni[0].remotes[0]",
            "own address",
        ),
        (
            &with("id = 1\n[[vni.static]]\nmac = \"ff:ff:ff:ff:ff:ff\"\nremote = \"198.18.0.2\""),
            "vni[0].static[0].mac",
            "unicast",
        ),
        (
            &with("id = 1\n[[vni.static]]\nmac = \"02:00:00:00:00:01\""),
            "vni[0].static[0]",
            "exactly one",
        ),
        (
            &with("id = 1\n[[vni.static]]\nmac = \"02:00:00:00:00:01\"\nport = \"x\""),
            "vni[0].static[0].port",
            "not among",
        ),
        (&with("id = 1\naging_secs = 0"), "vni[0].aging_secs", "0"),
        (
            "[underlay]\nlocal = \"239.1.1.1\"\n[[vni]]\nid = 1",
            "underlay.local",
            "unicast",
        ),
        (
            "[underlay]\nlocal = \"198.18.0.1\"\nmtu = 60\n[[vni]]\nid = 1",
            "underlay.mtu",
            "too small",
        ),
        ("[underlay]\nlocal = \"198.18.0.1\"", "vni", "no VNI"),
    ];
    for (text, field, problem) in cases {
        let e = err(text);
        assert_eq!(e.field, *field, "{text}\n=> {e}");
        assert!(e.problem.contains(problem), "{text}\n=> {e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}

#[test]
fn unknown_fields_and_bad_toml_are_one_line_errors() {
    let e = err("[underlay]\nlocal = \"198.18.0.1\"\ncolour = \"blue\"\n[[vni]]\nid = 1");
    assert_eq!(e.field, "line 3");
    assert!(e.problem.contains("unknown field `colour`"), "{e}");
    let e = err("[underlay\n");
    assert!(e.field.starts_with("line"), "{e}");
    assert!(!e.to_string().contains('\n'));
    let e = err("[[vni]]\nid = 1");
    assert!(e.problem.contains("underlay"), "{e}");
}

#[test]
fn missing_interfaces_are_named() {
    let c = Config::parse(&with("id = 1\nports = [\"wv-none0\"]")).unwrap();
    let e = c.check_interfaces(|name| name != "wv-none0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "vni[0].ports: no such interface \"wv-none0\""
    );
}

fn with_plugin(plugin: &str) -> String {
    format!(
        "[underlay]\nlocal = \"198.18.0.1\"\n[[vni]]\nid = 5001\nports = [\"vm1\"]\n\
         [[vni]]\nid = 5002\nports = [\"vm2\"]\n{plugin}"
    )
}

#[test]
fn plugins_become_specs() {
    let c = Config::parse(&with_plugin(
        r#"
[[plugin]]
name = "vni-filter"
path = "plugins/vni_filter.wasm"
vnis = [5002]
on_error = "drop"
memory_mib = 8
budget_us = 200
max_failures = 3
cache_entries = 10
config = { allow = [5001], nested = { deep = true } }

[[plugin]]
name = "learn-guard"
path = "/opt/learn_guard.wasm"
"#,
    ))
    .unwrap();
    let p = &c.plugins[0];
    assert_eq!(p.name, "vni-filter");
    assert_eq!(p.vnis, Some(vec![Vni::new(5002).unwrap()]));
    assert_eq!(p.on_error, OnError::Drop);
    assert_eq!(p.sandbox.memory_limit(), 8 << 20);
    assert_eq!(p.sandbox.time_budget(), Duration::from_micros(200));
    assert_eq!(p.sandbox.max_failures(), 3);
    assert_eq!(p.cache_entries, 10);
    let json: serde_json::Value = serde_json::from_str(&p.config).unwrap();
    assert_eq!(json["allow"][0], 5001);
    assert_eq!(json["nested"]["deep"], true);
    let q = &c.plugins[1];
    assert_eq!(q.vnis, None);
    assert_eq!(q.on_error, OnError::Pass);
    assert_eq!(q.config, "{}");
    assert_eq!(q.sandbox, Sandbox::new());
}

#[test]
fn plugin_errors_name_the_field() {
    let cases = [
        ("name = \"a b\"\npath = \"x.wasm\"", "plugin[0].name"),
        ("name = \"a\"\npath = \"\"", "plugin[0].path"),
        (
            "name = \"a\"\npath = \"x\"\nvnis = [7]",
            "plugin[0].vnis: VNI 7 is not configured",
        ),
        ("name = \"a\"\npath = \"x\"\nvnis = []", "plugin[0].vnis"),
        (
            "name = \"a\"\npath = \"x\"\non_error = \"ignore\"",
            "plugin[0].on_error",
        ),
        (
            "name = \"a\"\npath = \"x\"\nmemory_mib = 0",
            "plugin[0].memory_mib",
        ),
        (
            "name = \"a\"\npath = \"x\"\nbudget_us = 5",
            "plugin[0].budget_us",
        ),
        (
            "name = \"a\"\npath = \"x\"\nmax_failures = 0",
            "plugin[0].max_failures",
        ),
    ];
    for (body, want) in cases {
        let e = err(&with_plugin(&format!("[[plugin]]\n{body}\n")));
        assert!(e.to_string().starts_with(want), "{body}: got {e}");
    }
    let twice = "[[plugin]]\nname = \"a\"\npath = \"x\"\n[[plugin]]\nname = \"a\"\npath = \"y\"\n";
    assert_eq!(
        err(&with_plugin(twice)).to_string(),
        "plugin[1].name: \"a\" is already plugin[0]"
    );
    let unknown = "[[plugin]]\nname = \"a\"\npath = \"x\"\nfuel = 5\n";
    assert!(err(&with_plugin(unknown)).to_string().contains("fuel"));
}

#[test]
fn relative_plugin_paths_are_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("wv-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vtep.toml");
    std::fs::write(
        &file,
        with_plugin("[[plugin]]\nname = \"a\"\npath = \"p/a.wasm\"\n[[plugin]]\nname = \"b\"\npath = \"/abs/b.wasm\"\n"),
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.plugins[0].path, dir.join("p/a.wasm"));
    assert_eq!(c.plugins[1].path, PathBuf::from("/abs/b.wasm"));
}

#[test]
fn datapath_settings() {
    let base = with("id = 1");
    let c = Config::parse(&base).unwrap();
    assert_eq!(
        (
            c.datapath.workers,
            c.datapath.busy_poll,
            c.datapath.steering
        ),
        (None, DEFAULT_BUSY_POLL, Steering::Symmetric)
    );
    let c = Config::parse(&format!(
        "{base}\n[datapath]\nworkers = 3\nbusy_poll_us = 0\nsteering = \"kernel\"\n"
    ))
    .unwrap();
    assert_eq!(
        (
            c.datapath.workers,
            c.datapath.busy_poll,
            c.datapath.steering
        ),
        (Some(3), Duration::ZERO, Steering::Kernel)
    );
    for (bad, field) in [
        ("workers = 0", "datapath.workers"),
        ("busy_poll_us = 100001", "datapath.busy_poll_us"),
        ("steering = \"sideways\"", "datapath.steering"),
    ] {
        assert_eq!(
            err(&format!("{base}\n[datapath]\n{bad}\n")).field,
            field,
            "{bad}"
        );
    }
}

/// `[evpn]` with FRR's defaults: no group or remotes needed; the VNIs learn remote MACs only
/// from routes and check their sources; the router id is the underlay address.
#[test]
fn evpn_defaults() {
    let text = "[underlay]\nlocal = \"198.18.0.1\"\n[evpn]\n\
                [[vni]]\nid = 5001\nports = [\"vm1\"]\n[[vni]]\nid = 5002\nports = [\"vm2\"]\n";
    let c = Config::parse(text).unwrap();
    let e = c.evpn.unwrap();
    assert_eq!(e.settings.gobgp, DEFAULT_GOBGP.parse().unwrap());
    assert_eq!(e.settings.asn, None);
    assert_eq!(e.settings.router_id, std::net::Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(
        e.vnis,
        [VniEvpnSettings::default(), VniEvpnSettings::default()]
    );
    for v in &c.settings.vnis {
        assert!(v.source_check && v.arp_suppress && !v.learn_from_underlay && v.learning);
    }
    // A VNI that also floods to a group does not check sources unless asked.
    let text = "[underlay]\nlocal = \"198.18.0.1\"\n[evpn]\n\
                [[vni]]\nid = 5001\nports = [\"vm1\"]\ngroup = \"239.1.1.1\"\n";
    let c = Config::parse(text).unwrap();
    assert!(!c.settings.vnis[0].source_check);
    assert!(!c.evpn.unwrap().vnis[0].source_check);
    // Without [evpn], nothing changes for flood-and-learn.
    let c = Config::parse(SEED).unwrap();
    assert!(c.evpn.is_none());
    assert!(
        c.settings
            .vnis
            .iter()
            .all(|v| !v.source_check && !v.arp_suppress && v.learn_from_underlay)
    );
}

#[test]
fn evpn_per_vni_settings() {
    let text = "[underlay]\nlocal = \"2001:db8::1\"\n\
                [evpn]\ngobgp = \"[::1]:50052\"\nasn = 4200000000\nrouter_id = \"198.18.0.9\"\n\
                [[vni]]\nid = 5001\nports = [\"vm1\"]\n\
                [vni.evpn]\nrd = \"198.18.0.9:7\"\nimport_rt = [\"65000:5001\", \"65001:1\"]\n\
                export_rt = [\"4200000000:9\"]\nlearn_from_underlay = true\n\
                source_check = false\narp_suppress = false\n";
    let c = Config::parse(text).unwrap();
    let e = c.evpn.unwrap();
    assert_eq!(e.settings.gobgp, "[::1]:50052".parse().unwrap());
    assert_eq!(e.settings.asn, Some(4_200_000_000));
    let v = &e.vnis[0];
    assert_eq!(v.rd.unwrap().to_string(), "198.18.0.9:7");
    assert_eq!(
        v.import_rt
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["65000:5001", "65001:1"]
    );
    assert_eq!(v.export_rt[0].to_string(), "4200000000:9");
    assert!(v.learn_from_underlay && !v.source_check && !v.arp_suppress);
    let s = &c.settings.vnis[0];
    assert!(s.learn_from_underlay && !s.source_check && !s.arp_suppress);
}

#[test]
fn evpn_errors_name_the_field() {
    let base = "[underlay]\nlocal = \"198.18.0.1\"\n";
    let vni = "[[vni]]\nid = 5001\nports = [\"vm1\"]\n";
    for (text, field, problem) in [
        (
            format!("{base}{vni}[vni.evpn]\nrd = \"1:1\"\n"),
            "vni[0].evpn",
            "needs an [evpn] section",
        ),
        (
            format!("{base}[evpn]\n{vni}[vni.evpn]\nrd = \"x\"\n"),
            "vni[0].evpn.rd",
            "not ADMIN:NUMBER",
        ),
        (
            format!("{base}[evpn]\n{vni}[vni.evpn]\nimport_rt = [\"1:1\", \"1\"]\n"),
            "vni[0].evpn.import_rt",
            "not ADMIN:NUMBER",
        ),
        (
            format!("{base}[evpn]\ngobgp = \"localhost\"\n{vni}"),
            "evpn.gobgp",
            "not ADDRESS:PORT",
        ),
        (
            format!("{base}[evpn]\nasn = 0\n{vni}"),
            "evpn.asn",
            "not an AS",
        ),
        (
            format!("{base}[evpn]\nrouter_id = \"2001:db8::1\"\n{vni}"),
            "evpn.router_id",
            "not an IPv4",
        ),
        (
            format!("[underlay]\nlocal = \"2001:db8::1\"\n[evpn]\n{vni}"),
            "evpn.router_id",
            "required with an IPv6 underlay",
        ),
        (
            format!("{base}[evpn]\n[[vni]]\nid = 70000\nports = [\"vm1\"]\n"),
            "vni[0].evpn.rd",
            "above 65535",
        ),
    ] {
        let e = err(&text);
        assert_eq!(e.field, field, "{text}");
        assert!(e.problem.contains(problem), "{e}");
    }
}

#[test]
fn metrics_are_off_unless_a_section_names_an_address() {
    assert_eq!(Config::parse(SEED).expect("seed").metrics, None);
    let on = Config::parse(&format!("{SEED}\n[metrics]\nlisten = \"[::1]:9464\"\n")).expect("on");
    assert_eq!(on.metrics, Some("[::1]:9464".parse().expect("an address")));
    let e = err(&format!("{SEED}\n[metrics]\nlisten = \"localhost\"\n"));
    assert_eq!(e.field, "metrics.listen");
    assert!(e.problem.contains("ADDRESS:PORT"), "{e}");
    let e = err(&format!("{SEED}\n[metrics]\nport = 9464\n"));
    assert!(e.to_string().contains("port"), "{e}");
}
