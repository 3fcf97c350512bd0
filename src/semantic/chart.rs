//! Server-side charts: bar, line and pie charts rendered to SVG text and PNG bytes.
//!
//! Pure Rust, no system fonts, no browser: [`render`] lays a [`ChartSpec`] out once into a small
//! display list (rectangles, lines, polylines, circles, pie wedges and anchored text), then writes
//! that list twice — as an SVG document and, through `tiny-skia`, as a PNG. Text in the PNG is
//! drawn from the glyph outlines of DejaVu Sans, which is embedded in the binary
//! (`fonts/DejaVuSans.ttf`, licence in `fonts/DejaVuSans-LICENSE.txt`); every label is measured
//! with the same font's advances and kerning, so what is truncated with "…" or thinned out is
//! decided by real glyph widths. The SVG names the same family with sans-serif fallbacks and
//! embeds no font.
//!
//! Labels are user data: both outputs drop control and bidi-override characters, the SVG escapes
//! the rest, and strings are cut by characters, never at a byte offset. Non-finite values are
//! missing data (no bar, a gap in a line, no slice). Limits ([`MAX_CATEGORIES`],
//! [`MAX_PIE_SLICES`], [`MAX_SERIES`], [`MAX_BARS`]) are errors that say how to aggregate. Output
//! is deterministic: the same input gives the same bytes.

use std::f64::consts::{PI, TAU};
use std::fmt::Write as _;
use std::sync::OnceLock;

use tiny_skia::{
    Color, FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform,
};
use ttf_parser::{Face, GlyphId, OutlineBuilder};

/// Width of a rendered chart, in pixels (PNG) and user units (SVG `viewBox`).
pub const WIDTH: u32 = 800;
/// Height of a rendered chart, in pixels (PNG) and user units (SVG `viewBox`).
pub const HEIGHT: u32 = 450;
/// Most categories a bar or line chart takes.
pub const MAX_CATEGORIES: usize = 60;
/// Most slices a pie chart takes (one colour each from the palette).
pub const MAX_PIE_SLICES: usize = 12;
/// Most series a bar or line chart takes (one colour each from the palette).
pub const MAX_SERIES: usize = 10;
/// Most bars (categories × series) a bar chart takes: 60 categories × 3 series, where a bar is
/// still about 3 px wide.
pub const MAX_BARS: usize = 180;

const FONT_DATA: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const SVG_FONT_FAMILY: &str = "'DejaVu Sans', Verdana, sans-serif";

/// Labels longer than this many characters are cut before they are measured.
const MAX_LABEL_CHARS: usize = 200;
/// Values are clamped to ±this, so that differences of two values stay finite.
const VALUE_LIMIT: f64 = 1e300;

const PAD: f32 = 16.0;
const TITLE_SIZE: f32 = 18.0;
const LEGEND_SIZE: f32 = 12.0;
const TICK_SIZE: f32 = 11.0;
const AXIS_TITLE_SIZE: f32 = 12.0;
const DATA_SIZE: f32 = 11.0;
const PIE_LABEL_SIZE: f32 = 12.0;
const MAX_TICK_LABEL_W: f32 = 110.0;
const MAX_LEGEND_NAME_W: f32 = 170.0;
const MAX_ROTATED_LEN: f32 = 110.0;
const SIN45: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// The kind of chart to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    /// Vertical bars, series grouped side by side within each category.
    Bar,
    /// One line per series, one point per category.
    Line,
    /// Slices of the first series' total; the other series are ignored.
    Pie,
}

/// One named series of values, one value per category. Non-finite values are missing data.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    pub kind: ChartKind,
    pub title: String,
    /// X-axis labels (bars, points) or slice labels (pie).
    pub categories: Vec<String>,
    /// 1..=[`MAX_SERIES`] series; bars grouped side by side, lines one per series, pie uses the
    /// first series only.
    pub series: Vec<Series>,
    pub x_label: Option<String>,
    pub y_label: Option<String>,
}

/// A rendered chart: the same picture as SVG text and as PNG bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub svg: String,
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart has no categories: give at least one category (x-axis label or pie slice)")]
    NoCategories,
    #[error("the chart has no series: give at least one series of values")]
    NoSeries,
    #[error(
        "a {kind} chart has {count} categories; the limit is {limit}: aggregate before charting \
         (a coarser time grain, or the top {top} plus \"Other\")",
        top = .limit.saturating_sub(1)
    )]
    TooManyCategories {
        kind: &'static str,
        count: usize,
        limit: usize,
    },
    #[error(
        "a pie chart has {count} slices; the limit is {limit}: keep the largest {top} and group \
         the rest into \"Other\", or use a bar chart",
        top = .limit.saturating_sub(1)
    )]
    TooManySlices { count: usize, limit: usize },
    #[error(
        "the chart has {count} series; the limit is {limit}: chart fewer measures or groups at once"
    )]
    TooManySeries { count: usize, limit: usize },
    #[error(
        "a bar chart with {categories} categories and {series} series would draw {bars} bars; the \
         limit is {limit}: use fewer series or categories, or a line chart"
    )]
    TooManyBars {
        categories: usize,
        series: usize,
        bars: usize,
        limit: usize,
    },
    #[error(
        "series {series:?} has {values} values but there are {categories} categories: give exactly \
         one value per category (NaN for a missing one)"
    )]
    LengthMismatch {
        series: String,
        values: usize,
        categories: usize,
    },
    #[error(
        "pie slice {category:?} has a negative value ({value}): a pie shows shares of a positive \
         total; use a bar chart for signed data"
    )]
    NegativePieValue { category: String, value: f64 },
    #[error("nothing to draw: every value is missing (NaN or infinite)")]
    NoData,
    #[error("nothing to draw: the pie's values are all zero or missing")]
    EmptyPie,
    #[error("the embedded chart font could not be parsed")]
    Font,
    #[error("PNG rendering failed: {0}")]
    Render(String),
}

/// Renders `spec` at [`WIDTH`]×[`HEIGHT`] as SVG and PNG. `value_label` formats axis ticks,
/// data labels and pie legend values (e.g. `"$1.2M"`, `"12.5%"`); it is called with finite
/// values only.
pub fn render(
    spec: &ChartSpec,
    value_label: &dyn Fn(f64) -> String,
) -> Result<Rendered, ChartError> {
    let font = font()?;
    validate(spec)?;
    let scene = match spec.kind {
        ChartKind::Bar | ChartKind::Line => layout_xy(spec, font, value_label)?,
        ChartKind::Pie => layout_pie(spec, font, value_label)?,
    };
    let svg = write_svg(&scene);
    let png = rasterize(&scene, font)?;
    Ok(Rendered {
        svg,
        png,
        width: scene.width,
        height: scene.height,
    })
}

