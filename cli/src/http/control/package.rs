//! Deployment packages: what `Code.ZipFile` may hold. A zip archive (what
//! `zip`, SAM, Serverless, CDK, Terraform and the AWS CLI upload) gives
//! up the entry named by `Handler`, else its only `.wasm` entry; a raw
//! `.wasm` module or component is taken as it is.
//!
//! Archives are hostile input: at most [`MAX_ENTRIES`] entries, the entry
//! read through a hard cap of [`MAX_UNZIPPED`] bytes whatever its header
//! declares, and refused when it inflates more than [`MAX_RATIO`] times
//! its compressed size (a zip bomb). Every refusal names what is wrong.

use std::io::Read as _;

/// Most entries an archive may have.
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes the chosen entry may inflate to (Lambda's unzipped limit is
/// 250 MB; a module this large is refused by the host anyway).
pub const MAX_UNZIPPED: u64 = 128 << 20;
/// Most an entry may inflate relative to its compressed size (real
/// modules compress 3-5×; zip bombs 1000×).
pub const MAX_RATIO: u64 = 100;

const WASM_MAGIC: &[u8] = b"\0asm";

/// The module in `package`, with `handler` (Lambda's `Handler`, if given)
/// naming the archive entry to take.
pub fn module_of(package: &[u8], handler: Option<&str>) -> Result<Vec<u8>, String> {
    if package.starts_with(WASM_MAGIC) {
        return Ok(package.to_vec());
    }
    if !package.starts_with(b"PK") {
        return Err(
            "Code.ZipFile is neither a zip archive nor a WebAssembly module (\\0asm)".into(),
        );
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(package))
        .map_err(|e| format!("Code.ZipFile is not a readable zip archive: {e}"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!(
            "the archive has {} entries, over the {MAX_ENTRIES}-entry limit",
            archive.len()
        ));
    }
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the archive's entry names are unreadable: {e}"))?;
    let wasm: Vec<&String> = names.iter().filter(|n| n.ends_with(".wasm")).collect();
    let wanted = handler.filter(|h| !h.is_empty()).and_then(|h| {
        // `Handler` may name the entry itself, or (Lambda style) a
        // `file.function` whose file part is the entry's stem.
        let stem = h.split_once('.').map_or(h, |(s, _)| s);
        names
            .iter()
            .find(|n| *n == h)
            .or_else(|| wasm.iter().copied().find(|n| **n == format!("{stem}.wasm")))
    });
    let name = match (wanted, wasm.as_slice()) {
        (Some(n), _) => n.clone(),
        (None, [only]) => (*only).clone(),
        (None, []) => return Err("the archive holds no .wasm entry".into()),
        (None, many) => {
            return Err(format!(
                "the archive holds {} .wasm entries ({}): set Handler to the one to run",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let entry = archive
        .by_name(&name)
        .map_err(|e| format!("archive entry {name}: {e}"))?;
    if entry.is_dir() {
        return Err(format!("archive entry {name} is a directory"));
    }
    let compressed = entry.compressed_size();
    let cap = MAX_UNZIPPED.min(compressed.saturating_mul(MAX_RATIO).max(1 << 20));
    let mut out = Vec::new();
    entry
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("archive entry {name} does not inflate: {e}"))?;
    if out.len() as u64 > cap {
        return Err(if cap == MAX_UNZIPPED {
            format!("archive entry {name} inflates past {MAX_UNZIPPED} bytes")
        } else {
            format!(
                "archive entry {name} inflates more than {MAX_RATIO} times its {compressed} compressed bytes (a zip bomb?)"
            )
        });
    }
    if !out.starts_with(WASM_MAGIC) {
        return Err(format!(
            "archive entry {name} is not a WebAssembly module (\\0asm)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            w.start_file(
                *name,
                zip::write::SimpleFileOptions::default().compression_method(method),
            )
            .unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const DEFLATE: zip::CompressionMethod = zip::CompressionMethod::Deflated;

    #[test]
    fn raw_modules_and_single_entry_archives() {
        assert_eq!(module_of(MODULE, None).unwrap(), MODULE);
        let z = zip_of(&[("README", b"hi"), ("fn.wasm", MODULE)], DEFLATE);
        assert_eq!(module_of(&z, None).unwrap(), MODULE);
        let z = zip_of(&[("fn.wasm", MODULE)], zip::CompressionMethod::Stored);
        assert_eq!(module_of(&z, Some("ignored.handler")).unwrap(), MODULE);
    }

    #[test]
    fn handler_picks_among_several() {
        let other = b"\0asm\x01\0\0\0\0";
        let z = zip_of(&[("a.wasm", MODULE), ("lib/b.wasm", other)], DEFLATE);
        assert!(
            module_of(&z, None)
                .unwrap_err()
                .contains("2 .wasm entries (a.wasm, lib/b.wasm)")
        );
        assert_eq!(module_of(&z, Some("lib/b.wasm")).unwrap(), other);
        assert_eq!(module_of(&z, Some("a.handler")).unwrap(), MODULE);
    }

    #[test]
    fn bad_packages_are_refused_with_the_reason() {
        assert!(module_of(b"hello", None).unwrap_err().contains("neither"));
        assert!(
            module_of(b"PK\x03\x04junk", None)
                .unwrap_err()
                .contains("not a readable zip")
        );
        let z = zip_of(&[("notes.txt", b"x")], DEFLATE);
        assert_eq!(
            module_of(&z, None).unwrap_err(),
            "the archive holds no .wasm entry"
        );
        let z = zip_of(&[("fake.wasm", b"not wasm")], DEFLATE);
        assert!(
            module_of(&z, None)
                .unwrap_err()
                .contains("not a WebAssembly module")
        );
    }

    #[test]
    fn zip_bombs_are_refused() {
        // 20 MiB of zeros after the magic: deflates ~1000:1.
        let mut bomb = MODULE.to_vec();
        bomb.resize(20 << 20, 0);
        let z = zip_of(&[("bomb.wasm", &bomb)], DEFLATE);
        assert!(z.len() < 100 << 10, "{}", z.len());
        let err = module_of(&z, None).unwrap_err();
        assert!(err.contains("zip bomb"), "{err}");
        // Too many entries.
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("{i}")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let z = zip_of(&entries, zip::CompressionMethod::Stored);
        assert!(module_of(&z, None).unwrap_err().contains("entries, over"));
    }
}
