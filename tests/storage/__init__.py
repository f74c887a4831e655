"""Storage tests of the Digital Locker (a package, so its module names never clash with other test folders)."""
