//! Drawing of the two figures: layout, styles and the PNG file.

use super::text::{self, Label};
use super::{PlotError, RocCurves, Series};
use ab_glyph::FontRef;
use plotters::coord::Shift;
use plotters::element::{DashedPathElement, Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;
use plotters_backend::{BackendCoord, DrawingErrorKind};
use std::path::Path;
use std::sync::OnceLock;

/// The family plotters' mesh asks for; [`render`] registers the bundled
/// font under it (the mesh's own labels are left empty: [`Label`] sets all
/// text).
const FAMILY: &str = "sans-serif";

const GRID: RGBColor = RGBColor(222, 222, 222);
const MINOR_GRID: RGBColor = RGBColor(242, 242, 242);
const PLAIN: RGBColor = RGBColor(31, 119, 180);
const ENCRYPTED: RGBColor = RGBColor(230, 110, 0);
const CHANCE: RGBColor = RGBColor(150, 150, 150);
/// Line colours of the time figure, in series order (Tableau 10, cycled).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Side of one class's square panel, in pixels.
const PANEL: u32 = 380;
/// Panels per row of the ROC figure (fewer when there are fewer classes).
const COLUMNS: usize = 4;
/// Height of the ROC figure's title and legend band.
const HEADER: u32 = 92;
/// Blank border around the ROC figure.
const BORDER: u32 = 20;
/// Size of the time figure, legend column included.
const TIME_SIZE: (u32, u32) = (1120, 660);

/// Tick values of both axes of a ROC panel (plotters' own choice for six
/// labels over [0, 1], which its grid lines follow).
const ROC_TICKS: [f64; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

/// Draws a grid of ROC panels, one per entry of `curves` in order, four per
/// row, and writes it to `path` as an RGB PNG of
/// `(columns * 380 + 40) x (rows * 380 + 112)` pixels.
///
/// Each panel shows the plaintext curve (solid blue), the encrypted one
/// (dashed orange), the chance diagonal (dashed grey), axes over [0, 1], and
/// the title `class  plain 0.912 / HE 0.911` (the AUCs given, three
/// decimals; the font shrinks for long names). A legend of the three line
/// styles sits under `title`. Panels may have no curve at all (a class that
/// could not be scored) and then show only the diagonal.
///
/// # Errors
/// [`PlotError::NoData`] for an empty `curves`; [`PlotError::InvalidRocPoint`]
/// and [`PlotError::InvalidAuc`] for a coordinate or AUC outside [0, 1] or
/// NaN (checked before anything is drawn); [`PlotError::Draw`] and
/// [`PlotError::Write`] when drawing or writing the file fails.
pub fn roc_png(path: &Path, title: &str, curves: &[RocCurves]) -> Result<(), PlotError> {
    if curves.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            what: "no ROC curve",
        });
    }
    for class in curves {
        validate_roc(path, class)?;
    }
    let columns = curves.len().min(COLUMNS);
    let rows = curves.len().div_ceil(columns);
    let size = (
        columns as u32 * PANEL + 2 * BORDER,
        rows as u32 * PANEL + HEADER + BORDER,
    );
    render(path, size, |root, font| {
        let (header, body) = root.split_vertically(HEADER);
        header.draw(&centred(font, title, 24.0, (size.0 as i32 / 2, 24)))?;
        let legend = [
            (LineKind::Solid(PLAIN), "plaintext"),
            (LineKind::Dashed(ENCRYPTED), "encrypted (CKKS)"),
            (LineKind::Dashed(CHANCE), "chance"),
        ];
        draw_legend_row(&header, font, &legend, size.0 as i32 / 2, 66)?;
        let body = body.margin(0, BORDER, BORDER, BORDER);
        for (index, (panel, class)) in body.split_evenly((rows, columns)).iter().zip(curves).enumerate() {
            let bottom_of_column = index + columns >= curves.len();
            draw_roc_panel(root, panel, font, class, bottom_of_column, index % columns == 0)?;
        }
        Ok(())
    })
}

