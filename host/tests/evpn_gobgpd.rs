//! The EVPN client against a real gobgpd: started on a free loopback port of this namespace
//! with no neighbours and no BGP listener (traffic stays on loopback), stopped by pid on drop.
//! The `gobgp` CLI is the oracle: our routes show in its RIB as FRR would expect them, and the
//! routes it adds and deletes arrive through our `WatchEvent` stream as typed events.
//! Needs the Debian package `gobgpd` (tests/setup.sh installs it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use wasm_vtep::evpn::{
    Gobgp, Import, LocalRoute, MacMobility, RemoteEvent, RemoteRoute, RouteTarget, VniExport, Watch,
};
use wasm_vtep::wire::Vni;
use wasm_vtep_plugin_sdk::MacAddr;

const VNI: Vni = Vni::from_u24(5001);
const OUR_VTEP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const THEIR_VTEP: &str = "198.18.0.1";

/// gobgpd on 127.0.0.1:`port`, killed (by its pid) and reaped on drop, and its files removed.
struct Gobgpd {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Gobgpd {
    fn start() -> Result<Self> {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("wv-evpn-gobgpd-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("gobgpd.toml");
        // `port = -1`: no BGP listener, so nothing else on this host is disturbed.
        let toml =
            format!("[global.config]\n  as = 65000\n  router-id = \"{OUR_VTEP}\"\n  port = -1\n");
        std::fs::write(&config, toml)?;
        let log = std::fs::File::create(dir.join("gobgpd.log"))?;
        let child = Command::new("gobgpd")
            .arg("-f")
            .arg(&config)
            .args([
                "--api-hosts",
                &format!("127.0.0.1:{port}"),
                "--pprof-disable",
                "-p",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting gobgpd (install the Debian package `gobgpd`)")?;
        Ok(Gobgpd { child, port, dir })
    }

    fn api(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `gobgp -u 127.0.0.1 -p PORT global rib -a evpn ARGS...`: stdout, or its stderr as error.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("gobgp")
            .args([
                "-u",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "global",
                "rib",
                "-a",
                "evpn",
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running the gobgp CLI")?;
        ensure!(
            out.status.success(),
            "gobgp {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The RIB as the CLI's JSON: destination -> [path].
    fn rib(&self) -> Result<serde_json::Map<String, Value>> {
        match serde_json::from_str(&self.cli(&["-j"])?)? {
            Value::Object(map) => Ok(map),
            other => bail!("gobgp -j printed {other}"),
        }
    }
}

impl Drop for Gobgpd {
    fn drop(&mut self) {
        // Child::kill signals this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

async fn connect(gobgpd: &Gobgpd) -> Result<Gobgp> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Gobgp::connect(gobgpd.api()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The next event of the watch that is not about our own routes.
async fn next_remote(watch: &mut Watch, import: &Import) -> Result<RemoteEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, watch.next(import))
            .await
            .context("no event from WatchEvent within 10 s")??
            .context("gobgpd ended the WatchEvent stream")?;
        for received in batch {
            let event: RemoteEvent = received?;
            if event.route().vtep() != IpAddr::V4(OUR_VTEP) {
                return Ok(event);
            }
        }
    }
}

fn destination<'a>(rib: &'a serde_json::Map<String, Value>, prefix: &str) -> Result<&'a Value> {
    let found = rib
        .iter()
        .find(|(key, _)| key.starts_with(prefix))
        .map(|(_, paths)| &paths[0]);
    found.with_context(|| format!("{prefix} not in the RIB: {rib:?}"))
}

fn attribute(path: &Value, code: u64) -> Result<&Value> {
    let attrs = path["attrs"].as_array().context("attrs")?;
    attrs
        .iter()
        .find(|a| a["type"] == code)
        .with_context(|| format!("no attribute {code}"))
}

#[tokio::test(flavor = "current_thread")]
async fn routes_go_to_and_come_from_a_real_gobgpd() -> Result<()> {
    let gobgpd = Gobgpd::start()?;
    let mut client = connect(&gobgpd).await?;
    let export = VniExport::auto(VNI, OUR_VTEP, 65000, IpAddr::V4(OUR_VTEP))?;
    let mut import = Import::default();
    import.insert(RouteTarget::auto(65000, VNI), VNI)?;
    let mut watch = client.watch();
    // gobgpd's first event: its best paths when the watch started, none yet.
    assert_eq!(watch.snapshot(&import).await?, []);

    // Ours, through the API: a MAC/IP that moved twice, and our membership of the VNI.
    let mac = MacAddr([2, 0, 0, 0, 0, 0x0a]);
    let mobility = MacMobility {
        seq: 2,
        sticky: false,
    };
    let mac_route = LocalRoute::MacIp {
        mac,
        ip: Some("192.0.2.10".parse()?),
        mobility,
    };
    client.add(&export, &mac_route).await?;
    client.add(&export, &LocalRoute::InclusiveMulticast).await?;

    let rib = gobgpd.rib()?;
    let ours = "[type:macadv][rd:198.18.0.9:5001][etag:0][mac:02:00:00:00:00:0a][ip:192.0.2.10]";
    let type2 = destination(&rib, ours)?;
    assert_eq!(type2["nlri"]["value"]["labels"], serde_json::json!([5001]));
    assert_eq!(attribute(type2, 14)?["nexthop"], "198.18.0.9");
    let communities = attribute(type2, 16)?["value"].to_string();
    for expected in ["\"65000:5001\"", "\"tunnel_type\":8", "\"sequence\":2"] {
        ensure!(
            communities.contains(expected),
            "{expected} not in {communities}"
        );
    }
    let type3 = destination(
        &rib,
        "[type:multicast][rd:198.18.0.9:5001][etag:0][ip:198.18.0.9]",
    )?;
    let pmsi = attribute(type3, 22)?;
    assert_eq!(
        (&pmsi["tunnel-type"], &pmsi["label"]),
        (&Value::from(6), &Value::from(5001))
    );
    assert_eq!(pmsi["tunnel-id"], "198.18.0.9");
    assert_eq!(attribute(type3, 14)?["nexthop"], "198.18.0.9");

    // Theirs, through the CLI: arrives as a typed event, then its withdrawal.
    let macadv = [
        "02:00:00:00:00:01",
        "192.0.2.1",
        "etag",
        "0",
        "label",
        "5001",
        "rd",
        "198.18.0.1:5001",
        "rt",
        "65000:5001",
        "encap",
        "vxlan",
    ];
    gobgpd.cli(&[&["add", "macadv"][..], &macadv, &["nexthop", THEIR_VTEP]].concat())?;
    let theirs = RemoteRoute::Mac {
        vni: VNI,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        ip: Some("192.0.2.1".parse()?),
        vtep: THEIR_VTEP.parse()?,
        mobility: MacMobility::default(),
    };
    assert_eq!(
        next_remote(&mut watch, &import).await?,
        RemoteEvent::Advertised(theirs)
    );
    let multicast = [
        "add",
        "multicast",
        THEIR_VTEP,
        "etag",
        "0",
        "rd",
        "198.18.0.1:5001",
        "rt",
        "65000:5001",
        "encap",
        "vxlan",
        "pmsi",
        "ingress-repl",
        "5001",
        THEIR_VTEP,
        "nexthop",
        THEIR_VTEP,
    ];
    gobgpd.cli(&multicast)?;
    let their_vtep = RemoteRoute::Vtep {
        vni: VNI,
        vtep: THEIR_VTEP.parse()?,
    };
    assert_eq!(
        next_remote(&mut watch, &import).await?,
        RemoteEvent::Advertised(their_vtep)
    );

    gobgpd.cli(&[&["del", "macadv"][..], &macadv].concat())?;
    assert_eq!(
        next_remote(&mut watch, &import).await?,
        RemoteEvent::Withdrawn(theirs)
    );

    // The RIB read back: ours and their type 3, all usable.
    let listed: Vec<RemoteEvent> = client
        .list(&import)
        .await?
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed.contains(&RemoteEvent::Advertised(their_vtep)),
        "{listed:?}"
    );

    // Our deletes empty the RIB of our routes.
    client.delete(&export, &mac_route).await?;
    client
        .delete(&export, &LocalRoute::InclusiveMulticast)
        .await?;
    let rib = gobgpd.rib()?;
    ensure!(
        rib.keys().all(|k| !k.contains("198.18.0.9:5001")),
        "ours still there: {rib:?}"
    );
    ensure!(rib.len() == 1, "their type 3 only: {rib:?}");
    Ok(())
}
