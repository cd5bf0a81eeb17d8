//! Unit tests of `memfs` (quota accounting measured against a counting
//! allocator, path rules, unlink and rename semantics).

use super::*;

#[test]
fn quota_counts_capacity_names_and_nodes() {
    let mut fs = MemFs::new(2000);
    let f = fs.create_file(ROOT, "a").unwrap();
    let node = NODE_COST + NAME_GRANULE;
    assert_eq!(fs.used(), node);
    fs.write_at(f, 0, &[1; 100]).unwrap();
    assert_eq!(fs.used(), node + 100);
    // Growth doubles the buffer, and the whole buffer is charged.
    fs.write_at(f, 100, &[1]).unwrap();
    assert_eq!(fs.used(), node + 200);
    // A write that would cross the quota fails whole.
    assert_eq!(fs.write_at(f, 101, &[2; 2000]), Err(errno::NOSPC));
    assert_eq!(fs.file(f).unwrap().len(), 101);
    // Sparse writes are charged for the hole too.
    assert_eq!(fs.write_at(f, 10_000, &[1]), Err(errno::NOSPC));
    // Writing nothing past the end does not extend the file.
    fs.write_at(f, 1_000_000, &[]).unwrap();
    assert_eq!(fs.file(f).unwrap().len(), 101);
    // Shrinking gives the buffer back (HOSTILE 31).
    fs.set_len(f, 0).unwrap();
    assert_eq!(fs.used(), node);
    fs.unlink_file(ROOT, "a").unwrap();
    assert_eq!(fs.used(), 0);
}

#[test]
fn grow_and_shrink_cycles_stay_within_the_quota() {
    // HOSTILE 31 / defect 2: a file grown to near the quota and cut to
    // 0, again and again, holds no more than the quota.
    let quota = 1 << 20;
    let mut fs = MemFs::new(quota);
    for round in 0..24 {
        let f = fs.create_file(ROOT, &format!("f{round}")).unwrap();
        let mut at = 0;
        while fs.write_at(f, at, &[7; 4096]).is_ok() {
            at += 4096;
        }
        assert!(at > quota / 2, "round {round} wrote only {at}");
        let Node::File { data, .. } = fs.node(f).unwrap() else {
            unreachable!()
        };
        assert!(data.capacity() as u64 <= quota);
        fs.set_len(f, 0).unwrap();
        let Node::File { data, .. } = fs.node(f).unwrap() else {
            unreachable!()
        };
        assert_eq!(data.capacity(), 0);
    }
    assert_eq!(fs.used(), 24 * NODE_COST + 24 * NAME_GRANULE);
}

#[test]
fn charges_cover_what_is_allocated() {
    // What the quota charges is at least what the host really holds:
    // bytes asked of the allocator by this thread, plus the allocator's
    // 16-byte header per live allocation (glibc's chunk overhead,
    // rounded to its granule). Measured at several sizes, because the
    // inode map's spare capacity depends on where it last grew.
    for n in [1usize, 7, 100, 900, 1800, 3585, 7169, 14337] {
        let base = crate::test_alloc::live();
        let mut fs = MemFs::new(u64::MAX / 2);
        let empty = crate::test_alloc::live() - base;
        let mut dir = ROOT;
        for i in 0..n {
            if i.is_multiple_of(3) {
                // Deep directories too.
                dir = fs.create_dir(dir, "d").unwrap();
            }
            let f = fs.create_file(dir, &format!("file-{i}")).unwrap();
            if i.is_multiple_of(5) {
                fs.write_at(f, 0, &vec![1; i % 3000]).unwrap();
            }
        }
        let held = crate::test_alloc::live() - base - empty;
        assert!(
            held.bytes_with_headers() <= fs.used(),
            "{n} entries hold {} bytes but are charged {}",
            held.bytes_with_headers(),
            fs.used()
        );
    }
}

#[test]
fn paths_cannot_escape_the_root() {
    let mut fs = MemFs::new(1 << 20);
    let d = fs.create_dir(ROOT, "d").unwrap();
    assert_eq!(fs.lookup(ROOT, ".."), Err(errno::PERM));
    assert_eq!(fs.lookup(ROOT, "d/../.."), Err(errno::PERM));
    assert_eq!(fs.lookup(ROOT, "/etc/passwd"), Err(errno::PERM));
    assert_eq!(fs.lookup(d, ".."), Ok(ROOT));
    assert_eq!(fs.lookup(ROOT, "d/./"), Ok(d));
    assert_eq!(
        fs.parent_of(ROOT, "d/x/"),
        Ok(Split {
            parent: d,
            name: "x",
            dir: true
        })
    );
}

#[test]
fn unlinked_open_file_lives_until_closed() {
    let mut fs = MemFs::new(1 << 20);
    let f = fs.create_file(ROOT, "f").unwrap();
    fs.open_file(f);
    fs.write_at(f, 0, b"hello").unwrap();
    fs.unlink_file(ROOT, "f").unwrap();
    assert_eq!(fs.file(f).unwrap(), b"hello");
    // The name is refunded; the node and its buffer live on.
    assert_eq!(fs.used(), NODE_COST + 5);
    fs.close_file(f);
    assert!(fs.file(f).is_err());
    assert_eq!(fs.used(), 0);
}

#[test]
fn rename_moves_and_replaces() {
    let mut fs = MemFs::new(1 << 20);
    let d = fs.create_dir(ROOT, "d").unwrap();
    let f = fs.create_file(ROOT, "f").unwrap();
    fs.rename(ROOT, "f", d, "g").unwrap();
    assert_eq!(fs.lookup(ROOT, "d/g"), Ok(f));
    assert_eq!(fs.lookup(ROOT, "f"), Err(errno::NOENT));
    // A directory cannot move into itself.
    assert_eq!(fs.rename(ROOT, "d", d, "x"), Err(errno::INVAL));
    let before = fs.used();
    fs.create_file(ROOT, "h").unwrap();
    fs.rename(d, "g", ROOT, "h").unwrap();
    assert_eq!(fs.used(), before);
}