/// Draws seconds per image (logarithmic y axis) against the latent sizes
/// `x_labels` (evenly spaced categories, left to right), one line with
/// markers per series, and writes it to `path` as an RGB PNG of 1120 x 660
/// pixels.
///
/// Series take colours and marker shapes in order (cycled after ten). A
/// `None` value leaves its point out and breaks the line there; a series
/// with no value at all is left out of the plot and of the legend. The y
/// axis spans whole decades around the data; the legend stands in its own
/// column right of the plot, so it never hides a point.
///
/// # Errors
/// [`PlotError::NoData`] when `x_labels` or `series` is empty or no series
/// has a value; [`PlotError::LengthMismatch`] for a series whose length is
/// not `x_labels.len()`; [`PlotError::InvalidSeconds`] for a value that is
/// not positive and finite; [`PlotError::Draw`] and [`PlotError::Write`] when
/// drawing or writing the file fails.
pub fn time_vs_latent_png(path: &Path, title: &str, x_labels: &[String], series: &[Series]) -> Result<(), PlotError> {
    let no_data = |what| PlotError::NoData {
        path: path.to_path_buf(),
        what,
    };
    if x_labels.is_empty() {
        return Err(no_data("no latent size"));
    }
    if series.is_empty() {
        return Err(no_data("no series"));
    }
    for line in series {
        validate_series(path, x_labels, line)?;
    }
    let times = || series.iter().flat_map(|s| s.seconds.iter().flatten().copied());
    let (Some(min), Some(max)) = (times().reduce(f64::min), times().reduce(f64::max)) else {
        return Err(no_data("no measured time in any series"));
    };
    // Whole decades with some room around the data.
    let low = 10f64.powf((min / 1.3).log10().floor());
    let high = 10f64.powf((max * 1.3).log10().ceil());
    let drawn: Vec<(usize, &Series)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| s.seconds.iter().any(Option::is_some))
        .collect();

    render(path, TIME_SIZE, |root, font| {
        let names = drawn.iter().map(|(_, line)| text::width(font, &line.name, 16.0));
        let legend_width = names.fold(0.0, f32::max).ceil() as u32 + 90;
        let (plot, legend) = root.split_horizontally(TIME_SIZE.0 - legend_width);

        // Latent size i sits at x = i, half a step from each side. The grid
        // is drawn here: plotters' mesh cannot take these key points on f64.
        let right = x_labels.len() as f64 - 0.5;
        let y_ticks = log_ticks(low, high);
        let mut chart = ChartBuilder::on(&plot)
            .margin(24)
            .margin_top(64)
            .x_label_area_size(64)
            .y_label_area_size(84)
            .build_cartesian_2d(-0.5..right, (low..high).log_scale())?;
        let rule = |from: (f64, f64), to: (f64, f64), colour: RGBColor| LineSeries::new([from, to], colour);
        for tick in minor_log_ticks(low, high) {
            chart.draw_series(rule((-0.5, tick), (right, tick), MINOR_GRID))?;
        }
        for &tick in &y_ticks {
            chart.draw_series(rule((-0.5, tick), (right, tick), GRID))?;
        }
        for i in 0..x_labels.len() {
            chart.draw_series(rule((i as f64, low), (i as f64, high), GRID))?;
        }
        chart.draw_series(LineSeries::new([(-0.5, high), (-0.5, low), (right, low)], BLACK))?;

        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let centre_x = (xs.start + xs.end) / 2;
        root.draw(&centred(font, title, 24.0, (centre_x, 34)))?;
        for (i, name) in x_labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64, low));
            root.draw(&PathElement::new(vec![(x, y), (x, y + 5)], BLACK))?;
            root.draw(&centred(font, name, 16.0, (x, ys.end + 20)))?;
        }
        for &tick in &y_ticks {
            let (x, y) = chart.backend_coord(&(-0.5, tick));
            root.draw(&PathElement::new(vec![(x - 5, y), (x, y)], BLACK))?;
            root.draw(&Label {
                font,
                text: &seconds_label(tick),
                at: (xs.start - 10, y),
                size: 16.0,
                anchor: HPos::Right,
                vertical: false,
            })?;
        }
        root.draw(&centred(font, "latent size", 17.0, (centre_x, ys.end + 50)))?;
        root.draw(&Label {
            vertical: true,
            ..centred(
                font,
                "seconds per image (log scale)",
                17.0,
                (xs.start - 66, (ys.start + ys.end) / 2),
            )
        })?;

        for &(index, line) in &drawn {
            let colour = PALETTE[index % PALETTE.len()];
            let present: Vec<(usize, f64)> = line
                .seconds
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (i, s)))
                .collect();
            let at = |&(i, s): &(usize, f64)| (i as f64, s);
            // Runs of consecutive measured sizes; a missing one breaks the line.
            for run in present.chunk_by(|a, b| b.0 == a.0 + 1) {
                chart.draw_series(LineSeries::new(run.iter().map(at), colour.stroke_width(2)))?;
            }
            chart.draw_series(present.iter().map(|p| Marker {
                at: at(p),
                index,
                colour,
            }))?;
        }

        let x = 10;
        let top = 80;
        let height = drawn.len() as i32 * 30 + 14;
        legend.draw(&Rectangle::new(
            [(x - 4, top - 4), (legend_width as i32 - 12, top + height)],
            GRID.stroke_width(1),
        ))?;
        for (row, &(index, line)) in drawn.iter().enumerate() {
            let y = top + 18 + row as i32 * 30;
            let colour = PALETTE[index % PALETTE.len()];
            legend.draw(&PathElement::new(vec![(x + 6, y), (x + 46, y)], colour.stroke_width(2)))?;
            legend.draw(&Marker {
                at: (x + 26, y),
                index,
                colour,
            })?;
            legend.draw(&Label {
                anchor: HPos::Left,
                ..centred(font, &line.name, 16.0, (x + 56, y))
            })?;
        }
        Ok(())
    })
}

