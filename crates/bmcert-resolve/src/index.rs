//! The sans-I/O index: names to targets, and one certificate slot per target.

use core::fmt;
use std::collections::HashMap;
use std::sync::Arc;

use bmcert_topology::{DomainName, Host, Site, Target, Topology};
use rustls::sign::CertifiedKey;

use crate::hash::NameTable;
use crate::service::Service;

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

/// Certificates are kept in chunks of this many slots, so that replacing one certificate
/// copies one chunk plus the chunk list, not a slot per domain.
const CHUNK: usize = 256;

type Chunk = Arc<[Option<Arc<CertifiedKey>>]>;

/// A certificate change for one target: `Some` installs, `None` removes.
pub type CertificateChange = (Target, Option<Arc<CertifiedKey>>);

/// The part of an index that changes only with the topology.
struct Names {
    map: NameTable,
    targets: Box<[Target]>,
    slot_of: HashMap<DomainName, u32>,
    conflicts: Vec<NameConflict>,
}

/// An immutable snapshot: which DNS name belongs to which target, and each target's
/// certificate.
///
/// Built from a [`Topology`]: the system URL's host and the system's extra names map to
/// [`Target::System`]; for every domain that has its own site, the site's URL host and the
/// site's extra names map to that domain. A domain's extra names map to the domain's
/// certificate because they are on that certificate (the install report checks the
/// certificate covers them). A domain without its own site has no names here: it is served
/// by the system certificate, whatever certificate it may have in the store. URL hosts that
/// are IP addresses are skipped, since SNI carries only DNS names.
///
/// [`CertIndex::with_certificate`] returns a new snapshot with one certificate changed. It
/// shares the name map and every untouched chunk of certificate slots with the old one, so it
/// costs a few microseconds at 100,000 domains instead of a rebuild. Lookups take `&self`,
/// never lock and never allocate.
#[derive(Clone)]
pub struct CertIndex {
    names: Arc<Names>,
    certs: Arc<[Chunk]>,
}

impl fmt::Debug for CertIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertIndex")
            .field("names", &self.names.map.len())
            .field("targets", &self.names.targets.len())
            .field("certificates", &self.certificate_count())
            .field("conflicts", &self.names.conflicts.len())
            .finish()
    }
}

impl CertIndex {
    /// Builds the name map of `topology`, with no certificates yet.
    pub fn new(topology: &Topology) -> Self {
        let with_site = topology.domains.iter().filter(|d| d.site.is_some()).count();
        let mut targets = Vec::with_capacity(1 + with_site);
        targets.push(Target::System);
        let mut map = NameTable::with_capacity(1 + 2 * with_site);
        let mut slot_of = HashMap::with_capacity(with_site);
        let mut conflicts = Vec::new();

        let system_host = &topology.system.host;
        let mut add_site = |map: &mut NameTable, targets: &[Target], slot: u32, site: &Site| {
            let host = match &site.host {
                // A domain with extra names but no URL of its own borrows the system URL
                // (see `Topology`): that host stays the system's, without a conflict.
                _ if slot != SYSTEM_SLOT && &site.host == system_host => None,
                Host::Dns(name) => Some(name),
                Host::Ip(_) => None,
            };
            for name in host.into_iter().chain(site.names.iter()) {
                match map.insert(name.as_str(), slot) {
                    Err(kept) if kept != slot => conflicts.push(NameConflict {
                        name: name.clone(),
                        kept: targets[kept as usize].clone(),
                        ignored: targets[slot as usize].clone(),
                    }),
                    Ok(()) | Err(_) => {}
                }
            }
        };

        add_site(&mut map, &targets, SYSTEM_SLOT, &topology.system);
        for domain in &topology.domains {
            let Some(site) = &domain.site else { continue };
            let Ok(slot) = u32::try_from(targets.len()) else {
                break; // more than four billion domains: cannot happen in memory anyway
            };
            targets.push(Target::Domain(domain.name.clone()));
            slot_of.insert(domain.name.clone(), slot);
            add_site(&mut map, &targets, slot, site);
        }
        let certs = (0..targets.len().div_ceil(CHUNK))
            .map(|i| {
                let len = CHUNK.min(targets.len() - i * CHUNK);
                Chunk::from(vec![None; len])
            })
            .collect();
        Self {
            names: Arc::new(Names {
                map,
                targets: targets.into_boxed_slice(),
                slot_of,
                conflicts,
            }),
            certs,
        }
    }

    /// A new snapshot with the certificate of `target` set (`Some`) or cleared (`None`),
    /// sharing everything else with `self`.
    ///
    /// `None` when the target has no slot: a domain the topology does not list or that has
    /// no site of its own.
    pub fn with_certificate(
        &self,
        target: &Target,
        certificate: Option<Arc<CertifiedKey>>,
    ) -> Option<Self> {
        let (new, unplaced) = self.with_certificates([(target.clone(), certificate)]);
        unplaced.is_empty().then_some(new)
    }