/// "Nice" axis ticks covering `min..=max`, evenly spaced by 1, 2 or 5 × 10^k and aiming at
/// about `target` intervals: of the nice steps near the raw one, the step whose axis best
/// balances the interval count against length wasted beyond the data.
///
/// Non-finite bounds are ignored, reversed bounds are swapped, and an empty range
/// (`min == max`) is widened to include 0 (to `0..=1` when both are 0). The result is ascending
/// and has at least two ticks; the first is ≤ `min` and the last ≥ `max` (up to float
/// rounding). Callers that want 0 on the axis (bar charts) pass `min.min(0.0)` and
/// `max.max(0.0)`.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = match (min.is_finite(), max.is_finite()) {
        (true, true) => (min.min(max), min.max(max)),
        (true, false) => (min, min),
        (false, true) => (max, max),
        (false, false) => (0.0, 1.0),
    };
    let (mut lo, mut hi) = (
        lo.clamp(-VALUE_LIMIT, VALUE_LIMIT),
        hi.clamp(-VALUE_LIMIT, VALUE_LIMIT),
    );
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-12 {
        let v = (lo + hi) / 2.0;
        (lo, hi) = if v == 0.0 {
            (0.0, 1.0)
        } else if v > 0.0 {
            (0.0, v)
        } else {
            (v, 0.0)
        };
    }
    let fallback = vec![lo, hi];
    let target = target.clamp(1, 50) as f64;
    let raw = (hi - lo) / target;
    if !(raw.is_finite() && raw > 1e-290) {
        return fallback;
    }
    let exp = raw.log10().floor();
    let mag = 10f64.powf(exp);
    // Snap quotients that are integers up to float noise: 0.3 / 0.1 is 2.9999999999999996,
    // which must floor to 3, not 2.
    let snap = |q: f64, f: fn(f64) -> f64| {
        if (q - q.round()).abs() < 1e-9 {
            q.round()
        } else {
            f(q)
        }
    };
    // Of the steps 1, 2, 5 and 10 × 10^k around the raw step, take the one whose axis has about
    // `target` intervals and wastes the least of its length beyond the data.
    let mut best: Option<(f64, f64, f64, f64)> = None;
    for mult in [1.0, 2.0, 5.0, 10.0] {
        let step = mult * mag;
        if !(step.is_finite() && step > 0.0) {
            continue;
        }
        let first = snap(lo / step, f64::floor);
        let last = snap(hi / step, f64::ceil);
        let intervals = last - first;
        if !(intervals.is_finite() && (1.0..=200.0).contains(&intervals)) {
            continue;
        }
        let waste = 1.0 - (hi - lo) / (intervals * step);
        let score = (intervals - target).abs() / target + 2.0 * waste;
        if best.is_none_or(|b| score < b.0 - 1e-9) {
            best = Some((score, step, first, intervals));
        }
    }
    let Some((_, step, first, count)) = best else {
        return fallback;
    };
    // Round away the float noise of k × step (0.30000000000000004 → 0.3).
    let decimals = -(step.log10().floor());
    let unit = if (0.0..=15.0).contains(&decimals) {
        Some(10f64.powf(decimals))
    } else {
        None
    };
    (0..=count as u32)
        .map(|i| {
            let t = (first + f64::from(i)) * step;
            let t = match unit {
                Some(u) => (t * u).round() / u,
                None => t,
            };
            if t == 0.0 { 0.0 } else { t }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Validation and data cleaning
// ---------------------------------------------------------------------------------------------

fn validate(spec: &ChartSpec) -> Result<(), ChartError> {
    let n = spec.categories.len();
    if n == 0 {
        return Err(ChartError::NoCategories);
    }
    let Some(first) = spec.series.first() else {
        return Err(ChartError::NoSeries);
    };
    let check_len = |s: &Series| {
        if s.values.len() == n {
            Ok(())
        } else {
            Err(ChartError::LengthMismatch {
                series: s.name.chars().take(60).collect(),
                values: s.values.len(),
                categories: n,
            })
        }
    };
    match spec.kind {
        ChartKind::Pie => {
            if n > MAX_PIE_SLICES {
                return Err(ChartError::TooManySlices {
                    count: n,
                    limit: MAX_PIE_SLICES,
                });
            }
            check_len(first)?;
            let mut total = 0.0;
            for (category, &value) in spec.categories.iter().zip(&first.values) {
                if value.is_finite() && value < 0.0 {
                    return Err(ChartError::NegativePieValue {
                        category: category.chars().take(60).collect(),
                        value,
                    });
                }
                if let Some(v) = finite(value) {
                    total += v;
                }
            }
            if !(total > 0.0 && total.is_finite()) {
                return Err(ChartError::EmptyPie);
            }
        }
        ChartKind::Bar | ChartKind::Line => {
            let kind = if spec.kind == ChartKind::Bar {
                "bar"
            } else {
                "line"
            };
            if n > MAX_CATEGORIES {
                return Err(ChartError::TooManyCategories {
                    kind,
                    count: n,
                    limit: MAX_CATEGORIES,
                });
            }
            let ns = spec.series.len();
            if ns > MAX_SERIES {
                return Err(ChartError::TooManySeries {
                    count: ns,
                    limit: MAX_SERIES,
                });
            }
            if spec.kind == ChartKind::Bar && n.saturating_mul(ns) > MAX_BARS {
                return Err(ChartError::TooManyBars {
                    categories: n,
                    series: ns,
                    bars: n.saturating_mul(ns),
                    limit: MAX_BARS,
                });
            }
            for s in &spec.series {
                check_len(s)?;
            }
            let any = spec
                .series
                .iter()
                .any(|s| s.values.iter().any(|v| v.is_finite()));
            if !any {
                return Err(ChartError::NoData);
            }
        }
    }
    Ok(())
}

/// A finite value clamped to ±[`VALUE_LIMIT`]; `None` for NaN and infinities.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then(|| v.clamp(-VALUE_LIMIT, VALUE_LIMIT))
}

/// Characters that are dropped from labels: controls, bidi overrides and isolates, the BOM and
/// the XML-invalid U+FFFE/U+FFFF.
fn is_dropped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFFE}'
                | '\u{FFFF}'
        )
}

