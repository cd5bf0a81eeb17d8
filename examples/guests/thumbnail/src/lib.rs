//! `thumbnail`: the seed's image use case. Decodes a PNG or JPEG payload
//! and produces PNG thumbnails that fit in squares of the sizes listed in
//! `THUMBNAIL_SIZES` (default `64,128`), keeping the aspect ratio.

use base64::Engine as _;
use fnhost_guest::Error;
use serde::Serialize;

/// The source image, as decoded.
#[derive(Serialize, Debug, PartialEq)]
pub struct Source {
    /// `"png"` or `"jpeg"`.
    pub format: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// One thumbnail.
#[derive(Serialize, Debug)]
pub struct Thumbnail {
    /// The bounding square it was fitted into.
    pub max: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The PNG, base64-encoded.
    pub png_base64: String,
}

/// The handler's answer.
#[derive(Serialize, Debug)]
pub struct Thumbnails {
    /// What came in.
    pub source: Source,
    /// What came out, one per size.
    pub thumbnails: Vec<Thumbnail>,
}

/// Parses `THUMBNAIL_SIZES` (`"64,128"`).
fn sizes() -> Result<Vec<u32>, Error> {
    let raw = std::env::var("THUMBNAIL_SIZES").unwrap_or_else(|_| "64,128".into());
    raw.split(',')
        .map(|s| match s.trim().parse::<u32>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(n),
            _ => Err(Error::new(
                "InvalidConfig",
                format!("THUMBNAIL_SIZES: {s:?} is not a size in 1..=4096"),
            )),
        })
        .collect()
}

/// Makes the thumbnails (plain Rust: also callable natively).
pub fn make_thumbnails(image_bytes: &[u8]) -> Result<Thumbnails, Error> {
    let format = image::guess_format(image_bytes)
        .map_err(|e| Error::new("UnsupportedImage", e.to_string()))?;
    let img = image::load_from_memory_with_format(image_bytes, format)
        .map_err(|e| Error::new("UnsupportedImage", e.to_string()))?;
    let source = Source {
        format: format
            .extensions_str()
            .first()
            .copied()
            .unwrap_or("?")
            .to_string(),
        width: img.width(),
        height: img.height(),
    };
    let mut thumbnails = Vec::new();
    for max in sizes()? {
        let thumb = img.thumbnail(max, max);
        let mut png = std::io::Cursor::new(Vec::new());
        thumb
            .write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::new("EncodeError", e.to_string()))?;
        thumbnails.push(Thumbnail {
            max,
            width: thumb.width(),
            height: thumb.height(),
            png_base64: base64::engine::general_purpose::STANDARD.encode(png.into_inner()),
        });
    }
    Ok(Thumbnails { source, thumbnails })
}

/// Raw image bytes in, JSON out.
#[fnhost_guest::handler]
pub fn thumbnail(image_bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let t = make_thumbnails(image_bytes)?;
    serde_json::to_vec(&t).map_err(|e| Error::new("EncodeError", e.to_string()))
}
