//! Version orderings per ecosystem and the [`Comparator`] that picks one per namespace.

use std::cmp::Ordering;

pub mod apk;
pub mod dpkg;
pub mod generic;
pub mod rpm;

/// A version ordering, chosen per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparator {
    /// Debian and Ubuntu.
    Dpkg,
    /// Alpine.
    Apk,
    /// RPM distributions (AlmaLinux, Rocky, RHEL, …).
    Rpm,
    /// Language ecosystems.
    Generic,
}

impl Comparator {
    /// The ordering for a namespace such as `debian:12`, `alpine:3.19` or `pypi`.
    pub fn for_namespace(namespace: &str) -> Comparator {
        let distro = namespace.split(':').next().unwrap_or(namespace);
        match distro {
            "debian" | "ubuntu" => Comparator::Dpkg,
            "alpine" | "wolfi" | "chainguard" => Comparator::Apk,
            "almalinux" | "rocky" | "rhel" | "redhat" | "centos" | "fedora" | "amzn"
            | "oraclelinux" | "ol" | "opensuse" | "sles" | "suse" => Comparator::Rpm,
            _ => Comparator::Generic,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Comparator::Dpkg => "dpkg",
            Comparator::Apk => "apk",
            Comparator::Rpm => "rpm",
            Comparator::Generic => "generic",
        }
    }

    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        match self {
            Comparator::Dpkg => dpkg::compare(a, b),
            Comparator::Apk => apk::compare(a, b),
            Comparator::Rpm => rpm::compare(a, b),
            Comparator::Generic => generic::compare(a, b),
        }
    }
}