/// A label as displayed: at most [`MAX_LABEL_CHARS`] characters, whitespace runs collapsed to
/// one space, trimmed, dropped characters removed.
fn clean(s: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in s.chars() {
        if count >= MAX_LABEL_CHARS {
            break;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if is_dropped(c) {
            continue;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

fn format_pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

// ---------------------------------------------------------------------------------------------
// Font
// ---------------------------------------------------------------------------------------------

struct Font {
    face: Face<'static>,
    upem: f32,
    /// Ascent, descent (positive) and cap height, as fractions of the em.
    ascent: f32,
    descent: f32,
    cap: f32,
}

fn font() -> Result<&'static Font, ChartError> {
    static FONT: OnceLock<Option<Font>> = OnceLock::new();
    FONT.get_or_init(Font::load)
        .as_ref()
        .ok_or(ChartError::Font)
}

impl Font {
    fn load() -> Option<Font> {
        let face = Face::parse(FONT_DATA, 0).ok()?;
        let upem = f32::from(face.units_per_em());
        if upem <= 0.0 {
            return None;
        }
        let ascent = f32::from(face.ascender()) / upem;
        let descent = -f32::from(face.descender()) / upem;
        let cap = face.capital_height().map_or(0.72, |c| f32::from(c) / upem);
        Some(Font {
            face,
            upem,
            ascent,
            descent,
            cap,
        })
    }

    fn glyph(&self, c: char) -> GlyphId {
        self.face.glyph_index(c).unwrap_or(GlyphId(0))
    }

    fn advance(&self, g: GlyphId) -> f32 {
        f32::from(self.face.glyph_hor_advance(g).unwrap_or(0))
    }

    fn kern(&self, left: GlyphId, right: GlyphId) -> f32 {
        let Some(kern) = self.face.tables().kern else {
            return 0.0;
        };
        for sub in kern.subtables {
            if sub.horizontal
                && !sub.variable
                && !sub.has_cross_stream
                && let Some(v) = sub.glyphs_kerning(left, right)
            {
                return f32::from(v);
            }
        }
        0.0
    }

    /// Glyphs with their pen x positions, and the total advance, in font units.
    fn shape(&self, text: &str) -> (Vec<(GlyphId, f32)>, f32) {
        let mut glyphs = Vec::with_capacity(text.len());
        let mut x = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let g = self.glyph(c);
            if let Some(p) = prev {
                x += self.kern(p, g);
            }
            glyphs.push((g, x));
            x += self.advance(g);
            prev = Some(g);
        }
        (glyphs, x)
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        self.shape(text).1 * size / self.upem
    }

    /// `text` if it fits in `max_w` pixels at `size`, else its longest prefix (by characters)
    /// that fits together with "…", or "" when not even "…" fits.
    fn fit(&self, text: &str, size: f32, max_w: f32) -> String {
        if self.width(text, size) <= max_w {
            return text.to_string();
        }
        let ellipsis = self.width("…", size);
        if ellipsis > max_w {
            return String::new();
        }
        let budget = (max_w - ellipsis) * self.upem / size;
        let mut out = String::new();
        let mut x = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let g = self.glyph(c);
            let kern = prev.map_or(0.0, |p| self.kern(p, g));
            let next = x + kern + self.advance(g);
            if next > budget {
                break;
            }
            x = next;
            out.push(c);
            prev = Some(g);
        }
        let mut out = out.trim_end().to_string();
        out.push('…');
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Display list
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    /// WCAG relative luminance.
    fn luminance(self) -> f32 {
        let channel = |c: u8| {
            let c = f32::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }

    /// Whether dark text contrasts more with this colour than white text does.
    fn is_light(self) -> bool {
        let l = self.luminance();
        (l + 0.05) / (TITLE_COLOR.luminance() + 0.05) > 1.05 / (l + 0.05)
    }
}

/// Tableau 10 (distinct under the common colour-vision deficiencies, and calm), then two more
/// from Tableau 20 for the 11th and 12th pie slice: rose next to the grey, olive next to the
/// first blue.
const PALETTE: [Rgb; 12] = [
    Rgb(0x4E, 0x79, 0xA7),
    Rgb(0xF2, 0x8E, 0x2B),
    Rgb(0xE1, 0x57, 0x59),
    Rgb(0x76, 0xB7, 0xB2),
    Rgb(0x59, 0xA1, 0x4F),
    Rgb(0xED, 0xC9, 0x48),
    Rgb(0xB0, 0x7A, 0xA1),
    Rgb(0xFF, 0x9D, 0xA7),
    Rgb(0x9C, 0x75, 0x5F),
    Rgb(0xBA, 0xB0, 0xAC),
    Rgb(0xD3, 0x72, 0x95),
    Rgb(0xB6, 0x99, 0x2D),
];
const BACKGROUND: Rgb = Rgb(0xFF, 0xFF, 0xFF);
const TITLE_COLOR: Rgb = Rgb(0x1F, 0x23, 0x28);
const TEXT_COLOR: Rgb = Rgb(0x3D, 0x44, 0x4D);
const MUTED_COLOR: Rgb = Rgb(0x5F, 0x67, 0x70);
const GRID_COLOR: Rgb = Rgb(0xE3, 0xE6, 0xEA);
const AXIS_COLOR: Rgb = Rgb(0x8C, 0x95, 0x9F);

fn color(i: usize) -> Rgb {
    PALETTE
        .get(i % PALETTE.len())
        .copied()
        .unwrap_or(Rgb(0x4E, 0x79, 0xA7))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn fraction(self) -> f32 {
        match self {
            Anchor::Start => 0.0,
            Anchor::Middle => 0.5,
            Anchor::End => 1.0,
        }
    }
}

/// A line of text; `(x, y)` is the anchor on the baseline, `angle` a clockwise rotation in
/// degrees about it (as SVG's `rotate`).
#[derive(Debug, Clone, PartialEq)]
struct Text {
    x: f32,
    y: f32,
    text: String,
    size: f32,
    fill: Rgb,
    anchor: Anchor,
    angle: f32,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        stroke: Rgb,
        width: f32,
    },
    Polyline {
        points: Vec<(f32, f32)>,
        stroke: Rgb,
        width: f32,
    },
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
        fill: Rgb,
        ring: Option<(Rgb, f32)>,
    },
    /// A pie slice; angles in radians, clockwise from 12 o'clock.
    Wedge {
        cx: f32,
        cy: f32,
        r: f32,
        start: f64,
        sweep: f64,
        fill: Rgb,
        ring: Option<(Rgb, f32)>,
    },
    Text(Text),
}

struct Scene {
    width: u32,
    height: u32,
    title: String,
    items: Vec<Item>,
}

/// A 1-px line centred on a pixel row or column.
fn crisp(v: f32) -> f32 {
    v.floor() + 0.5
}

/// Baseline that vertically centres a line of text of `size` on `mid`.
fn centred_baseline(font: &Font, mid: f32, size: f32) -> f32 {
    mid + font.cap * size / 2.0
}

fn text(x: f32, y: f32, text: String, size: f32, fill: Rgb, anchor: Anchor) -> Item {
    Item::Text(Text {
        x,
        y,
        text,
        size,
        fill,
        anchor,
        angle: 0.0,
    })
}

/// The title line; returns the y below it.
fn push_title(items: &mut Vec<Item>, font: &Font, title: &str) -> f32 {
    let title = font.fit(&clean(title), TITLE_SIZE, WIDTH as f32 - 2.0 * PAD);
    if title.is_empty() {
        return PAD;
    }
    let baseline = PAD + font.ascent * TITLE_SIZE;
    items.push(text(
        PAD,
        baseline,
        title,
        TITLE_SIZE,
        TITLE_COLOR,
        Anchor::Start,
    ));
    baseline + font.descent * TITLE_SIZE
}

// ---------------------------------------------------------------------------------------------
// Bar and line layout
// ---------------------------------------------------------------------------------------------

enum XLabels {
    /// Horizontal, centred under each category, each cut to `max` pixels.
    Flat { max: f32 },
    /// Rotated 45°, every `step`-th category, each at most `max_len` pixels long.
    Rotated { step: usize, max_len: f32 },
}

fn line_domain(vmin: f64, vmax: f64) -> (f64, f64) {
    if vmin > 0.0 && vmin <= vmax * 0.5 {
        (0.0, vmax)
    } else if vmax < 0.0 && vmax >= vmin * 0.5 {
        (vmin, 0.0)
    } else {
        (vmin, vmax)
    }
}

fn layout_xy(
    spec: &ChartSpec,
    font: &Font,
    value_label: &dyn Fn(f64) -> String,
) -> Result<Scene, ChartError> {
    let (w, h) = (WIDTH as f32, HEIGHT as f32);
    let is_bar = spec.kind == ChartKind::Bar;
    let n = spec.categories.len();
    let data: Vec<Vec<Option<f64>>> = spec
        .series
        .iter()
        .map(|s| s.values.iter().map(|&v| finite(v)).collect())
        .collect();
    let ns = data.len();
    let (vmin, vmax) = data
        .iter()
        .flatten()
        .flatten()
        .fold(None, |acc: Option<(f64, f64)>, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
        .ok_or(ChartError::NoData)?;

    let mut items = Vec::new();

    // Header: title, then the legend when there is more than one series.
    let mut top = push_title(&mut items, font, &spec.title);
    if ns > 1 {
        let entries: Vec<(String, Rgb)> = spec
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let name = clean(&s.name);
                let name = if name.is_empty() {
                    format!("Series {}", i + 1)
                } else {
                    name
                };
                (name, color(i))
            })
            .collect();
        top = push_legend(&mut items, font, &entries, top + 6.0, is_bar);
    }
    let plot_top = top + 14.0;

    // Footer: the x-axis title.
    let mut bottom = h - PAD;
    let x_title = spec.x_label.as_deref().map(clean).unwrap_or_default();
    let x_title_baseline = bottom - font.descent * AXIS_TITLE_SIZE;
    if !x_title.is_empty() {
        bottom -= AXIS_TITLE_SIZE * (font.ascent + font.descent) + 6.0;
    }

    // Y axis: ticks, their labels, the axis title; they fix the plot's left edge.
    let (lo, hi) = if is_bar {
        (vmin.min(0.0), vmax.max(0.0))
    } else {
        line_domain(vmin, vmax)
    };
    let estimated_h = bottom - 24.0 - plot_top;
    let target = ((estimated_h / 70.0).round().max(0.0) as usize).clamp(3, 7);
    let ticks = nice_ticks(lo, hi, target);
    let tick_labels: Vec<String> = ticks
        .iter()
        .map(|&t| font.fit(&clean(&value_label(t)), TICK_SIZE, MAX_TICK_LABEL_W))
        .collect();
    let tick_w = tick_labels
        .iter()
        .map(|t| font.width(t, TICK_SIZE))
        .fold(0.0f32, f32::max);
    let y_title = spec.y_label.as_deref().map(clean).unwrap_or_default();
    let y_title_w = if y_title.is_empty() {
        0.0
    } else {
        AXIS_TITLE_SIZE * (font.ascent + font.descent) + 8.0
    };
    let plot_x = PAD + y_title_w + tick_w + 8.0;
    let plot_right = w - PAD - 6.0;
    let plot_w = (plot_right - plot_x).max(10.0);
    let band = plot_w / n as f32;
    let centre = |i: usize| plot_x + band * (i as f32 + 0.5);

    // X labels: horizontal when they fit (or can be cut to a useful width), else rotated and
    // thinned so that neighbours never overlap.
    let categories: Vec<String> = spec.categories.iter().map(|c| clean(c)).collect();
    let widest = categories
        .iter()
        .map(|c| font.width(c, TICK_SIZE))
        .fold(0.0f32, f32::max);
    let line_h = TICK_SIZE * (font.ascent + font.descent) + 2.0;
    let x_mode = if widest <= band - 6.0 || band >= 64.0 {
        XLabels::Flat { max: band - 6.0 }
    } else {
        let step = (line_h / (band * SIN45)).ceil().max(1.0) as usize;
        XLabels::Rotated {
            step,
            max_len: widest.min(MAX_ROTATED_LEN),
        }
    };
    let x_labels_h = match x_mode {
        XLabels::Flat { .. } => 6.0 + TICK_SIZE * (font.ascent + font.descent),
        XLabels::Rotated { max_len, .. } => {
            8.0 + (max_len + TICK_SIZE * (font.ascent + font.descent)) * SIN45
        }
    };
    let plot_bottom = bottom - x_labels_h;
    let plot_h = (plot_bottom - plot_top).max(20.0);
    let plot_bottom = plot_top + plot_h;

    // Value → y. Bars with data labels get headroom above (below) the extreme bars.
    let (mut dlo, mut dhi) = (
        ticks.first().copied().unwrap_or(lo),
        ticks.last().copied().unwrap_or(hi),
    );
    let group_w = (band * if ns > 1 { 0.8 } else { 0.7 }).min(ns as f32 * 64.0);
    let bar_w = group_w / ns as f32;
    let data_labels: Vec<Vec<Option<String>>> = if is_bar {
        data.iter()
            .map(|s| {
                s.iter()
                    .map(|v| v.map(|v| clean(&value_label(v))))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    // A label may use most of the gap beside a lone bar; grouped bars touch, so theirs must fit
    // over the bar itself.
    let slack = if ns == 1 { (band - bar_w) * 0.8 } else { -2.0 };
    let label_room = DATA_SIZE * (font.ascent + font.descent) + 4.0;
    let ratio = f64::from(label_room / plot_h);
    let show_data_labels = is_bar
        && ratio < 0.3
        && data_labels
            .iter()
            .flatten()
            .flatten()
            .all(|t| font.width(t, DATA_SIZE) <= bar_w + slack);
    if show_data_labels {
        for _ in 0..3 {
            let span = dhi - dlo;
            if vmax > 0.0 && (dhi - vmax) < ratio * span {
                dhi = (vmax - ratio * dlo) / (1.0 - ratio);
            }
            let span = dhi - dlo;
            if vmin < 0.0 && (vmin - dlo) < ratio * span {
                dlo = (vmin - ratio * dhi) / (1.0 - ratio);
            }
        }
    }
    let span = if dhi - dlo > 0.0 && (dhi - dlo).is_finite() {
        dhi - dlo
    } else {
        1.0
    };
    let y_of = |v: f64| (f64::from(plot_bottom) - (v - dlo) / span * f64::from(plot_h)) as f32;

    // Grid and tick labels.
    for (&t, label) in ticks.iter().zip(tick_labels) {
        let y = crisp(y_of(t));
        items.push(Item::Line {
            x1: plot_x,
            y1: y,
            x2: plot_right,
            y2: y,
            stroke: GRID_COLOR,
            width: 1.0,
        });
        items.push(text(
            plot_x - 6.0,
            centred_baseline(font, y, TICK_SIZE),
            label,
            TICK_SIZE,
            MUTED_COLOR,
            Anchor::End,
        ));
    }

    // The data.
    let zero_in_view = dlo <= 0.0 && 0.0 <= dhi;
    let zero_y = y_of(0.0f64.clamp(dlo, dhi));
    if is_bar {
        for (j, series) in data.iter().enumerate() {
            let fill = color(j);
            for (i, v) in series.iter().enumerate() {
                let Some(v) = *v else { continue };
                let x0 = plot_x + band * i as f32 + (band - group_w) / 2.0 + bar_w * j as f32;
                let x1 = x0
                    + if ns > 1 && bar_w >= 4.0 {
                        bar_w - 1.0
                    } else {
                        bar_w
                    };
                let (xa, xb) = (x0.round(), x1.round().max(x0.round() + 1.0));
                let vy = y_of(v);
                let (mut ya, mut yb) = (vy.min(zero_y).round(), vy.max(zero_y).round());
                if v != 0.0 && yb - ya < 1.0 {
                    if v > 0.0 {
                        ya = yb - 1.0;
                    } else {
                        yb = ya + 1.0;
                    }
                }
                if yb > ya {
                    items.push(Item::Rect {
                        x: xa,
                        y: ya,
                        w: xb - xa,
                        h: yb - ya,
                        fill,
                    });
                }
                if show_data_labels {
                    let label = data_labels
                        .get(j)
                        .and_then(|s| s.get(i))
                        .cloned()
                        .flatten()
                        .unwrap_or_default();
                    let above = v > 0.0 || (v == 0.0 && (vmax > 0.0 || vmin >= 0.0));
                    let y = if above {
                        ya - 4.0 - font.descent * DATA_SIZE
                    } else {
                        yb + 4.0 + font.ascent * DATA_SIZE
                    };
                    items.push(text(
                        (xa + xb) / 2.0,
                        y,
                        label,
                        DATA_SIZE,
                        TEXT_COLOR,
                        Anchor::Middle,
                    ));
                }
            }
        }
    } else {
        let markers = n <= 24;
        for (j, series) in data.iter().enumerate() {
            let stroke = color(j);
            let mut runs: Vec<Vec<(f32, f32)>> = Vec::new();
            let mut run = Vec::new();
            for (i, v) in series.iter().enumerate() {
                match v {
                    Some(v) => run.push((centre(i), y_of(*v))),
                    None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                    None => {}
                }
            }
            if !run.is_empty() {
                runs.push(run);
            }
            for run in &runs {
                if run.len() >= 2 {
                    items.push(Item::Polyline {
                        points: run.clone(),
                        stroke,
                        width: 2.5,
                    });
                }
            }
            for run in &runs {
                if markers || run.len() == 1 {
                    for &(cx, cy) in run {
                        items.push(Item::Circle {
                            cx,
                            cy,
                            r: if markers { 3.5 } else { 2.5 },
                            fill: stroke,
                            ring: Some((BACKGROUND, 1.5)),
                        });
                    }
                }
            }
        }
    }

    // The axis line: at zero when zero is in view, else along the bottom.
    let axis_y = crisp(if zero_in_view { zero_y } else { plot_bottom });
    items.push(Item::Line {
        x1: plot_x,
        y1: axis_y,
        x2: plot_right,
        y2: axis_y,
        stroke: AXIS_COLOR,
        width: 1.0,
    });

    // Category labels.
    match x_mode {
        XLabels::Flat { max } => {
            let baseline = plot_bottom + 6.0 + font.ascent * TICK_SIZE;
            for (i, c) in categories.iter().enumerate() {
                items.push(text(
                    centre(i),
                    baseline,
                    font.fit(c, TICK_SIZE, max),
                    TICK_SIZE,
                    TEXT_COLOR,
                    Anchor::Middle,
                ));
            }
        }
        XLabels::Rotated { step, max_len } => {
            // The label's end sits under its category, its middle line through the tick.
            let shift = font.cap * TICK_SIZE / 2.0 * SIN45;
            for (i, c) in categories.iter().enumerate().step_by(step.max(1)) {
                let x = centre(i) + shift;
                let y = plot_bottom + 8.0 + shift;
                // Never past the left edge of the canvas.
                let room = (x - 2.0) / SIN45 - font.ascent * TICK_SIZE;
                items.push(Item::Text(Text {
                    x,
                    y,
                    text: font.fit(c, TICK_SIZE, max_len.min(room)),
                    size: TICK_SIZE,
                    fill: TEXT_COLOR,
                    anchor: Anchor::End,
                    angle: -45.0,
                }));
            }
        }
    }

    // Axis titles.
    if !x_title.is_empty() {
        items.push(text(
            plot_x + plot_w / 2.0,
            x_title_baseline,
            font.fit(&x_title, AXIS_TITLE_SIZE, plot_w),
            AXIS_TITLE_SIZE,
            TEXT_COLOR,
            Anchor::Middle,
        ));
    }
    if !y_title.is_empty() {
        items.push(Item::Text(Text {
            x: PAD + font.ascent * AXIS_TITLE_SIZE,
            y: plot_top + plot_h / 2.0,
            text: font.fit(&y_title, AXIS_TITLE_SIZE, plot_h),
            size: AXIS_TITLE_SIZE,
            fill: TEXT_COLOR,
            anchor: Anchor::Middle,
            angle: -90.0,
        }));
    }

    Ok(Scene {
        width: WIDTH,
        height: HEIGHT,
        title: clean(&spec.title),
        items,
    })
}

/// A wrapping row legend under the title; returns the y below it.
fn push_legend(
    items: &mut Vec<Item>,
    font: &Font,
    entries: &[(String, Rgb)],
    top: f32,
    square: bool,
) -> f32 {
    let row_h = 18.0;
    let swatch_w = if square { 12.0 } else { 18.0 };
    let right = WIDTH as f32 - PAD;
    let (mut x, mut y) = (PAD, top);
    for (name, fill) in entries {
        let name = font.fit(name, LEGEND_SIZE, MAX_LEGEND_NAME_W);
        let item_w = swatch_w + 6.0 + font.width(&name, LEGEND_SIZE);
        if x > PAD && x + item_w > right {
            x = PAD;
            y += row_h;
        }
        let mid = y + row_h / 2.0;
        if square {
            items.push(Item::Rect {
                x,
                y: (mid - 6.0).round(),
                w: 12.0,
                h: 12.0,
                fill: *fill,
            });
        } else {
            items.push(Item::Line {
                x1: x,
                y1: mid,
                x2: x + swatch_w,
                y2: mid,
                stroke: *fill,
                width: 3.0,
            });
        }
        items.push(text(
            x + swatch_w + 6.0,
            centred_baseline(font, mid, LEGEND_SIZE),
            name,
            LEGEND_SIZE,
            TEXT_COLOR,
            Anchor::Start,
        ));
        x += item_w + 18.0;
    }
    y + row_h
}

// ---------------------------------------------------------------------------------------------
// Pie layout
// ---------------------------------------------------------------------------------------------

/// An axis-aligned box: left, top, right, bottom.
#[derive(Debug, Clone, Copy)]
struct Bounds(f32, f32, f32, f32);

impl Bounds {
    fn overlaps(self, o: Bounds) -> bool {
        self.0 < o.2 && o.0 < self.2 && self.1 < o.3 && o.1 < self.3
    }

    fn inside(self, o: Bounds) -> bool {
        self.0 >= o.0 && self.1 >= o.1 && self.2 <= o.2 && self.3 <= o.3
    }
}

fn layout_pie(
    spec: &ChartSpec,
    font: &Font,
    value_label: &dyn Fn(f64) -> String,
) -> Result<Scene, ChartError> {
    let (w, h) = (WIDTH as f32, HEIGHT as f32);
    let first = spec.series.first().ok_or(ChartError::NoSeries)?;
    let values: Vec<Option<f64>> = first.values.iter().map(|&v| finite(v)).collect();
    let total: f64 = values.iter().flatten().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(ChartError::EmptyPie);
    }

    let mut items = Vec::new();
    let area_top = push_title(&mut items, font, &spec.title) + 12.0;
    let area_bottom = h - PAD;

    // Legend rows: swatch, label, and "value · share" right-aligned.
    let labels: Vec<String> = spec
        .categories
        .iter()
        .map(|c| {
            let c = clean(c);
            if c.is_empty() {
                "(blank)".to_string()
            } else {
                c
            }
        })
        .collect();
    let details: Vec<String> = values
        .iter()
        .map(|v| match v {
            Some(v) => font.fit(
                &format!("{} · {}", clean(&value_label(*v)), format_pct(v / total)),
                LEGEND_SIZE,
                150.0,
            ),
            None => "n/a".to_string(),
        })
        .collect();
    let detail_w = details
        .iter()
        .map(|d| font.width(d, LEGEND_SIZE))
        .fold(0.0f32, f32::max);
    let label_w = labels
        .iter()
        .map(|l| font.width(l, LEGEND_SIZE))
        .fold(0.0f32, f32::max);
    let gap = 40.0;
    let radius = ((area_bottom - area_top) / 2.0 - 24.0).clamp(40.0, 200.0);
    let max_legend_w = w - 2.0 * PAD - gap - 2.0 * radius;
    let fixed_w = 12.0 + 8.0 + 16.0 + detail_w;
    let label_w = label_w.min((max_legend_w - fixed_w).max(60.0));
    let legend_w = fixed_w + label_w;
    let block_w = 2.0 * radius + gap + legend_w;
    let left = ((w - block_w) / 2.0).max(PAD);
    let (cx, cy) = (left + radius, (area_top + area_bottom) / 2.0);
    let legend_x = left + 2.0 * radius + gap;
    let row_h = 22.0;
    let legend_top = cy - row_h * labels.len() as f32 / 2.0;
    let legend_box = Bounds(
        legend_x - 4.0,
        legend_top,
        legend_x + legend_w,
        legend_top + row_h * labels.len() as f32,
    );

    // Slices, clockwise from 12 o'clock, separated by thin white rings.
    let visible = values.iter().flatten().filter(|v| **v > 0.0).count();
    let ring = (visible > 1).then_some((BACKGROUND, 1.5));
    let mut slices = Vec::new();
    let mut angle = 0.0f64;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = *v else { continue };
        if v <= 0.0 {
            continue;
        }
        let sweep = (v / total * TAU).min(TAU);
        items.push(Item::Wedge {
            cx,
            cy,
            r: radius,
            start: angle,
            sweep,
            fill: color(i),
            ring,
        });
        slices.push((i, angle, sweep, v / total));
        angle += sweep;
    }

    // Percentages: inside the slice when they fit, else just outside it when that space is free.
    let canvas = Bounds(2.0, area_top - 8.0, w - 2.0, h - 2.0);
    let mut taken = vec![legend_box];
    let text_h = PIE_LABEL_SIZE * (font.ascent + font.descent);
    for (i, start, sweep, share) in slices {
        let label = format_pct(share);
        let tw = font.width(&label, PIE_LABEL_SIZE);
        let mid = start + sweep / 2.0;
        let (sin, cos) = (mid.sin() as f32, mid.cos() as f32);
        let inner = radius * 0.64;
        let chord = 2.0 * inner * (sweep.min(PI) / 2.0).sin() as f32;
        if visible == 1 || (sweep >= 0.3 && tw + 8.0 <= chord && text_h + 4.0 <= chord) {
            let (x, y) = if visible == 1 {
                (cx, cy)
            } else {
                (cx + inner * sin, cy - inner * cos)
            };
            let fill = if color(i).is_light() {
                TITLE_COLOR
            } else {
                BACKGROUND
            };
            items.push(text(
                x,
                centred_baseline(font, y, PIE_LABEL_SIZE),
                label,
                PIE_LABEL_SIZE,
                fill,
                Anchor::Middle,
            ));
            continue;
        }
        let outer = radius + 8.0;
        let (x, y) = (cx + outer * sin, cy - outer * cos);
        let (anchor, x0) = if sin > 0.2 {
            (Anchor::Start, x)
        } else if sin < -0.2 {
            (Anchor::End, x - tw)
        } else {
            (Anchor::Middle, x - tw / 2.0)
        };
        // Near 12 o'clock the label sits above its point, near 6 o'clock below it.
        let mid_y = y - cos * text_h / 2.0;
        let bounds = Bounds(
            x0 - 2.0,
            mid_y - text_h / 2.0,
            x0 + tw + 2.0,
            mid_y + text_h / 2.0,
        );
        if bounds.inside(canvas) && !taken.iter().any(|t| t.overlaps(bounds)) {
            taken.push(bounds);
            items.push(text(
                x,
                centred_baseline(font, mid_y, PIE_LABEL_SIZE),
                label,
                PIE_LABEL_SIZE,
                TEXT_COLOR,
                anchor,
            ));
        }
    }

    // Legend.
    for (i, (label, detail)) in labels.iter().zip(&details).enumerate() {
        let mid = legend_top + row_h * (i as f32 + 0.5);
        items.push(Item::Rect {
            x: legend_x.round(),
            y: (mid - 6.0).round(),
            w: 12.0,
            h: 12.0,
            fill: color(i),
        });
        let baseline = centred_baseline(font, mid, LEGEND_SIZE);
        items.push(text(
            legend_x + 20.0,
            baseline,
            font.fit(label, LEGEND_SIZE, label_w),
            LEGEND_SIZE,
            TEXT_COLOR,
            Anchor::Start,
        ));
        items.push(text(
            legend_x + legend_w,
            baseline,
            detail.clone(),
            LEGEND_SIZE,
            MUTED_COLOR,
            Anchor::End,
        ));
    }

    Ok(Scene {
        width: WIDTH,
        height: HEIGHT,
        title: clean(&spec.title),
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// SVG backend
// ---------------------------------------------------------------------------------------------

/// Appends `s` as XML character data / attribute text: markup characters escaped, characters
/// that XML 1.0 forbids dropped.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// A coordinate with at most two decimals, no trailing zeros, no "-0"; 0 for non-finite input.
fn num(v: f32) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let mut s = format!("{:.2}", v);
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_string();
    }
    s
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn ring_attrs(ring: Option<(Rgb, f32)>) -> String {
    match ring {
        Some((c, width)) => format!(
            r#" stroke="{}" stroke-width="{}" stroke-linejoin="round""#,
            hex(c),
            num(width)
        ),
        None => String::new(),
    }
}

/// The point at `angle` (radians clockwise from 12 o'clock) on a circle.
fn on_circle(cx: f32, cy: f32, r: f32, angle: f64) -> (f32, f32) {
    (cx + r * angle.sin() as f32, cy - r * angle.cos() as f32)
}

fn write_svg(scene: &Scene) -> String {
    let mut s = String::with_capacity(8192 + scene.items.len() * 120);
    let (w, h) = (scene.width, scene.height);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" font-family="{SVG_FONT_FAMILY}">"#
    );
    if !scene.title.is_empty() {
        s.push_str("<title>");
        push_escaped(&mut s, &scene.title);
        s.push_str("</title>");
    }
    let _ = write!(
        s,
        "\n<rect width=\"{w}\" height=\"{h}\" fill=\"{}\"/>\n",
        hex(BACKGROUND)
    );
    for item in &scene.items {
        match item {
            Item::Rect { x, y, w, h, fill } => {
                let _ = write!(
                    s,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                    num(*x),
                    num(*y),
                    num(*w),
                    num(*h),
                    hex(*fill)
                );
            }
            Item::Line {
                x1,
                y1,
                x2,
                y2,
                stroke,
                width,
            } => {
                let _ = write!(
                    s,
                    r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"/>"#,
                    num(*x1),
                    num(*y1),
                    num(*x2),
                    num(*y2),
                    hex(*stroke),
                    num(*width)
                );
            }
            Item::Polyline {
                points,
                stroke,
                width,
            } => {
                s.push_str(r#"<polyline points=""#);
                for (k, (x, y)) in points.iter().enumerate() {
                    if k > 0 {
                        s.push(' ');
                    }
                    let _ = write!(s, "{},{}", num(*x), num(*y));
                }
                let _ = write!(
                    s,
                    r#"" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round"/>"#,
                    hex(*stroke),
                    num(*width)
                );
            }
            Item::Circle {
                cx,
                cy,
                r,
                fill,
                ring,
            } => {
                let _ = write!(
                    s,
                    r#"<circle cx="{}" cy="{}" r="{}" fill="{}"{}/>"#,
                    num(*cx),
                    num(*cy),
                    num(*r),
                    hex(*fill),
                    ring_attrs(*ring)
                );
            }
            Item::Wedge {
                cx,
                cy,
                r,
                start,
                sweep,
                fill,
                ring,
            } => {
                if *sweep >= TAU - 1e-9 {
                    let _ = write!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="{}" fill="{}"{}/>"#,
                        num(*cx),
                        num(*cy),
                        num(*r),
                        hex(*fill),
                        ring_attrs(*ring)
                    );
                } else {
                    let (x0, y0) = on_circle(*cx, *cy, *r, *start);
                    let (x1, y1) = on_circle(*cx, *cy, *r, start + sweep);
                    let large = u8::from(*sweep > PI);
                    let _ = write!(
                        s,
                        r#"<path d="M{} {}L{} {}A{} {} 0 {} 1 {} {}Z" fill="{}"{}/>"#,
                        num(*cx),
                        num(*cy),
                        num(x0),
                        num(y0),
                        num(*r),
                        num(*r),
                        large,
                        num(x1),
                        num(y1),
                        hex(*fill),
                        ring_attrs(*ring)
                    );
                }
            }
            Item::Text(t) => {
                if t.text.is_empty() {
                    continue;
                }
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" font-size="{}" fill="{}""#,
                    num(t.x),
                    num(t.y),
                    num(t.size),
                    hex(t.fill)
                );
                match t.anchor {
                    Anchor::Start => {}
                    Anchor::Middle => s.push_str(r#" text-anchor="middle""#),
                    Anchor::End => s.push_str(r#" text-anchor="end""#),
                }
                if t.angle != 0.0 {
                    let _ = write!(
                        s,
                        r#" transform="rotate({} {} {})""#,
                        num(t.angle),
                        num(t.x),
                        num(t.y)
                    );
                }
                s.push('>');
                push_escaped(&mut s, &t.text);
                s.push_str("</text>");
            }
        }
        s.push('\n');
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// PNG backend
// ---------------------------------------------------------------------------------------------

fn paint(c: Rgb) -> Paint<'static> {
    let mut p = Paint::default();
    p.set_color_rgba8(c.0, c.1, c.2, 255);
    p.anti_alias = true;
    p
}

fn stroke(width: f32, round: bool) -> Stroke {
    Stroke {
        width,
        line_cap: if round { LineCap::Round } else { LineCap::Butt },
        line_join: if round {
            LineJoin::Round
        } else {
            LineJoin::Miter
        },
        ..Stroke::default()
    }
}

/// Feeds a glyph outline (font units, y up) into a path, shifted right by `dx`.
struct GlyphPen<'a> {
    path: &'a mut PathBuilder,
    dx: f32,
}

impl OutlineBuilder for GlyphPen<'_> {
    fn move_to(&mut self, x: f32, y: f32) {
        self.path.move_to(x + self.dx, y);
    }

    fn line_to(&mut self, x: f32, y: f32) {
        self.path.line_to(x + self.dx, y);
    }

    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.path.quad_to(x1 + self.dx, y1, x + self.dx, y);
    }

    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.path
            .cubic_to(x1 + self.dx, y1, x2 + self.dx, y2, x + self.dx, y);
    }

    fn close(&mut self) {
        self.path.close();
    }
}