/// Checks every point and AUC of one panel before anything is drawn.
fn validate_roc(path: &Path, class: &RocCurves) -> Result<(), PlotError> {
    let unit = 0.0..=1.0;
    for &(fpr, tpr) in class.plain.iter().chain(&class.encrypted).flatten() {
        if !unit.contains(&fpr) || !unit.contains(&tpr) {
            return Err(PlotError::InvalidRocPoint {
                path: path.to_path_buf(),
                class: class.class.clone(),
                fpr,
                tpr,
            });
        }
    }
    for &value in class.auc_plain.iter().chain(&class.auc_encrypted) {
        if !unit.contains(&value) {
            return Err(PlotError::InvalidAuc {
                path: path.to_path_buf(),
                class: class.class.clone(),
                value,
            });
        }
    }
    Ok(())
}

/// Checks one series' length and values against the x labels.
fn validate_series(path: &Path, x_labels: &[String], line: &Series) -> Result<(), PlotError> {
    if line.seconds.len() != x_labels.len() {
        return Err(PlotError::LengthMismatch {
            path: path.to_path_buf(),
            series: line.name.clone(),
            expected: x_labels.len(),
            found: line.seconds.len(),
        });
    }
    for (label, seconds) in x_labels.iter().zip(&line.seconds) {
        if let Some(value) = *seconds {
            if !(value.is_finite() && value > 0.0) {
                return Err(PlotError::InvalidSeconds {
                    path: path.to_path_buf(),
                    series: line.name.clone(),
                    label: label.clone(),
                    value,
                });
            }
        }
    }
    Ok(())
}

