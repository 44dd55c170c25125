//! The sans-I/O index: names to targets, and one certificate slot per target.

use core::fmt;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bmcert_topology::{DomainName, Host, Site, Target, Topology};
use rustls::sign::CertifiedKey;

use crate::service::Service;

/// The longest DNS name (RFC 1035, without the trailing dot); longer names cannot be known.
const MAX_NAME: usize = 253;

/// Slot 0 always holds the system certificate.
const SYSTEM_SLOT: u32 = 0;

/// Why a name resolves to the certificate it does.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The name belongs to a domain's own site and that domain has a certificate.
    Dedicated,
    /// The name belongs to a domain's own site, but the domain has no certificate (never
    /// installed, or disabled): the system certificate is served instead.
    FallbackToSystem,
    /// The name is the system URL's host or one of the system's extra names.
    SystemName,
    /// No site of the topology has this name: the system certificate is served.
    UnknownName,
    /// The client sent no server name (SNI): the system certificate is served.
    NoSni,
    /// The service is a mail protocol, which always gets the system certificate.
    MailAlwaysSystem,
}

impl Reason {
    /// The kebab-case name used in logs and in the example server's answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dedicated => "dedicated",
            Self::FallbackToSystem => "fallback-to-system",
            Self::SystemName => "system-name",
            Self::UnknownName => "unknown-name",
            Self::NoSni => "no-sni",
            Self::MailAlwaysSystem => "mail-always-system",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`CertIndex::explain`] found: whose certificate a handshake gets, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The service asked about.
    pub service: Service,
    /// The target whose certificate is served.
    pub target: Target,
    /// Why that target.
    pub reason: Reason,
    /// The domain the name belongs to, when it belongs to one (also when that domain has no
    /// certificate and the system one is served).
    pub name_of: Option<DomainName>,
    /// Whether [`Explanation::target`] has a certificate. `false` only when the system
    /// certificate is missing: the handshake is then refused.
    pub available: bool,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "target={} reason={} service={}",
            self.target, self.reason, self.service
        )?;
        if let Some(domain) = &self.name_of {
            write!(f, " name-of=domain:{domain}")?;
        }
        if !self.available {
            f.write_str(" certificate=missing")?;
        }
        Ok(())
    }
}

/// Two sites claim the same DNS name; the first one keeps it.
///
/// The system site is placed first, then the domains in topology order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameConflict {
    /// The name claimed twice.
    pub name: DomainName,
    /// The target that keeps it.
    pub kept: Target,
    /// The target that does not get it.
    pub ignored: Target,
}

impl fmt::Display for NameConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the name `{}` is claimed by {} and {}; {} keeps it (remove it from one of the two sites in the topology)",
            self.name, self.kept, self.ignored, self.kept
        )
    }
}

/// An immutable map from DNS names to targets, with one atomically replaceable certificate
/// slot per target.
///
/// Built from a [`Topology`]: the system URL's host and the system's extra names map to
/// [`Target::System`]; for every domain that has its own site, the site's URL host and the
/// site's extra names map to that domain. A domain's extra names map to the domain's
/// certificate because they are on that certificate (the store checks the certificate covers
/// them). A domain without its own site has no names here: it is served by the system
/// certificate, whatever certificate it may have in the store. URL hosts that are IP
/// addresses are skipped, since SNI carries only DNS names.
///
/// The name map never changes after construction; only certificates do, one slot at a time
/// with [`CertIndex::set`], which costs the same at 10 or 100,000 domains. Lookups never
/// lock and never allocate.
pub struct CertIndex {
    names: HashMap<Box<str>, u32>,
    targets: Box<[Target]>,
    slot_of: HashMap<DomainName, u32>,
    certs: Box<[ArcSwapOption<CertifiedKey>]>,
    conflicts: Vec<NameConflict>,
}

impl fmt::Debug for CertIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertIndex")
            .field("names", &self.names.len())
            .field("targets", &self.targets.len())
            .field("certificates", &self.certificate_count())
            .field("conflicts", &self.conflicts.len())
            .finish()
    }
}

impl CertIndex {
    /// Builds the name map of `topology`, with no certificates yet.
    pub fn new(topology: &Topology) -> Self {
        let with_site = topology.domains.iter().filter(|d| d.site.is_some()).count();
        let mut targets = Vec::with_capacity(1 + with_site);
        targets.push(Target::System);
        let mut names: HashMap<Box<str>, u32> = HashMap::with_capacity(1 + 2 * with_site);
        let mut slot_of = HashMap::with_capacity(with_site);
        let mut conflicts = Vec::new();

        let mut add_site =
            |names: &mut HashMap<Box<str>, u32>, targets: &[Target], slot: u32, site: &Site| {
                let host = match &site.host {
                    Host::Dns(name) => Some(name),
                    Host::Ip(_) => None,
                };
                for name in host.into_iter().chain(site.names.iter()) {
                    match names.get(name.as_str()) {
                        Some(&kept) if kept != slot => conflicts.push(NameConflict {
                            name: name.clone(),
                            kept: targets[kept as usize].clone(),
                            ignored: targets[slot as usize].clone(),
                        }),
                        Some(_) => {}
                        None => {
                            names.insert(name.as_str().into(), slot);
                        }
                    }
                }
            };

        add_site(&mut names, &targets, SYSTEM_SLOT, &topology.system);
        for domain in &topology.domains {
            let Some(site) = &domain.site else { continue };
            let Ok(slot) = u32::try_from(targets.len()) else {
                break; // more than four billion domains: cannot happen in memory anyway
            };
            targets.push(Target::Domain(domain.name.clone()));
            slot_of.insert(domain.name.clone(), slot);
            add_site(&mut names, &targets, slot, site);
        }
        let certs = targets.iter().map(|_| ArcSwapOption::empty()).collect();
        Self {
            names,
            targets: targets.into_boxed_slice(),
            slot_of,
            certs,
            conflicts,
        }
    }