fn draw_text(pixmap: &mut Pixmap, font: &Font, t: &Text) {
    let (glyphs, advance) = font.shape(&t.text);
    let mut path = PathBuilder::new();
    for (g, dx) in glyphs {
        let mut pen = GlyphPen {
            path: &mut path,
            dx,
        };
        let _ = font.face.outline_glyph(g, &mut pen);
    }
    let Some(path) = path.finish() else { return };
    let scale = t.size / font.upem;
    let transform = Transform::from_translate(t.x, t.y)
        .pre_rotate(t.angle)
        .pre_translate(-advance * scale * t.anchor.fraction(), 0.0)
        .pre_scale(scale, -scale);
    pixmap.fill_path(&path, &paint(t.fill), FillRule::Winding, transform, None);
}

/// A pie slice as a path: centre, arc (cubic Béziers of at most 90° each), back to the centre.
fn wedge_path(cx: f32, cy: f32, r: f32, start: f64, sweep: f64) -> Option<tiny_skia::Path> {
    if sweep >= TAU - 1e-9 {
        return PathBuilder::from_circle(cx, cy, r);
    }
    let mut pb = PathBuilder::new();
    pb.move_to(cx, cy);
    let (x0, y0) = on_circle(cx, cy, r, start);
    pb.line_to(x0, y0);
    let segments = (sweep / (PI / 2.0)).ceil().clamp(1.0, 4.0) as u32;
    let step = sweep / f64::from(segments);
    let k = (4.0 / 3.0 * (step / 4.0).tan()) as f32;
    // d/dθ of (cx + r sin θ, cy − r cos θ) is (r cos θ, r sin θ).
    let tangent = |a: f64| (r * a.cos() as f32, r * a.sin() as f32);
    for s in 0..segments {
        let a0 = start + step * f64::from(s);
        let a1 = a0 + step;
        let (p0, p1) = (on_circle(cx, cy, r, a0), on_circle(cx, cy, r, a1));
        let (t0, t1) = (tangent(a0), tangent(a1));
        pb.cubic_to(
            p0.0 + k * t0.0,
            p0.1 + k * t0.1,
            p1.0 - k * t1.0,
            p1.1 - k * t1.1,
            p1.0,
            p1.1,
        );
    }
    pb.close();
    pb.finish()
}