/// Registers the bundled font with plotters (once per process), draws on a
/// white RGB bitmap of `width x height` pixels, handing `draw` the parsed
/// font, and writes the bitmap to `path` as PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area, &FontRef<'static>) -> Result<(), DrawError>,
) -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let draw_error = |message: String| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    };
    let registered =
        *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, text::FONT_BYTES).is_ok());
    let Some(font) = text::font().filter(|_| registered) else {
        return Err(draw_error("the bundled font does not parse".into()));
    };
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root, font)
            .and_then(|()| root.present())
            .map_err(|e| draw_error(e.to_string()))?;
    }
    image::save_buffer_with_format(
        path,
        &pixels,
        width,
        height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// One class's panel (a part of `root`): title with AUCs, axes over [0, 1],
/// the diagonal and whichever curves are given. Axis names only on the
/// outer panels. Text goes on `root`, at the chart's absolute pixels.
fn draw_roc_panel(
    root: &Area,
    panel: &Area,
    font: &FontRef<'static>,
    class: &RocCurves,
    x_name: bool,
    y_name: bool,
) -> Result<(), DrawError> {
    let aucs: Vec<String> = [("plain", class.auc_plain), ("HE", class.auc_encrypted)]
        .into_iter()
        .filter_map(|(name, auc)| auc.map(|auc| format!("{name} {auc:.3}")))
        .collect();
    let title = match aucs.is_empty() {
        true => class.class.clone(),
        false => format!("{}  {}", class.class, aucs.join(" / ")),
    };
    // The largest size up to 16 px at which the title fits the panel.
    let mut size = 16.0;
    while size > 9.0 && text::width(font, &title, size) > (PANEL - 24) as f32 {
        size -= 1.0;
    }

    let mut chart = ChartBuilder::on(panel)
        .margin(14)
        .margin_top(34)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_labels(ROC_TICKS.len())
        .y_labels(ROC_TICKS.len())
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|_| String::new())
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .draw()?;

    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let centre = ((xs.start + xs.end) / 2, (ys.start + ys.end) / 2);
    // Centred on the panel: a long title may be wider than the plot.
    let (panel_xs, _) = panel.get_pixel_range();
    let title_x = (panel_xs.start + panel_xs.end) / 2;
    root.draw(&centred(font, &title, size, (title_x, ys.start - 18)))?;
    for tick in ROC_TICKS {
        let text = format!("{tick:.1}");
        let (x, _) = chart.backend_coord(&(tick, 0.0));
        root.draw(&centred(font, &text, 13.0, (x, ys.end + 16)))?;
        let (_, y) = chart.backend_coord(&(0.0, tick));
        root.draw(&Label {
            anchor: HPos::Right,
            ..centred(font, &text, 13.0, (xs.start - 8, y))
        })?;
    }
    if x_name {
        root.draw(&centred(font, "false positive rate", 14.0, (centre.0, ys.end + 36)))?;
    }
    if y_name {
        root.draw(&Label {
            vertical: true,
            ..centred(font, "true positive rate", 14.0, (xs.start - 38, centre.1))
        })?;
    }

    chart.draw_series(DashedLineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        4,
        4,
        CHANCE.stroke_width(1),
    ))?;
    if let Some(points) = &class.plain {
        chart.draw_series(LineSeries::new(points.iter().copied(), PLAIN.stroke_width(2)))?;
    }
    if let Some(points) = &class.encrypted {
        chart.draw_series(DashedLineSeries::new(
            points.iter().copied(),
            7,
            5,
            ENCRYPTED.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// How a legend entry's line sample is drawn.
#[derive(Clone, Copy)]
enum LineKind {
    Solid(RGBColor),
    Dashed(RGBColor),
}

/// A horizontal legend (line sample, then its text, per entry) centred on
/// `centre_x`, its line samples at height `y`.
fn draw_legend_row(
    area: &Area,
    font: &FontRef<'static>,
    entries: &[(LineKind, &str)],
    centre_x: i32,
    y: i32,
) -> Result<(), DrawError> {
    const SAMPLE: i32 = 40;
    const GAP: i32 = 8;
    const SPACING: i32 = 36;
    let widths: Vec<i32> = (entries.iter())
        .map(|(_, text)| text::width(font, text, 16.0).ceil() as i32)
        .collect();
    let total: i32 = widths.iter().map(|w| SAMPLE + GAP + w).sum::<i32>() + SPACING * (entries.len() as i32 - 1);
    let mut x = centre_x - total / 2;
    for ((kind, text), width) in entries.iter().zip(widths) {
        let ends = vec![(x, y), (x + SAMPLE, y)];
        match *kind {
            LineKind::Solid(colour) => {
                area.draw(&PathElement::new(ends, colour.stroke_width(2)))?;
            }
            LineKind::Dashed(colour) => {
                area.draw(&DashedPathElement::new(ends, 7, 5, colour.stroke_width(2)))?;
            }
        }
        area.draw(&Label {
            anchor: HPos::Left,
            ..centred(font, text, 16.0, (x + SAMPLE + GAP, y))
        })?;
        x += SAMPLE + GAP + width + SPACING;
    }
    Ok(())
}

/// A horizontal line of text centred on `at`.
fn centred<'a>(font: &'a FontRef<'static>, text: &'a str, size: f32, at: (i32, i32)) -> Label<'a> {
    Label {
        font,
        text,
        at,
        size,
        anchor: HPos::Center,
        vertical: false,
    }
}

/// The marker of the `index`-th series of the time figure, centred on a
/// point: a filled circle, triangle or square, or a cross, cycled.
struct Marker<C> {
    at: C,
    index: usize,
    colour: RGBColor,
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Marker<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;

    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Marker<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = points.next() else {
            return Ok(());
        };
        let filled = self.colour.filled();
        match self.index % 4 {
            0 => backend.draw_circle((x, y), 5, &filled, true),
            1 => backend.fill_polygon([(x, y - 7), (x - 7, y + 5), (x + 7, y + 5)], &filled),
            2 => backend.draw_rect((x - 5, y - 5), (x + 5, y + 5), &filled, true),
            _ => {
                let stroke = self.colour.stroke_width(3);
                backend.draw_line((x - 5, y - 5), (x + 5, y + 5), &stroke)?;
                backend.draw_line((x - 5, y + 5), (x + 5, y - 5), &stroke)
            }
        }
    }
}

/// Tick values of a logarithmic axis from `low` to `high` (both powers of
/// ten): every decade, plus 2 and 5 times each when the axis spans at most
/// two decades.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let first = low.log10().round() as i32;
    let last = high.log10().round() as i32;
    let steps: &[f64] = if last - first <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    (first..=last)
        .flat_map(|exponent| steps.iter().map(move |m| m * 10f64.powi(exponent)))
        .filter(|&tick| tick <= high * (1.0 + 1e-9))
        .collect()
}

/// Light grid values of a logarithmic axis from `low` to `high` (powers of
/// ten): 2 to 9 times each decade, inside the axis.
fn minor_log_ticks(low: f64, high: f64) -> Vec<f64> {
    let first = low.log10().round() as i32;
    let last = high.log10().round() as i32;
    (first..last)
        .flat_map(|exponent| (2..10).map(move |m| f64::from(m) * 10f64.powi(exponent)))
        .collect()
}

/// A tick value in seconds with as many decimals as its leading digit needs
/// (`0.02`, `0.5`, `3`, `100`).
fn seconds_label(seconds: f64) -> String {
    let decimals = if seconds >= 1.0 {
        0
    } else {
        (-seconds.log10().floor()) as usize
    };
    format!("{seconds:.decimals$}")
}