    /// A new snapshot with several certificates changed at once (each touched chunk is
    /// copied once). Also returns the targets that have no slot, left out.
    pub fn with_certificates(
        &self,
        changes: impl IntoIterator<Item = CertificateChange>,
    ) -> (Self, Vec<CertificateChange>) {
        let mut open: HashMap<usize, Vec<Option<Arc<CertifiedKey>>>> = HashMap::new();
        let mut unplaced = Vec::new();
        for (target, certificate) in changes {
            let Some(slot) = self.slot(&target) else {
                unplaced.push((target, certificate));
                continue;
            };
            let (chunk, offset) = (slot as usize / CHUNK, slot as usize % CHUNK);
            let copy = open
                .entry(chunk)
                .or_insert_with(|| self.certs[chunk].to_vec());
            copy[offset] = certificate;
        }
        let certs = if open.is_empty() {
            self.certs.clone()
        } else {
            let mut chunks = self.certs.to_vec();
            for (i, copy) in open {
                chunks[i] = Chunk::from(copy);
            }
            chunks.into()
        };
        (
            Self {
                names: self.names.clone(),
                certs,
            },
            unplaced,
        )
    }

    /// The certificate held for `target`, if any.
    pub fn get(&self, target: &Target) -> Option<Arc<CertifiedKey>> {
        self.slot(target).and_then(|slot| self.cert(slot).cloned())
    }

    /// Whether `target` has a slot in this index (see [`CertIndex::with_certificate`]).
    pub fn has_slot(&self, target: &Target) -> bool {
        self.slot(target).is_some()
    }

    /// The targets with a slot: the system target first, then the domains with their own site
    /// in topology order.
    pub fn targets(&self) -> &[Target] {
        &self.names.targets
    }

    /// Names claimed by more than one site while building; empty for a sound topology.
    pub fn conflicts(&self) -> &[NameConflict] {
        &self.names.conflicts
    }

    /// How many DNS names map to a target.
    pub fn name_count(&self) -> usize {
        self.names.map.len()
    }

    /// How many targets hold a certificate.
    pub fn certificate_count(&self) -> usize {
        self.certs
            .iter()
            .map(|chunk| chunk.iter().filter(|c| c.is_some()).count())
            .sum()
    }

    /// The certificate a handshake for `service` asking for `server_name` gets.
    ///
    /// `None` only when the system certificate is missing and the name does not reach a
    /// domain certificate; rustls then aborts the handshake. Does not allocate and does not
    /// lock: the name is read once (checked, case-folded in registers and hashed) and looked up.
    #[inline]
    pub fn resolve(
        &self,
        service: Service,
        server_name: Option<&str>,
    ) -> Option<Arc<CertifiedKey>> {
        if let Some(slot) = self.domain_slot(service, server_name) {
            if let Some(cert) = self.cert(slot) {
                return Some(cert.clone());
            }
        }
        self.cert(SYSTEM_SLOT).cloned()
    }

    /// Says whose certificate [`CertIndex::resolve`] returns for the same arguments, and why.
    ///
    /// This one allocates (it returns owned names); use it for diagnostics, not per handshake.
    pub fn explain(&self, service: Service, server_name: Option<&str>) -> Explanation {
        let system_available = self.cert(SYSTEM_SLOT).is_some();
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
        let slot = self.names.map.get(name);
        match slot {
            None => system(Reason::UnknownName, None),
            Some(SYSTEM_SLOT) => system(Reason::SystemName, None),
            Some(slot) => {
                let target = &self.names.targets[slot as usize];
                let domain = target.domain().cloned();
                if self.cert(slot).is_some() {
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
    #[inline]
    fn domain_slot(&self, service: Service, server_name: Option<&str>) -> Option<u32> {
        if !service.selects_by_sni() {
            return None;
        }
        match self.names.map.get(server_name?) {
            Some(SYSTEM_SLOT) | None => None,
            slot => slot,
        }
    }

    #[inline]
    fn cert(&self, slot: u32) -> Option<&Arc<CertifiedKey>> {
        let slot = slot as usize;
        self.certs
            .get(slot / CHUNK)
            .and_then(|chunk| chunk.get(slot % CHUNK))
            .and_then(Option::as_ref)
    }

    fn slot(&self, target: &Target) -> Option<u32> {
        match target {
            Target::System => Some(SYSTEM_SLOT),
            Target::Domain(name) => self.names.slot_of.get(name).copied(),
        }
    }
}