fn fill_and_ring(pixmap: &mut Pixmap, path: &tiny_skia::Path, fill: Rgb, ring: Option<(Rgb, f32)>) {
    pixmap.fill_path(
        path,
        &paint(fill),
        FillRule::Winding,
        Transform::identity(),
        None,
    );
    if let Some((c, width)) = ring {
        pixmap.stroke_path(
            path,
            &paint(c),
            &stroke(width, true),
            Transform::identity(),
            None,
        );
    }
}

fn rasterize(scene: &Scene, font: &Font) -> Result<Vec<u8>, ChartError> {
    let mut pixmap = Pixmap::new(scene.width, scene.height)
        .ok_or_else(|| ChartError::Render("could not allocate the image".to_string()))?;
    pixmap.fill(Color::from_rgba8(
        BACKGROUND.0,
        BACKGROUND.1,
        BACKGROUND.2,
        255,
    ));
    for item in &scene.items {
        match item {
            Item::Rect { x, y, w, h, fill } => {
                if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                    pixmap.fill_rect(rect, &paint(*fill), Transform::identity(), None);
                }
            }
            Item::Line {
                x1,
                y1,
                x2,
                y2,
                stroke: c,
                width,
            } => {
                let mut pb = PathBuilder::new();
                pb.move_to(*x1, *y1);
                pb.line_to(*x2, *y2);
                if let Some(path) = pb.finish() {
                    pixmap.stroke_path(
                        &path,
                        &paint(*c),
                        &stroke(*width, false),
                        Transform::identity(),
                        None,
                    );
                }
            }
            Item::Polyline {
                points,
                stroke: c,
                width,
            } => {
                let mut pb = PathBuilder::new();
                for (k, (x, y)) in points.iter().enumerate() {
                    if k == 0 {
                        pb.move_to(*x, *y);
                    } else {
                        pb.line_to(*x, *y);
                    }
                }
                if let Some(path) = pb.finish() {
                    pixmap.stroke_path(
                        &path,
                        &paint(*c),
                        &stroke(*width, true),
                        Transform::identity(),
                        None,
                    );
                }
            }
            Item::Circle {
                cx,
                cy,
                r,
                fill,
                ring,
            } => {
                if let Some(path) = PathBuilder::from_circle(*cx, *cy, *r) {
                    fill_and_ring(&mut pixmap, &path, *fill, *ring);
                }
            }
            Item::Wedge {
                cx,
                cy,
                r,
                start,
                sweep,
                fill,
                ring,
            } => {
                if let Some(path) = wedge_path(*cx, *cy, *r, *start, *sweep) {
                    fill_and_ring(&mut pixmap, &path, *fill, *ring);
                }
            }
            Item::Text(t) => draw_text(&mut pixmap, font, t),
        }
    }
    encode_png(&pixmap)
}

