//! `resolve` must not touch the heap: a counting global allocator proves it.
//!
//! The count is per thread, so other tests running in parallel cannot disturb it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bmcert_resolve::{LiveIndex, Service};
use bmcert_topology::{DomainName, Target, Topology};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn resolve_does_not_allocate() {
    let pki = common::Pki::new();
    let mut toml = String::from("[system]\nurl = 'https://mail.example.test'\n");
    for i in 0..1000 {
        toml.push_str(&format!(
            "[[domain]]\nname = 'd{i}.test'\nurl = 'https://webmail.d{i}.test'\n"
        ));
    }
    let topology = Topology::from_toml_str(&toml).unwrap();
    let index = LiveIndex::new(&topology);
    index.set_certificate(
        &Target::System,
        Some(pki.leaf(&["mail.example.test"]).certified()),
    );
    let dedicated = pki.leaf(&["webmail.d1.test"]).certified();
    for i in (0..1000).step_by(2) {
        let target = Target::Domain(DomainName::new(&format!("d{i}.test")).unwrap());
        index.set_certificate(&target, Some(dedicated.clone()));
    }
    let names = [
        Some("webmail.d0.test"),      // dedicated
        Some("WEBMAIL.D998.TEST."),   // dedicated, mixed case and trailing dot
        Some("webmail.d1.test"),      // domain without certificate: fallback
        Some("mail.example.test"),    // system name
        Some("unknown.example.test"), // unknown
        Some("bücher.test"),          // not ASCII: unknown
        None,                         // no SNI
    ];
    // Warm up: arc-swap gives each thread its debt slot on first use.
    for name in names {
        assert!(index.resolve(Service::Https, name).is_some());
    }
    for name in names {
        for service in Service::ALL {
            let mut found = None;
            let n = allocations_during(|| found = index.resolve(service, name));
            assert!(found.is_some());
            assert_eq!(n, 0, "{service} lookup of {name:?} allocated {n} times");
        }
    }
    // The counter works: explain allocates (it returns owned names).
    assert!(
        allocations_during(|| drop(index.explain(Service::Https, Some("webmail.d0.test")))) > 0
    );
}
