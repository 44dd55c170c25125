//! Any text as the topology file: never a panic; an accepted topology holds canonical names,
//! every target has a site, its targets print and parse back, and the resolution index built
//! from it answers every one of its names for the right target (or reports the conflict).
#![no_main]

use bmcert_resolve::{CertIndex, Service};
use bmcert_topology::{Host, Target, Topology};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(topology) = Topology::from_toml_str(text) else {
        return;
    };
    let index = CertIndex::new(&topology);
    let conflicted = |name: &str| index.conflicts().iter().any(|c| c.name.as_str() == name);
    let targets = std::iter::once(Target::System)
        .chain(topology.domains.iter().map(|d| Target::Domain(d.name.clone())));
    for target in targets {
        assert_eq!(target.to_string().parse::<Target>().as_ref(), Ok(&target));
        let site = topology.site_for(&target).expect("every listed target has a site");
        assert!(topology.host_for(&target).is_ok());
        let own_site = target.is_system()
            || topology
                .domain(target.domain().expect("a domain target"))
                .is_some_and(|d| d.site.is_some());
        if !own_site {
            continue;
        }
        // A domain whose site borrows the system URL leaves that host to the system.
        let hosts = match &site.host {
            Host::Dns(name) if target.is_system() || site.host != topology.system.host => {
                vec![name.as_str()]
            }
            _ => vec![],
        };
        for name in hosts.into_iter().chain(site.names.iter().map(|n| n.as_str())) {
            if conflicted(name) {
                continue;
            }
            let why = index.explain(Service::Https, Some(name));
            assert_eq!(
                why.name_of.as_ref(),
                target.domain(),
                "{name} belongs to {target}"
            );
        }
    }
});