/// RGB PNG of an opaque pixmap. Every item is opaque and drawn over an opaque background, so
/// the premultiplied pixels equal the straight ones and alpha is dropped. Fast deflate without
/// row filters: charts are flat colours, where this is both the quickest (< 1 ms) and about as
/// small as the slower settings (30–45 KB at 800×450).
fn encode_png(pixmap: &Pixmap) -> Result<Vec<u8>, ChartError> {
    let rgb: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| [p.red(), p.green(), p.blue()])
        .collect();
    let mut png = Vec::with_capacity(48 * 1024);
    let mut encoder = png::Encoder::new(&mut png, pixmap.width(), pixmap.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_deflate_compression(png::DeflateCompression::Level(1));
    encoder.set_filter(png::Filter::NoFilter);
    let err = |e: png::EncodingError| ChartError::Render(e.to_string());
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn fmt(v: f64) -> String {
        if v.abs() >= 1e6 {
            format!("${:.1}M", v / 1e6)
        } else if v.abs() >= 1e3 {
            format!("${:.1}K", v / 1e3)
        } else {
            format!("${v}")
        }
    }

    fn spec(kind: ChartKind, categories: &[&str], series: &[(&str, &[f64])]) -> ChartSpec {
        ChartSpec {
            kind,
            title: "Revenue by region".to_string(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            series: series
                .iter()
                .map(|(name, values)| Series {
                    name: name.to_string(),
                    values: values.to_vec(),
                })
                .collect(),
            x_label: Some("Region".to_string()),
            y_label: Some("Revenue".to_string()),
        }
    }

    /// Decodes an RGB PNG into a pixmap (so that tests can read pixels).
    fn decode(png: &[u8]) -> Pixmap {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let rgba: Vec<u8> = buf[..info.buffer_size()]
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        Pixmap::from_vec(
            rgba,
            tiny_skia::IntSize::from_wh(info.width, info.height).unwrap(),
        )
        .unwrap()
    }

    /// Checks well-formedness and returns every text node's content.
    fn svg_texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text") || n.has_tag_name("title"))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect()
    }

    fn count_colour(p: &Pixmap, c: Rgb) -> usize {
        p.pixels()
            .iter()
            .filter(|px| px.red() == c.0 && px.green() == c.1 && px.blue() == c.2)
            .count()
    }

    fn non_background(p: &Pixmap) -> usize {
        p.pixels()
            .iter()
            .filter(|px| !(px.red() == 255 && px.green() == 255 && px.blue() == 255))
            .count()
    }

    #[test]
    fn svg_is_well_formed_and_escapes_hostile_labels() {
        let hostile = "<script>alert(\"x\")</script>&'\u{0}\u{7}\u{1b}[31m\u{202e}evil";
        let mut s = spec(
            ChartKind::Bar,
            &[hostile, "B & C", "\"quoted\"", "it's"],
            &[
                ("<b>", &[1.0, 2.0, 3.0, 4.0]),
                ("a&b", &[4.0, 3.0, 2.0, 1.0]),
            ],
        );
        s.title = hostile.to_string();
        s.x_label = Some(hostile.to_string());
        s.y_label = Some(hostile.to_string());
        let hostile_fmt = |v: f64| format!("<{v}>&\"'\u{1}");
        for kind in [ChartKind::Bar, ChartKind::Line, ChartKind::Pie] {
            s.kind = kind;
            let out = render(&s, &hostile_fmt).unwrap();
            assert!(!out.svg.contains("<script"), "{}", out.svg);
            assert!(!out.svg.contains("<b>"));
            assert!(!out.svg.contains('\u{0}') && !out.svg.contains('\u{1b}'));
            assert!(!out.svg.contains('\u{202e}'));
            let texts = svg_texts(&out.svg);
            assert!(
                texts.iter().any(|t| t.starts_with("<script>alert")),
                "{texts:?}"
            );
            assert!(texts.iter().any(|t| t.contains('&')), "{texts:?}");
            assert!(texts.iter().all(|t| !t.chars().any(char::is_control)));
        }
    }

    #[test]
    fn png_has_signature_and_decodes_to_800_by_450() {
        let s = spec(
            ChartKind::Bar,
            &["North", "South", "East", "West"],
            &[("Revenue", &[1.2e6, 0.8e6, 2.5e6, 1.9e6])],
        );
        let out = render(&s, &fmt).unwrap();
        assert!(
            out.png
                .starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A])
        );
        let p = decode(&out.png);
        assert_eq!((p.width(), p.height()), (800, 450));
        assert_eq!((out.width, out.height), (WIDTH, HEIGHT));
        assert!(out.svg.contains(r#"viewBox="0 0 800 450""#));
    }

    #[test]
    fn bar_chart_draws_its_bars() {
        let s = spec(
            ChartKind::Bar,
            &["North", "South", "East", "West"],
            &[("Revenue", &[1.2e6, 0.8e6, 2.5e6, 1.9e6])],
        );
        let p = decode(&render(&s, &fmt).unwrap().png);
        // Four solid bars of the first palette colour, a good part of the plot.
        let bar_pixels = count_colour(&p, PALETTE[0]);
        assert!(bar_pixels > 20_000, "{bar_pixels}");
        // Each bar of the layout is filled in the picture, and the space between them is not.
        let scene = layout_xy(&s, font().unwrap(), &fmt).unwrap();
        let bars: Vec<(f32, f32, f32, f32)> = scene
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Rect { x, y, w, h, fill } if *fill == PALETTE[0] => Some((*x, *y, *w, *h)),
                _ => None,
            })
            .collect();
        assert_eq!(bars.len(), 4);
        for (x, y, w, h) in &bars {
            let inside = p.pixel((x + w / 2.0) as u32, (y + h / 2.0) as u32).unwrap();
            assert_eq!(
                (inside.red(), inside.green(), inside.blue()),
                (0x4E, 0x79, 0xA7)
            );
            let beside = p
                .pixel((x + w + 10.0) as u32, (y + h / 2.0) as u32)
                .unwrap();
            assert_ne!(
                (beside.red(), beside.green(), beside.blue()),
                (0x4E, 0x79, 0xA7)
            );
        }
        // The tallest bar (East) is the tallest rectangle.
        let tallest = bars.iter().map(|b| b.3).fold(0.0f32, f32::max);
        assert_eq!(bars[2].3, tallest);
        // Text was drawn too (not only bars and grid).
        assert!(non_background(&p) > bar_pixels + 2_000);
    }

    #[test]
    fn every_kind_draws_something_in_each_series_colour() {
        let s = spec(
            ChartKind::Line,
            &["Jan", "Feb", "Mar", "Apr", "May", "Jun"],
            &[
                ("2024", &[1.0, 2.0, 3.0, 2.0, 4.0, 5.0]),
                ("2025", &[2.0, 3.0, 1.0, 4.0, 5.0, 6.0]),
                ("2026", &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),
            ],
        );
        for kind in [ChartKind::Bar, ChartKind::Line, ChartKind::Pie] {
            let mut s = s.clone();
            s.kind = kind;
            let p = decode(&render(&s, &fmt).unwrap().png);
            let colours = if kind == ChartKind::Pie { 6 } else { 3 };
            for (i, c) in PALETTE.iter().enumerate().take(colours) {
                assert!(count_colour(&p, *c) > 50, "{kind:?} colour {i}");
            }
        }
    }

    #[test]
    fn pie_refuses_negative_values() {
        let s = spec(
            ChartKind::Pie,
            &["Free", "Pro", "Team"],
            &[("Revenue", &[10.0, -5.0, 20.0])],
        );
        let err = render(&s, &fmt).unwrap_err();
        assert!(matches!(err, ChartError::NegativePieValue { .. }), "{err}");
        assert!(err.to_string().contains("negative"), "{err}");
        assert!(err.to_string().contains("\"Pro\""), "{err}");
    }

    #[test]
    fn errors_are_clear() {
        let mut s = spec(ChartKind::Bar, &[], &[("a", &[])]);
        assert!(matches!(render(&s, &fmt), Err(ChartError::NoCategories)));
        s.categories = vec!["x".to_string()];
        s.series.clear();
        assert!(matches!(render(&s, &fmt), Err(ChartError::NoSeries)));

        let many: Vec<String> = (0..61).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let values = vec![1.0; 61];
        let err = render(&spec(ChartKind::Line, &refs, &[("a", &values)]), &fmt).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("61") && msg.contains("limit is 60"), "{msg}");
        assert!(msg.contains("aggregate"), "{msg}");

        let err = render(
            &spec(ChartKind::Pie, &refs[..13], &[("a", &values[..13])]),
            &fmt,
        )
        .unwrap_err();
        assert!(err.to_string().contains("limit is 12"), "{err}");
        assert!(err.to_string().contains("Other"), "{err}");

        let err = render(&spec(ChartKind::Bar, &["a", "b"], &[("s", &[1.0])]), &fmt).unwrap_err();
        assert!(matches!(err, ChartError::LengthMismatch { .. }), "{err}");

        let err = render(
            &spec(
                ChartKind::Bar,
                &refs[..50],
                &[
                    ("a", &values[..50]),
                    ("b", &values[..50]),
                    ("c", &values[..50]),
                    ("d", &values[..50]),
                ],
            ),
            &fmt,
        )
        .unwrap_err();
        assert!(matches!(err, ChartError::TooManyBars { .. }), "{err}");

        let nan = [f64::NAN, f64::INFINITY];
        let err = render(&spec(ChartKind::Bar, &["a", "b"], &[("s", &nan)]), &fmt).unwrap_err();
        assert!(matches!(err, ChartError::NoData), "{err}");
        let err = render(
            &spec(ChartKind::Pie, &["a", "b"], &[("s", &[0.0, f64::NAN])]),
            &fmt,
        )
        .unwrap_err();
        assert!(matches!(err, ChartError::EmptyPie), "{err}");
    }

    #[test]
    fn nan_and_infinity_are_missing_values() {
        let values = [
            1.0,
            f64::NAN,
            3.0,
            f64::INFINITY,
            5.0,
            f64::NEG_INFINITY,
            2.0,
        ];
        let cats = ["a", "b", "c", "d", "e", "f", "g"];
        let bar = render(&spec(ChartKind::Bar, &cats, &[("s", &values)]), &fmt).unwrap();
        // Four bars (the legend is off for one series).
        let bars = bar.svg.matches(r##"fill="#4e79a7""##).count();
        assert_eq!(bars, 4, "{}", bar.svg);
        let line = render(&spec(ChartKind::Line, &cats, &[("s", &values)]), &fmt).unwrap();
        // Every run is a single point: no polyline, one marker each.
        assert_eq!(line.svg.matches("<polyline").count(), 0);
        assert_eq!(line.svg.matches("<circle").count(), 4);
        let gap = [1.0, 2.0, f64::NAN, 3.0, 4.0];
        let line = render(&spec(ChartKind::Line, &cats[..5], &[("s", &gap)]), &fmt).unwrap();
        assert_eq!(line.svg.matches("<polyline").count(), 2);
        let pie = render(&spec(ChartKind::Pie, &cats, &[("s", &values)]), &fmt).unwrap();
        assert_eq!(pie.svg.matches("<path").count(), 4);
        assert!(svg_texts(&pie.svg).iter().any(|t| t == "n/a"));
        for out in [bar, line, pie] {
            assert!(!out.svg.contains("NaN") && !out.svg.contains("inf"));
        }
    }

    #[test]
    fn multibyte_labels_are_cut_by_characters() {
        let font = font().unwrap();
        let long = [
            "São Paulo — Região Metropolitana de São Paulo, Brasil",
            "日本日本日本日本日本日本日本日本日本日本日本日本日本日本日本日本",
            "👨‍👩‍👧‍👦🎉👨‍👩‍👧‍👦🎉👨‍👩‍👧‍👦🎉👨‍👩‍👧‍👦🎉👨‍👩‍👧‍👦🎉👨‍👩‍👧‍👦🎉",
            "e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}e\u{301}",
        ];
        for text in long {
            for max in [0.0, 5.0, 12.0, 30.0, 61.5, 100.0] {
                let cut = font.fit(text, 11.0, max);
                assert!(font.width(&cut, 11.0) <= max + 0.01, "{cut:?} > {max}");
                if let Some(prefix) = cut.strip_suffix('…') {
                    assert!(text.starts_with(prefix.trim_end()));
                }
            }
        }
        let values: Vec<f64> = (0..long.len()).map(|i| i as f64 + 1.0).collect();
        for kind in [ChartKind::Bar, ChartKind::Line, ChartKind::Pie] {
            let mut s = spec(kind, &long, &[(long[1], &values), (long[2], &values)]);
            s.title = long.concat().repeat(5);
            s.x_label = Some(long[2].repeat(20));
            let out = render(&s, &fmt).unwrap();
            let texts = svg_texts(&out.svg);
            assert!(
                texts
                    .iter()
                    .any(|t| t.starts_with("São Paulo") && t.ends_with('…'))
            );
        }
        // Many narrow categories with multibyte labels: rotated and thinned.
        let cats: Vec<String> = (0..60).map(|i| format!("{} {i}", long[i % 4])).collect();
        let refs: Vec<&str> = cats.iter().map(String::as_str).collect();
        let values: Vec<f64> = (0..60).map(|i| (i as f64).sin() * 100.0).collect();
        render(&spec(ChartKind::Line, &refs, &[("s", &values)]), &fmt).unwrap();
        render(
            &spec(ChartKind::Bar, &refs, &[("s", &values), ("t", &values)]),
            &fmt,
        )
        .unwrap();
    }

    #[test]
    fn output_is_deterministic() {
        let s = spec(
            ChartKind::Bar,
            &["North", "South", "East", "West"],
            &[
                ("2024", &[1.2e6, 0.8e6, 2.5e6, 1.9e6]),
                ("2025", &[1.0e6, 1.1e6, 2.0e6, 2.2e6]),
            ],
        );
        for kind in [ChartKind::Bar, ChartKind::Line, ChartKind::Pie] {
            let mut s = s.clone();
            s.kind = kind;
            let a = render(&s, &fmt).unwrap();
            let b = render(&s, &fmt).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn odd_data_renders() {
        let cases: Vec<(&str, Vec<f64>)> = vec![
            ("all zero", vec![0.0, 0.0, 0.0]),
            ("all negative", vec![-5.0, -1.0, -3.0]),
            ("mixed sign", vec![-5.0, 3.0, 0.0]),
            ("outlier", vec![1.0, 2.0, 1e12]),
            ("huge", vec![f64::MAX, -f64::MAX, 1.0]),
            ("tiny", vec![f64::MIN_POSITIVE, 5e-324, 0.0]),
            ("negative zero", vec![-0.0, -0.0, -0.0]),
            ("equal", vec![7.0, 7.0, 7.0]),
            ("close", vec![1e15, 1e15 + 1.0, 1e15 + 2.0]),
        ];
        for (name, values) in &cases {
            for kind in [ChartKind::Bar, ChartKind::Line] {
                let s = spec(kind, &["a", "b", "c"], &[("s", values)]);
                let out = render(&s, &fmt).unwrap_or_else(|e| panic!("{name} {kind:?}: {e}"));
                assert!(
                    !out.svg.contains("NaN") && !out.svg.contains("inf"),
                    "{name}"
                );
                svg_texts(&out.svg);
            }
        }
        // A single category, and a single pie slice.
        for kind in [ChartKind::Bar, ChartKind::Line, ChartKind::Pie] {
            let out = render(&spec(kind, &["Only"], &[("s", &[42.0])]), &fmt).unwrap();
            assert!(non_background(&decode(&out.png)) > 1000, "{kind:?}");
        }
        let out = render(
            &spec(ChartKind::Pie, &["a", "b"], &[("s", &[1.0, 0.0])]),
            &fmt,
        )
        .unwrap();
        assert!(svg_texts(&out.svg).iter().any(|t| t == "100.0%"));
        // Empty and whitespace-only labels and titles.
        let mut s = spec(
            ChartKind::Bar,
            &["", " \n\t "],
            &[("", &[1.0, 2.0]), ("\u{0}", &[2.0, 1.0])],
        );
        s.title = String::new();
        s.x_label = Some(String::new());
        s.y_label = None;
        render(&s, &fmt).unwrap();
    }

    /// The corners of a text item's box (advance × ascent..descent), in canvas coordinates.
    fn text_corners(font: &Font, t: &Text) -> [(f32, f32); 4] {
        let w = font.width(&t.text, t.size);
        let x0 = -w * t.anchor.fraction();
        let (a, d) = (-font.ascent * t.size, font.descent * t.size);
        let (sin, cos) = t.angle.to_radians().sin_cos();
        [(x0, a), (x0 + w, a), (x0, d), (x0 + w, d)]
            .map(|(x, y)| (t.x + x * cos - y * sin, t.y + x * sin + y * cos))
    }

    #[test]
    fn text_stays_on_the_canvas_and_axis_labels_do_not_overlap() {
        let font = font().unwrap();
        let lengths = [3, 8, 20, 60];
        for count in [1, 2, 5, 7, 12, 13, 24, 31, 45, 60] {
            for len in lengths {
                let cats: Vec<String> = (0..count)
                    .map(|i| {
                        format!(
                            "{i}{}",
                            "Wide label "
                                .repeat(len)
                                .chars()
                                .take(len)
                                .collect::<String>()
                        )
                    })
                    .collect();
                let refs: Vec<&str> = cats.iter().map(String::as_str).collect();
                let values: Vec<f64> = (0..count).map(|i| (i as f64 - 3.0) * 1234.5).collect();
                for kind in [ChartKind::Bar, ChartKind::Line] {
                    let s = spec(kind, &refs, &[("s", &values), ("t", &values)]);
                    let scene = layout_xy(&s, font, &fmt).unwrap();
                    let texts: Vec<&Text> = scene
                        .items
                        .iter()
                        .filter_map(|i| match i {
                            Item::Text(t) => Some(t),
                            _ => None,
                        })
                        .collect();
                    for t in &texts {
                        for (x, y) in text_corners(font, t) {
                            assert!(
                                (0.0..=800.0).contains(&x) && (0.0..=450.0).contains(&y),
                                "{count} {len} {kind:?}: {t:?} at ({x}, {y})"
                            );
                        }
                    }
                    // Horizontal category labels: disjoint boxes. Rotated ones: parallel lines
                    // at least a line height apart.
                    let category_baseline = texts
                        .iter()
                        .filter(|t| t.angle == 0.0 && t.size == TICK_SIZE)
                        .map(|t| t.y)
                        .fold(0.0f32, f32::max);
                    let flat: Vec<_> = texts
                        .iter()
                        .filter(|t| {
                            t.angle == 0.0 && t.size == TICK_SIZE && t.y == category_baseline
                        })
                        .map(|t| {
                            let w = font.width(&t.text, t.size);
                            (t.x - w / 2.0, t.x + w / 2.0)
                        })
                        .collect();
                    for pair in flat.windows(2) {
                        assert!(pair[0].1 <= pair[1].0, "{count} {len} {kind:?}: {pair:?}");
                    }
                    let rotated: Vec<f32> = texts
                        .iter()
                        .filter(|t| t.angle == -45.0)
                        .map(|t| t.x)
                        .collect();
                    for pair in rotated.windows(2) {
                        let distance = (pair[1] - pair[0]) * SIN45;
                        assert!(distance >= TICK_SIZE, "{count} {len} {kind:?}: {distance}");
                    }
                }
            }
        }
    }

    #[test]
    fn nice_ticks_are_nice() {
        assert_eq!(
            nice_ticks(0.0, 1234.0, 5),
            vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1400.0]
        );
        assert_eq!(
            nice_ticks(-0.3, 5.0, 5),
            vec![-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_ticks(0.0, 1.0, 10).get(3), Some(&0.3));
        assert_eq!(
            nice_ticks(-3.0, 7.0, 5),
            vec![-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(nice_ticks(5.0, 5.0, 5).first(), Some(&0.0));
        assert_eq!(nice_ticks(-5.0, -5.0, 5).last(), Some(&0.0));
        assert_eq!(nice_ticks(0.0, 0.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let odd = [
            (f64::NAN, f64::NAN),
            (f64::NAN, 3.0),
            (f64::INFINITY, f64::NEG_INFINITY),
            (10.0, -10.0),
            (f64::MAX, -f64::MAX),
            (0.0, 5e-324),
            (1e-300, 2e-300),
            (1e15, 1e15 + 1.0),
            (0.1, 0.30000000000000004),
        ];
        for (lo, hi) in odd {
            for target in [0, 1, 5, 1000] {
                let t = nice_ticks(lo, hi, target);
                assert!(t.len() >= 2, "{lo} {hi} {target}: {t:?}");
                assert!(t.windows(2).all(|p| p[0] < p[1]), "{lo} {hi}: {t:?}");
                assert!(t.iter().all(|v| v.is_finite()));
                if lo.is_finite() && hi.is_finite() && lo.abs() < 1e300 && hi.abs() < 1e300 {
                    let eps = lo.abs().max(hi.abs()) * 1e-9;
                    assert!(t[0] <= lo.min(hi) + eps, "{t:?}");
                    assert!(*t.last().unwrap() >= lo.max(hi) - eps, "{t:?}");
                }
            }
        }
        // Steps are 1, 2 or 5 × 10^k.
        for (lo, hi) in [(0.0, 0.037), (0.0, 7.7e9), (-12.0, 999.0), (3.0, 4.0)] {
            let t = nice_ticks(lo, hi, 5);
            let step = t[1] - t[0];
            let m = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-6),
                "{step}"
            );
        }
    }

    /// Random charts from a fixed seed: odd values, hostile and multibyte labels. Rendering may
    /// refuse (an error) but never panics, and what it renders is well-formed.
    #[test]
    fn random_hostile_charts_never_panic() {
        let mut state = 0x5EED_C4A2_7E57_u64;
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let chars = [
            'a',
            'Z',
            ' ',
            '0',
            '<',
            '>',
            '&',
            '"',
            '\'',
            '\u{0}',
            '\n',
            '\u{7f}',
            '\u{85}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{301}',
            'ã',
            '日',
            '本',
            '👍',
            '\u{200d}',
            '👩',
            '🏽',
            'ß',
            'Ж',
            'ا',
            '\u{10ffff}',
            '…',
            '\t',
        ];
        let values = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MAX,
            -f64::MAX,
            5e-324,
            1.0,
            -1.0,
            123_456.789,
            -0.001,
        ];
        let label = |next: &mut dyn FnMut() -> u64| -> String {
            let len = (next() % 40) as usize;
            (0..len)
                .map(|_| chars[(next() % chars.len() as u64) as usize])
                .collect()
        };
        let value_fmt = |v: f64| format!("<{v:e}>&\u{1}");
        for round in 0..36 {
            let kind = [ChartKind::Bar, ChartKind::Line, ChartKind::Pie][round % 3];
            let n = 1 + (next() % if kind == ChartKind::Pie { 12 } else { 24 }) as usize;
            let ns = 1 + (next() % 4) as usize;
            let spec = ChartSpec {
                kind,
                title: label(&mut next),
                categories: (0..n).map(|_| label(&mut next)).collect(),
                series: (0..ns)
                    .map(|_| Series {
                        name: label(&mut next),
                        values: (0..n)
                            .map(|_| {
                                if next() % 3 == 0 {
                                    values[(next() % values.len() as u64) as usize]
                                } else {
                                    (next() % 10_000) as f64 / 7.0
                                }
                            })
                            .collect(),
                    })
                    .collect(),
                x_label: (next() % 2 == 0).then(|| label(&mut next)),
                y_label: (next() % 2 == 0).then(|| label(&mut next)),
            };
            match render(&spec, &value_fmt) {
                Ok(out) => {
                    svg_texts(&out.svg);
                    let p = decode(&out.png);
                    assert_eq!((p.width(), p.height()), (WIDTH, HEIGHT));
                    assert!(!out.svg.contains("NaN") && !out.svg.contains("inf"));
                }
                Err(e) => assert!(
                    matches!(
                        e,
                        ChartError::NegativePieValue { .. }
                            | ChartError::EmptyPie
                            | ChartError::NoData
                    ),
                    "round {round}: {e}"
                ),
            }
        }
    }

    #[test]
    fn clean_drops_controls_and_collapses_space() {
        assert_eq!(clean("  a\n\tb \u{0}c\u{202e}d  "), "a b cd");
        assert_eq!(
            clean("x".repeat(1000).as_str()).chars().count(),
            MAX_LABEL_CHARS
        );
        let mut s = String::new();
        push_escaped(&mut s, "<a href='x'>&\"</a>\u{1}");
        assert_eq!(s, "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(f32::NAN), "0");
    }
}
