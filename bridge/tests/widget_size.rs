//! The widget stays small: `widget.js` and `widget.css` together must not exceed 15 KB gzipped
//! (DESIGN §6), whatever gets added to them.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

const BUDGET_BYTES: usize = 15 * 1024;

#[test]
fn the_widget_script_and_styles_fit_in_15_kb_gzipped() {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../web");
    let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
    let mut raw = 0;
    for file in ["widget.js", "widget.css"] {
        let bytes = std::fs::read(format!("{web}/{file}")).expect("the widget file exists");
        raw += bytes.len();
        gzip.write_all(&bytes).unwrap();
    }
    let gzipped = gzip.finish().unwrap().len();
    println!("widget.js + widget.css: {raw} bytes, {gzipped} bytes gzipped");
    assert!(
        gzipped <= BUDGET_BYTES,
        "the widget is {gzipped} bytes gzipped; the budget is {BUDGET_BYTES}"
    );
}
