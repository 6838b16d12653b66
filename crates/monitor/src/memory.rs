//! The monitor's resident memory: one monitor runs per container, as long as the container,
//! so what it keeps mapped counts many times over.

/// Give back the heap that setting up left free, and unmap the file pages this process mapped to set the process up (the runtime's create and
/// start, JSON, the dynamic loader) and map the ones it uses again one page at a time, so
/// that its resident set is what its loop uses.
///
/// Only mappings that hold nothing but a file's pages are let go: not writable, and without
/// a page of their own (relocated read-only data has some). The page cache keeps the pages;
/// the next use of one maps it again. MADV_RANDOM stops the kernel from mapping 64 KiB
/// around each such fault, which would bring most of it back.
pub fn release_file_pages() {
    // SAFETY: malloc_trim only hands free heap memory back to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_file_mappings(&smaps) {
        let (addr, len) = (start as *mut libc::c_void, end - start);
        // SAFETY: the range is one whole mapping of a file, read-only, holding only the
        // file's own pages (no private ones): dropping them loses nothing, and a later
        // access faults the page back in from the file.
        unsafe {
            libc::madvise(addr, len, libc::MADV_DONTNEED);
            libc::madvise(addr, len, libc::MADV_RANDOM);
        }
    }
}

/// The address ranges of /proc/self/smaps mappings that are file-backed, not writable, and
/// have no private dirty or anonymous pages.
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            // start-end perms offset dev inode [path]
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let file = !path.is_empty() && !path.starts_with('[');
            current =
                (file && perms.starts_with('r') && !perms.contains('w')).then_some((start, end));
            if let Some(range) = current {
                found.push(range);
            }
            continue;
        }
        let value = fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if matches!(first, "Private_Dirty:" | "Anonymous:") && value > 0 {
            if let Some(range) = current.take() {
                found.retain(|r| *r != range);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings() {
        let smaps = "\
1000-2000 r-xp 00000000 fe:00 12 /usr/bin/x
Rss:                   8 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
2000-3000 r--p 00001000 fe:00 12 /usr/bin/x
Private_Dirty:         4 kB
Anonymous:             4 kB
3000-4000 rw-p 00002000 fe:00 12 /usr/bin/x
Private_Dirty:         0 kB
5000-6000 r-xp 00000000 00:00 0 [vdso]
Private_Dirty:         0 kB
7000-8000 r--p 00000000 00:00 0
Private_Dirty:         0 kB
9000-a000 r--p 00000000 fe:00 13 /usr/lib/libc.so.6
Private_Dirty:         0 kB
";
        assert_eq!(
            clean_file_mappings(smaps),
            [(0x1000, 0x2000), (0x9000, 0xa000)]
        );
    }
}
