//! Thumbnails of the four image types a browser shows inline (JPEG, PNG,
//! GIF, WebP): at most [`MAX_SIDE`] × [`MAX_SIDE`], aspect kept, never
//! enlarged. A JPEG gives a JPEG, anything else a PNG (it may have
//! transparency).
//!
//! Decoding is CPU work that blocks: callers run [`make`] on a blocking
//! pool, never on a worker's async runtime. The image's size is read from
//! its header before anything is decoded, and one over the pixel cap is
//! refused, so a small file that claims to be a 100 000 × 100 000 image (a
//! decompression bomb) costs nothing; the decoder's own allocation limit
//! backs that up for a header that lies.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits};

pub const MAX_SIDE: u32 = 320;
const JPEG_QUALITY: u8 = 82;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
}

/// The image has more pixels than the configured cap allows decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the image is {width} × {height} pixels, more than {max_pixels} in all")]
pub struct TooManyPixels {
    pub width: u32,
    pub height: u32,
    pub max_pixels: u64,
}

/// One of the four formats, told by the file's first bytes (not by what
/// the client said it is).
pub fn image_format(head: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(head).ok()? {
        format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) => {
            Some(format)
        }
        _ => None,
    }
}

/// The thumbnail of `bytes`, or `None` when they are not one of the four
/// formats or do not decode. Blocking.
pub fn make(bytes: &[u8], max_pixels: u64) -> Result<Option<Thumbnail>, TooManyPixels> {
    let Some(format) = image_format(bytes) else {
        return Ok(None);
    };
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let Ok((width, height)) = reader().into_dimensions() else {
        return Ok(None);
    };
    let too_many = TooManyPixels {
        width,
        height,
        max_pixels,
    };
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(too_many);
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Room for the widest pixel the four formats decode to (RGBA, 16 bits
    // a channel) and the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut decoder = reader();
    decoder.limits(limits);
    let image = match decoder.decode() {
        Ok(image) => image,
        Err(ImageError::Limits(_)) => return Err(too_many),
        Err(_) => return Ok(None),
    };
    let small = if width > MAX_SIDE || height > MAX_SIDE {
        image.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        image
    };
    Ok(encode(&small, format))
}

fn encode(image: &DynamicImage, source: ImageFormat) -> Option<Thumbnail> {
    let mut bytes = Vec::new();
    let mime = if source == ImageFormat::Jpeg {
        let rgb = image.to_rgb8();
        JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .encode_image(&rgb)
            .ok()?;
        "image/jpeg"
    } else {
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .ok()?;
        "image/png"
    };
    Some(Thumbnail {
        bytes,
        mime,
        width: image.width(),
        height: image.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgba};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = ImageBuffer::from_pixel(width, height, Rgba([10u8, 20, 30, 255]));
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_large_image_shrinks_to_fit_keeping_its_aspect() {
        let thumb = make(&png(1000, 500), 10_000_000).unwrap().unwrap();
        assert_eq!((thumb.width, thumb.height), (320, 160));
        assert_eq!(thumb.mime, "image/png");
        assert_eq!(image_format(&thumb.bytes), Some(ImageFormat::Png));
    }

    #[test]
    fn a_small_image_is_not_enlarged() {
        let thumb = make(&png(40, 30), 10_000_000).unwrap().unwrap();
        assert_eq!((thumb.width, thumb.height), (40, 30));
    }

    #[test]
    fn a_jpeg_gives_a_jpeg() {
        let image = ImageBuffer::from_pixel(400, 400, Rgb([200u8, 0, 0]));
        let mut jpeg = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        let thumb = make(&jpeg, 10_000_000).unwrap().unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.mime),
            (320, 320, "image/jpeg")
        );
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        let err = make(&png(200, 100), 19_999).unwrap_err();
        assert_eq!((err.width, err.height), (200, 100));
    }

    #[test]
    fn what_is_not_an_image_has_no_thumbnail() {
        assert_eq!(make(b"%PDF-1.7 not an image", 1000), Ok(None));
        let mut broken = png(10, 10);
        broken.truncate(40);
        assert_eq!(make(&broken, 1000), Ok(None));
    }
}
