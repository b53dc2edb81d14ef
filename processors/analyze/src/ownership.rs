//! Ownership: a language package whose files all belong to an OS package (dpkg,
//! apk or rpm file lists) is the OS package's content and is reported once, as the OS
//! package (as Syft's `ownership-by-file-overlap` and Anchore do).

use std::collections::HashSet;

use vigil_contracts::Package;

/// The files a language package is made of: its own file list (RECORD,
/// installed-files.txt) when it has one, else the files its metadata was read from.
fn own_files(p: &Package) -> &[String] {
    if p.files.is_empty() {
        &p.locations
    } else {
        &p.files
    }
}

/// Drop the non-OS packages every file of which an OS package owns. Returns how many
/// were dropped.
pub fn drop_owned(packages: &mut Vec<Package>) -> usize {
    let owned: HashSet<&str> = packages
        .iter()
        .filter(|p| p.kind.is_os())
        .flat_map(|p| p.files.iter().map(String::as_str))
        .collect();
    if owned.is_empty() {
        return 0;
    }
    let doomed: Vec<bool> = packages
        .iter()
        .map(|p| {
            !p.kind.is_os() && {
                let f = own_files(p);
                !f.is_empty() && f.iter().all(|x| owned.contains(x.as_str()))
            }
        })
        .collect();
    let before = packages.len();
    let mut i = 0;
    packages.retain(|_| {
        i += 1;
        !doomed[i - 1]
    });
    before - packages.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_contracts::PackageType;

    #[test]
    fn owned_language_packages_are_dropped() {
        let mut deb = Package::new("python3-six", "1.16.0-4", PackageType::Deb);
        deb.files = vec![
            "/usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO".into(),
            "/usr/lib/python3/dist-packages/six.py".into(),
        ];
        let mut six = Package::new("six", "1.16.0", PackageType::Python);
        six.locations = vec!["/usr/lib/python3/dist-packages/six-1.16.0.egg-info/PKG-INFO".into()];
        let mut pip = Package::new("requests", "2.19.1", PackageType::Python);
        pip.locations = vec![
            "/usr/local/lib/python3.11/site-packages/requests-2.19.1.dist-info/METADATA".into(),
        ];
        pip.files = vec![
            "/usr/local/lib/python3.11/site-packages/requests/__init__.py".into(),
            "/usr/lib/python3/dist-packages/six.py".into(),
        ];
        let mut v = vec![deb, six, pip];
        assert_eq!(drop_owned(&mut v), 1);
        let names: Vec<_> = v.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["python3-six", "requests"]);
    }
}
