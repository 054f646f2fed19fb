//! Text set in the bundled font with `ab_glyph`, as a plotters element.
//!
//! plotters' own `ab_glyph` text drops each glyph's side bearing and rounds
//! every pen position down to a whole pixel, which spaces letters unevenly
//! (`ResNet2 0`). [`Label`] places glyph outlines at their exact sub-pixel
//! positions with kerning, and blends their coverage into the bitmap.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/DejaVuSans.LICENSE`).
pub(super) const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The colour of every text of the figures.
const INK: RGBColor = RGBColor(30, 30, 30);

/// The bundled font, parsed once; `None` only if the embedded file is broken.
pub(super) fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).ok()).as_ref()
}

/// Advance width in pixels of `text` set at `size` pixels per em, kerning
/// included: the length [`Label`] anchors on.
pub(super) fn width(font: &FontRef<'static>, text: &str, size: f32) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut pen = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            pen += scaled.kern(previous, id);
        }
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    pen
}

/// One line of text at a point of a pixel-coordinate drawing area.
///
/// The line's box (ascent to descent) is centred vertically on `at`; `anchor`
/// puts the start (`Left`), middle or end (`Right`) of its advance width at
/// `at`. With `vertical`, the line is turned a quarter turn anticlockwise
/// (read bottom to top) about `at`, the same anchoring applying along it.
pub(super) struct Label<'a> {
    pub font: &'a FontRef<'static>,
    pub text: &'a str,
    pub at: BackendCoord,
    pub size: f32,
    pub anchor: HPos,
    pub vertical: bool,
}

impl<'b> PointCollection<'b, BackendCoord> for &'b Label<'_> {
    type Point = &'b BackendCoord;
    type IntoIter = std::iter::Once<&'b BackendCoord>;

    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<DB: DrawingBackend> Drawable<DB> for Label<'_> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x0, y0)) = points.next() else {
            return Ok(());
        };
        let scale = PxScale::from(self.size);
        let scaled = self.font.as_scaled(scale);
        let advance = width(self.font, self.text, self.size);
        let mut pen = match self.anchor {
            HPos::Left => 0.0,
            HPos::Center => -advance / 2.0,
            HPos::Right => -advance,
        };
        // Baseline below the centre of the ascent..descent box (descent < 0).
        let baseline = (scaled.ascent() + scaled.descent()) / 2.0;
        let mut coverage = Vec::new();
        let mut previous = None;
        for c in self.text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(previous) = previous {
                pen += scaled.kern(previous, id);
            }
            let glyph = id.with_scale_and_position(scale, point(pen, baseline));
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (left, top) = (bounds.min.x as i32, bounds.min.y as i32);
                outline.draw(|x, y, c| coverage.push((left + x as i32, top + y as i32, c)));
            }
            pen += scaled.h_advance(id);
            previous = Some(id);
        }
        for (dx, dy, c) in coverage {
            let at = match self.vertical {
                false => (x0 + dx, y0 + dy),
                true => (x0 + dy, y0 - dx),
            };
            let colour = BackendColor {
                alpha: f64::from(c.clamp(0.0, 1.0)),
                rgb: (INK.0, INK.1, INK.2),
            };
            backend.draw_pixel(at, colour)?;
        }
        Ok(())
    }
}
