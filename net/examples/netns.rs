//! Runs msb-net for an existing network namespace: opens and configures TAP `eth0` in
//! `/run/netns/NAME` (172.30.0.2/24, gateway 172.30.0.1, MTU 65520), prints `ready`, serves
//! until stdin closes, then prints the counters. Used by `benches/net.sh` and for manual testing:
//!
//! ```text
//! net-netns NAME [--rule RULE]... [--publish SPEC]... [--dns ADDR] [--tx-ring N] [--rx-ring N]
//! ```

use std::io::Read;
use std::path::Path;

use msb_net::{EgressPolicy, NetConfig, Network};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: netns NAME [--rule RULE]..."))?;
    let mut config = NetConfig::default();
    let mut rules = Vec::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rule" => rules.push(value),
            "--publish" => config.published.push(value.parse()?),
            "--dns" => config.dns_upstream = Some(value.parse()?),
            "--tx-ring" => config.tx_ring_frames = value.parse()?,
            "--rx-ring" => config.rx_ring_frames = value.parse()?,
            "--tcp-buffer" => config.tcp_buffer_bytes = value.parse()?,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    config.policy = EgressPolicy::from_rules(&rules)?;
    let setup = config.guest_setup();
    let network = Network::new(config)?;
    let netns = format!("/run/netns/{name}");
    let tap = msb_net::tap::open_in_netns(Path::new(&netns), "eth0", Some(&setup))?;
    let running = network.start(tap)?;
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    eprintln!("{:#?}", running.counters().snapshot());
    running.stop();
    Ok(())
}
