//! Tests of `namespace.rs`.

use super::*;

fn plan() -> BootPlan {
    BootPlan {
        default_rootfs: "/home/images/busybox/rootfs".into(),
        agent_binary: "/usr/lib/msb/msb-agentd".into(),
        id_map: Some(crate::idmap::IdMap {
            host_uid: 100_000,
            host_gid: 100_000,
            count: 65536,
        }),
        spare: true,
    }
}

/// What msbd gives a `msb run -- true` of the home `plan` describes.
fn config() -> SupervisorConfig {
    let plan = plan();
    SupervisorConfig {
        sandbox_id: "0123456789abcdef".into(),
        run_id: "run".into(),
        config: msb_api::config::SandboxConfig {
            name: "s".into(),
            command: vec!["true".into()],
            ..booted_config()
        },
        sandbox_dir: "/home/sandboxes/0123456789abcdef".into(),
        default_rootfs: plan.default_rootfs,
        agent_binary: plan.agent_binary,
        wait_for_attach: true,
        main_mode: msb_protocol::ExecMode::Stream,
        log_level: "info".into(),
        id_map: plan.id_map,
        output_log_max_bytes: 1 << 20,
        claim_booted: false,
    }
}

#[test]
fn only_the_configuration_a_sandbox_was_booted_for_takes_it() {
    assert!(bootable(&config(), &plan()));
    // What the claim sets, or the workload's exec carries, does not matter.
    let mut limited = config();
    limited.config.memory_mib = Some(64);
    limited.config.cpus = Some(0.5);
    limited.config.published_ports = vec!["8080:80".into()];
    limited.config.net_rules = vec!["deny@any".into()];
    limited.config.env = vec![("A".into(), "1".into())];
    limited.config.ephemeral = true;
    assert!(bootable(&limited, &plan()));
    // What PID 1 was built with does.
    type Change = Box<dyn Fn(&mut SupervisorConfig)>;
    let changes: Vec<(&str, Change)> = vec![
        ("no network", Box::new(|c| c.config.no_network = true)),
        (
            "another disk size",
            Box::new(|c| c.config.root_disk_mib = Some(512)),
        ),
        ("no disk", Box::new(|c| c.config.root_disk_mib = None)),
        (
            "a host root",
            Box::new(|c| {
                c.config.rootfs = RootfsSource::Bind {
                    path: "/srv/root".into(),
                }
            }),
        ),
        (
            "a volume",
            Box::new(|c| {
                c.config.volumes = vec![serde_json::from_value(
                    serde_json::json!({"host": "/srv", "guest": "/srv", "readonly": false}),
                )
                .unwrap()]
            }),
        ),
        ("another id map", Box::new(|c| c.id_map = None)),
        (
            "another agent",
            Box::new(|c| c.agent_binary = "/tmp/agent".into()),
        ),
        (
            "another root",
            Box::new(|c| c.default_rootfs = "/tmp/rootfs".into()),
        ),
    ];
    for (what, change) in changes {
        let mut changed = config();
        change(&mut changed);
        assert!(!bootable(&changed, &plan()), "{what}");
    }
}
