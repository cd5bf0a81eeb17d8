//! Paths of the guests compiled by this crate's build script: the example
//! guests (`examples/guests/*`) and the test guests (`test-guests/guests/*`),
//! built for `wasm32-wasip1`; the Rust components (`test-guests/components/
//! probe`, `examples/components/*-rust`), built for `wasm32-wasip2`; and,
//! through [`component`], the JavaScript and Python components `cargo
//! xtask` builds.
//!
//! ```
//! assert!(std::path::Path::new(fnhost_test_guests::ECHO).exists());
//! ```

#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The path of the JavaScript or Python component `name` (`probe-js`,
/// `probe-py`, `hello-js`, `hello-python`, `slugs-js`, `csv-python`),
/// which `cargo xtask test` builds with componentize-js/-py before the
/// tests run. Panics, saying how to build them, when it is missing.
pub fn component(name: &str) -> String {
    let path = std::path::Path::new(COMPONENTS_DIR).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: the JavaScript and Python components are built by \
         `cargo xtask test` (or `cargo xtask components`)",
        path.display()
    );
    path.display().to_string()
}

/// Reads a guest's bytes.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading guest {path}: {e}"))
}

/// A `w`×`h` RGB gradient encoded as PNG (stored deflate blocks, so no
/// compression library is needed): sample input for the thumbnail guest.
pub fn sample_png(w: u32, h: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&[(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        z.push((i + 1 == chunks.len()) as u8);
        z.extend_from_slice(&(c.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        z.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (ty, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_in = ty.to_vec();
        crc_in.extend_from_slice(&data);
        out.extend_from_slice(&crc_in);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}