    /// Sets (`Some`) or clears (`None`) the certificate of `target`.
    ///
    /// Returns `false`, changing nothing, when the target has no slot: a domain the topology
    /// does not list or that has no site of its own. Concurrent lookups see either the old or
    /// the new certificate, never a torn state, and are never blocked.
    pub fn set(&self, target: &Target, certificate: Option<Arc<CertifiedKey>>) -> bool {
        match self.slot(target) {
            Some(slot) => {
                self.certs[slot as usize].store(certificate);
                true
            }
            None => false,
        }
    }

    /// The certificate currently held for `target`, if any.
    pub fn get(&self, target: &Target) -> Option<Arc<CertifiedKey>> {
        self.slot(target)
            .and_then(|slot| self.certs[slot as usize].load_full())
    }

    /// Whether `target` has a slot in this index (see [`CertIndex::set`]).
    pub fn has_slot(&self, target: &Target) -> bool {
        self.slot(target).is_some()
    }

    /// The targets with a slot: the system target first, then the domains with their own site
    /// in topology order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Names claimed by more than one site while building; empty for a sound topology.
    pub fn conflicts(&self) -> &[NameConflict] {
        &self.conflicts
    }

    /// How many DNS names map to a target.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// How many targets hold a certificate.
    pub fn certificate_count(&self) -> usize {
        self.certs.iter().filter(|c| c.load().is_some()).count()
    }

    /// The certificate a handshake for `service` asking for `server_name` gets.
    ///
    /// `None` only when the system certificate is missing and the name does not reach a
    /// domain certificate; rustls then aborts the handshake. Does not allocate and does not
    /// lock: the name is lower-cased into a stack buffer and looked up directly.
    pub fn resolve(
        &self,
        service: Service,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        if let Some(slot) = self.domain_slot(service, server_name) {
            if let Some(cert) = self.certs[slot as usize].load_full() {
                return Some(cert);
            }
        }
        self.certs[SYSTEM_SLOT as usize].load_full()
    }

    /// Says whose certificate [`CertIndex::resolve`] returns for the same arguments, and why.
    ///
    /// This one allocates (it returns owned names); use it for diagnostics, not per handshake.
    pub fn explain(&self, service: Service, server_name: Option<&str>) -> Explanation {
        let system_available = self.certs[SYSTEM_SLOT as usize].load().is_some();
        let system = |reason, name_of| Explanation {
            service,
            target: Target::System,
            reason,
            name_of,
            available: system_available,
        };
        if !service.selects_by_sni() {
            return system(Reason::MailAlwaysSystem, None);
        }
        let Some(name) = server_name else {
            return system(Reason::NoSni, None);
        };
        let mut buf = [0u8; MAX_NAME];
        let slot = normalize(name, &mut buf).and_then(|n| self.names.get(n).copied());
        match slot {
            None => system(Reason::UnknownName, None),
            Some(SYSTEM_SLOT) => system(Reason::SystemName, None),
            Some(slot) => {
                let target = &self.targets[slot as usize];
                let domain = target.domain().cloned();
                if self.certs[slot as usize].load().is_some() {
                    Explanation {
                        service,
                        target: target.clone(),
                        reason: Reason::Dedicated,
                        name_of: domain,
                        available: true,
                    }
                } else {
                    system(Reason::FallbackToSystem, domain)
                }
            }
        }
    }

    /// The slot of the domain `server_name` belongs to, for an SNI-selecting service.
    fn domain_slot(&self, service: Service, server_name: Option<&str>) -> Option<u32> {
        if !service.selects_by_sni() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        let name = normalize(server_name?, &mut buf)?;
        match self.names.get(name) {
            Some(&SYSTEM_SLOT) | None => None,
            Some(&slot) => Some(slot),
        }
    }

    fn slot(&self, target: &Target) -> Option<u32> {
        match target {
            Target::System => Some(SYSTEM_SLOT),
            Target::Domain(name) => self.slot_of.get(name).copied(),
        }
    }
}

/// Lower-cases `name` into `buf` and drops one trailing dot, without allocating.
///
/// `None` for names that cannot be in the index: empty, longer than a DNS name, or not ASCII
/// (the index holds A-labels only; an SNI value is ASCII by RFC 6066).
fn normalize<'b>(name: &str, buf: &'b mut [u8; MAX_NAME]) -> Option<&'b str> {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    if name.is_empty() || name.len() > MAX_NAME || !name.is_ascii() {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    core::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_drops_one_trailing_dot() {
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(
            normalize("WebMail.Acme.TEST.", &mut buf),
            Some("webmail.acme.test")
        );
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize("a..", &mut buf), Some("a."));
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize("", &mut buf), None);
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize(".", &mut buf), None);
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize("bücher.test", &mut buf), None);
        let long = "a".repeat(MAX_NAME + 1);
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize(&long, &mut buf), None);
        let max = "a".repeat(MAX_NAME);
        let mut buf = [0u8; MAX_NAME];
        assert_eq!(normalize(&max, &mut buf), Some(max.as_str()));
    }

    proptest::proptest! {
        #[test]
        fn normalize_never_panics_and_matches_std(s in "\\PC{0,300}") {
            let mut buf = [0u8; MAX_NAME];
            let got = normalize(&s, &mut buf).map(str::to_owned);
            let trimmed = s.strip_suffix('.').unwrap_or(&s);
            let expected = (!trimmed.is_empty() && trimmed.len() <= MAX_NAME && trimmed.is_ascii())
                .then(|| trimmed.to_ascii_lowercase());
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
