//! CSV tables: the text table, its numeric columns (all, and `score`'s
//! `label:`/`he:` groups), and the metrics over them.
#![no_main]

use latent_he::data::metrics::evaluate;
use latent_he::data::TextTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = TextTable::parse(text) else {
        return;
    };
    if let Ok(all) = table.numeric("") {
        let _ = evaluate(all.values().view(), all.values().view());
    }
    if let (Ok(labels), Ok(scores)) = (table.numeric("label:"), table.numeric("he:")) {
        let _ = evaluate(labels.values().view(), scores.values().view());
    }
});
