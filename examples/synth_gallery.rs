//! Renders one synthetic patient without findings and with each of the 14
//! findings alone, to look at the signs side by side:
//! `cargo run --release --example synth_gallery -- OUT_DIR [SEED] [PATIENT] [SIZE]`
//! writes `OUT_DIR/00_No_Finding.png`, `OUT_DIR/01_Atelectasis.png`, ...

use latent_he::data::synth::{encode_png, render, Finding, ImageRecord, Labels, Sex, Split, View};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: synth_gallery OUT_DIR [SEED] [PATIENT] [SIZE]");
        std::process::exit(2);
    };
    let number = |i: usize, default: u64| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    let (seed, patient, size) = (number(2, 0), number(3, 1) as u32, number(4, 256) as u32);
    std::fs::create_dir_all(out).expect("output folder");
    let record = ImageRecord {
        patient,
        follow_up: 0,
        age: 60,
        sex: if patient % 2 == 0 { Sex::Female } else { Sex::Male },
        view: View::Pa,
        split: Split::TrainVal,
        labels: Labels::NONE,
    };
    let cases = std::iter::once(("No_Finding", Labels::NONE)).chain(Finding::ALL.map(|f| (f.name(), Labels::of(&[f]))));
    for (i, (name, labels)) in cases.enumerate() {
        let image = render(seed, &ImageRecord { labels, ..record }, size);
        let path = format!("{out}/{i:02}_{name}.png");
        std::fs::write(&path, encode_png(&image).expect("encodes")).expect("writes");
        println!("{path}");
    }
}
