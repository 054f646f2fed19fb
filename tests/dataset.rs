//! The test-set loaders (`data::dataset`) on small hand-built NIH, CheXpert
//! and latents folders, checked label by label against hand-computed values;
//! every refusal names its variant, file and line. A smoke test, ignored
//! unless asked for (`--ignored`), reads the real NIH label table's first
//! 2000 rows from `/work/shared/data` and fails when the file is not there.

use latent_he::data::dataset::{chexpert, latents, nih, DatasetError, DatasetKind, UncertainPolicy};
use latent_he::data::CsvError;
use ndarray::{array, Array4};
use ndarray_npy::write_npy;
use std::io::Read;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Writes `text` to `root/rel`, creating folders.
fn put(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The file name of a path, for comparisons with error paths.
fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

/// NIH's header, verbatim: 9 names, but 11 CSV fields, since the last two
/// names hold an unquoted comma inside brackets.
const NIH_HEADER: &str = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,\
View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]";

/// An NIH row (11 fields) for `name` with `labels`.
fn nih_row(name: &str, labels: &str) -> String {
    format!("{name},{labels},0,1,57,M,PA,2682,2749,0.143,0.143")
}

/// An NIH label table of `rows` (name, labels), LF line ends.
fn nih_table(rows: &[(&str, &str)]) -> String {
    let mut text = format!("{NIH_HEADER}\n");
    for (name, labels) in rows {
        text += &nih_row(name, labels);
        text.push('\n');
    }
    text
}

/// Four rows: a, b, c, d; images a, c in `images/`, b in
/// `images_001/images/`, d in `images_002/` (plus copies of a); test split
/// d, b, a.
fn nih_fixture() -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    put(
        root,
        "Data_Entry_2017.csv",
        &nih_table(&[
            ("a.png", "Cardiomegaly"),
            ("b.png", "Cardiomegaly|Emphysema"),
            ("c.png", "No Finding"),
            ("d.png", "Hernia|Effusion"),
        ]),
    );
    // a.png also at the root and in images_002/: `images/` wins.
    for rel in [
        "images/a.png",
        "images/c.png",
        "images_001/images/b.png",
        "images_002/d.png",
        "images_002/a.png",
        "a.png",
    ] {
        put(root, rel, "");
    }
    put(root, "test_list.txt", "d.png\nb.png\n\na.png\n");
    dir
}

/// A 15-vector with ones at `hot`.
fn one_hot(hot: &[usize], n: usize) -> Vec<f64> {
    (0..n).map(|i| if hot.contains(&i) { 1.0 } else { 0.0 }).collect()
}

#[test]
fn nih_split_order_labels_and_image_folders() {
    let dir = nih_fixture();
    let root = dir.path();
    let ds = nih(root, None, None).unwrap();
    assert_eq!(ds.kind, DatasetKind::Nih);
    assert_eq!(ds.classes.len(), 15);
    assert_eq!(ds.classes[0], "Atelectasis");
    assert_eq!(ds.classes[12], "Pleural_Thickening");
    assert_eq!(ds.classes[14], "No Finding");
    assert!(ds.latents.is_none());
    let names: Vec<&str> = ds.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["d.png", "b.png", "a.png"]);
    // Effusion = 2, Hernia = 13; Cardiomegaly = 1, Emphysema = 10.
    assert_eq!(ds.samples[0].labels, one_hot(&[2, 13], 15));
    assert_eq!(ds.samples[1].labels, one_hot(&[1, 10], 15));
    assert_eq!(ds.samples[2].labels, one_hot(&[1], 15));
    assert_eq!(ds.samples[0].path, root.join("images_002/d.png"));
    assert_eq!(ds.samples[1].path, root.join("images_001/images/b.png"));
    assert_eq!(ds.samples[2].path, root.join("images/a.png"));
    assert_eq!(ds.label_file, root.join("Data_Entry_2017.csv"));

    let labels = ds
        .labels_for(&strings(&["Effusion", "Cardiomegaly", "No Finding"]))
        .unwrap();
    assert_eq!(labels, array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]);

    // An explicit split and CSV.
    let split = put(root, "mine.txt", "c.png\n");
    let csv = root.join("Data_Entry_2017.csv");
    let ds = nih(root, Some(&csv), Some(&split)).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.samples[0].name, "c.png");
    assert_eq!(ds.samples[0].labels, one_hot(&[14], 15));
    assert_eq!(ds.samples[0].path, root.join("images/c.png"));
}

#[test]
fn nih_without_split_v2020_crlf_quotes_images_at_root() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    // The header quoted properly: 9 fields, rows of 11.
    let header = "\"Image Index\",Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,\
View Position,\"OriginalImage[Width,Height]\",\"OriginalImagePixelSpacing[x,y]\"";
    let text = format!(
        "{header}\r\n{}\r\n\"e.png\",\"Mass|Nodule\",0,1,57,M,PA,2682,2749,0.143,0.143\r\n",
        nih_row("f.png", "Pneumothorax|Consolidation|Edema")
    );
    put(root, "Data_Entry_2017_v2020.csv", &text);
    put(root, "f.png", "");
    put(root, "e.png", "");
    let mut ds = nih(root, None, None).unwrap();
    let names: Vec<&str> = ds.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["f.png", "e.png"]);
    assert_eq!(ds.samples[0].labels, one_hot(&[7, 8, 9], 15));
    assert_eq!(ds.samples[1].labels, one_hot(&[4, 5], 15));
    assert_eq!(ds.samples[1].path, root.join("e.png"));
    ds.truncate(1);
    assert_eq!(ds.samples.len(), 1);
    ds.truncate(5);
    assert_eq!(ds.samples.len(), 1);
}

#[test]
fn nih_refusals() {
    // No table at all.
    let empty = TempDir::new().unwrap();
    match nih(empty.path(), None, None) {
        Err(DatasetError::NotFound { tried, .. }) => {
            let names: Vec<&str> = tried.iter().map(|p| file_name(p)).collect();
            assert_eq!(names, ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"]);
        }
        other => panic!("{other:?}"),
    }

    let dir = nih_fixture();
    let root = dir.path();
    let csv = |text: &str| put(root, "bad.csv", text);
    let load = |csv: &Path| nih(root, Some(csv), None);

    let bad = csv(&nih_table(&[("a.png", "Cardiomegaly"), ("b.png", "Cardiomegaly|Flu")]));
    let err = load(&bad).unwrap_err();
    assert!(
        matches!(&err, DatasetError::UnknownLabel { path, line: 3, label } if *path == bad && label == "Flu"),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.csv") && err.to_string().contains("Flu"));

    let bad = csv(&nih_table(&[("a.png", "Cardiomegaly"), ("a.png", "Hernia")]));
    assert!(matches!(
        load(&bad),
        Err(DatasetError::DuplicateName { line: 3, name, .. }) if name == "a.png"
    ));

    let bad = csv(&format!("{NIH_HEADER}\n\"a.png,Cardiomegaly,0\n"));
    let err = load(&bad).unwrap_err();
    assert!(
        matches!(&err, DatasetError::Csv { path, source: CsvError::UnterminatedQuote { line: 2 } } if *path == bad),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.csv"));

    let bad = csv(&format!("{NIH_HEADER}\n\"a.png\"x,Cardiomegaly\n"));
    assert!(matches!(
        load(&bad),
        Err(DatasetError::Csv {
            source: CsvError::TextAfterQuote { line: 2, found: 'x' },
            ..
        })
    ));

    let bad = csv(&format!("{NIH_HEADER}\na.png,Cardiomegaly,0\n"));
    assert!(matches!(
        load(&bad),
        Err(DatasetError::Csv {
            source: CsvError::FieldCount {
                line: 2,
                found: 3,
                expected: 11
            },
            ..
        })
    ));

    let bad = csv("Image,Finding Labels\na.png,Hernia\n");
    assert!(matches!(
        load(&bad),
        Err(DatasetError::MissingColumn {
            column: "Image Index",
            ..
        })
    ));

    // A split name without a row.
    let split = put(root, "split.txt", "a.png\n\nzz.png\n");
    let err = nih(root, None, Some(&split)).unwrap_err();
    assert!(
        matches!(&err, DatasetError::NotInCsv { path, line: 3, name, .. } if *path == split && name == "zz.png"),
        "{err:?}"
    );
    assert!(err.to_string().contains("split.txt"));

    let split = put(root, "split.txt", "a.png\na.png\n");
    assert!(matches!(
        nih(root, None, Some(&split)),
        Err(DatasetError::DuplicateName { line: 2, .. })
    ));

    let split = put(root, "split.txt", "\n\n");
    assert!(matches!(nih(root, None, Some(&split)), Err(DatasetError::NoSamples { path }) if path == split));

    let missing = root.join("nope.txt");
    assert!(matches!(
        nih(root, None, Some(&missing)),
        Err(DatasetError::NotFound { tried, .. }) if tried == [missing.clone()]
    ));

    // A selected row whose image is nowhere (c.png's image is removed).
    std::fs::remove_file(root.join("images/c.png")).unwrap();
    let split = put(root, "split.txt", "a.png\nc.png\n");
    let err = nih(root, None, Some(&split)).unwrap_err();
    assert!(
        matches!(&err, DatasetError::MissingImage { path, line: 4, image, looked_in }
            if file_name(path) == "Data_Entry_2017.csv" && image == "c.png" && looked_in.len() == 5),
        "{err:?}"
    );
    assert!(err.to_string().contains("c.png"));
}

/// CheXpert's header: 5 metadata columns, then the 14 labels.
const CHEXPERT_HEADER: &str = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,\
Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,\
Pleural Effusion,Pleural Other,Fracture,Support Devices";

fn chexpert_row(path: &str, labels: [&str; 14]) -> String {
    format!("{path},\"Female, 68\",68,Frontal,AP,{}", labels.join(","))
}

/// Root `base/small` with `valid.csv` (CRLF) of three rows resolved three
/// ways: `small/...` against the root (also present stripped, to show the
/// root wins), `other/...` against the root's parent, `zzz/...` stripped.
fn chexpert_fixture() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("small");
    let rows = [
        chexpert_row(
            "small/valid/p1/s1/view1_frontal.jpg",
            [
                "", "", "1.0", "-1.0", "", "0.0", "", "", "-1.0", "", "1.0", "", "", "1.0",
            ],
        ),
        chexpert_row(
            "other/valid/p2/s1/view1_frontal.jpg",
            ["1.0", "0.0", "", "", "", "", "", "", "", "0.0", "", "", "", ""],
        ),
        chexpert_row(
            "zzz/valid/p3/s1/view1_frontal.jpg",
            ["", "-1.0", "0.0", "1", "", "", "-1", "", "", "", "", "", "1.0", "-1.0"],
        ),
    ];
    put(
        &root,
        "valid.csv",
        &format!("{CHEXPERT_HEADER}\r\n{}\r\n", rows.join("\r\n")),
    );
    for rel in [
        "small/small/valid/p1/s1/view1_frontal.jpg",
        "small/valid/p1/s1/view1_frontal.jpg",
        "other/valid/p2/s1/view1_frontal.jpg",
        "small/valid/p3/s1/view1_frontal.jpg",
    ] {
        put(dir.path(), rel, "");
    }
    (dir, root)
}

#[test]
fn chexpert_policies_blanks_and_path_resolution() {
    let (dir, root) = chexpert_fixture();
    let zeros = chexpert(&root, None, UncertainPolicy::default()).unwrap();
    assert_eq!(zeros.kind, DatasetKind::Chexpert);
    assert_eq!(zeros.classes.len(), 14);
    assert_eq!(zeros.classes[0], "No Finding");
    assert_eq!(zeros.classes[13], "Support Devices");
    let base = dir.path();
    let paths: Vec<&Path> = zeros.samples.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(
        paths,
        [
            base.join("small/small/valid/p1/s1/view1_frontal.jpg"),
            base.join("other/valid/p2/s1/view1_frontal.jpg"),
            base.join("small/valid/p3/s1/view1_frontal.jpg"),
        ]
    );
    assert_eq!(zeros.samples[2].name, "zzz/valid/p3/s1/view1_frontal.jpg");
    let z: Vec<&[f64]> = zeros.samples.iter().map(|s| s.labels.as_slice()).collect();
    assert_eq!(
        z,
        [
            &[0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 1., 0., 0., 1.][..],
            &[1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.][..],
            &[0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0., 1., 0.][..],
        ]
    );

    let ones = chexpert(&root, Some(&root.join("valid.csv")), UncertainPolicy::Ones).unwrap();
    let o: Vec<&[f64]> = ones.samples.iter().map(|s| s.labels.as_slice()).collect();
    assert_eq!(
        o,
        [
            &[0., 0., 1., 1., 0., 0., 0., 0., 1., 0., 1., 0., 0., 1.][..],
            &[1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.][..],
            &[0., 1., 0., 1., 0., 0., 1., 0., 0., 0., 0., 0., 1., 1.][..],
        ]
    );

    // A model trained on NIH names asks for classes CheXpert spells otherwise.
    let asked = strings(&["Cardiomegaly", "Effusion", "Edema", "Mass"]);
    match ones.labels_for(&asked) {
        Err(DatasetError::MissingClasses { path, missing }) => {
            assert_eq!(path, root.join("valid.csv"));
            assert_eq!(missing, ["Effusion", "Mass"]);
        }
        other => panic!("{other:?}"),
    }
    let l = ones.labels_for(&strings(&["Support Devices", "Cardiomegaly"])).unwrap();
    assert_eq!(l, array![[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]);
}

#[test]
fn chexpert_refusals() {
    let (_dir, root) = chexpert_fixture();
    let csv = |text: &str| put(&root, "bad.csv", &format!("{CHEXPERT_HEADER}\n{text}\n"));
    let load = |csv: &Path| chexpert(&root, Some(csv), UncertainPolicy::Zeros);
    let mut labels = [""; 14];

    labels[4] = "2.0";
    let bad = csv(&chexpert_row("small/valid/p1/s1/view1_frontal.jpg", labels));
    let err = load(&bad).unwrap_err();
    assert!(
        matches!(&err, DatasetError::BadLabel { path, line: 2, column, text }
            if *path == bad && column == "Lung Lesion" && text == "2.0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.csv"));

    labels[4] = "yes";
    let bad = csv(&chexpert_row("small/valid/p1/s1/view1_frontal.jpg", labels));
    assert!(matches!(load(&bad), Err(DatasetError::BadLabel { line: 2, .. })));

    labels[4] = "";
    let bad = csv(&chexpert_row("nowhere/valid/p9/view1.jpg", labels));
    let err = load(&bad).unwrap_err();
    assert!(
        matches!(&err, DatasetError::MissingImage { line: 2, image, looked_in, .. }
            if image == "nowhere/valid/p9/view1.jpg" && looked_in.len() == 3),
        "{err:?}"
    );

    let bad = csv(&format!(
        "{}\nx.jpg,F,1",
        chexpert_row("small/valid/p1/s1/view1_frontal.jpg", labels)
    ));
    assert!(matches!(
        load(&bad),
        Err(DatasetError::Csv {
            source: CsvError::FieldCount { line: 3, found: 3, .. },
            ..
        })
    ));

    let row = chexpert_row("small/valid/p1/s1/view1_frontal.jpg", labels);
    let bad = csv(&format!("{row}\n{row}"));
    assert!(matches!(load(&bad), Err(DatasetError::DuplicateName { line: 3, .. })));

    let bad = csv("\"small/valid/p1/s1/view1_frontal.jpg,F");
    assert!(matches!(
        load(&bad),
        Err(DatasetError::Csv {
            source: CsvError::UnterminatedQuote { line: 2 },
            ..
        })
    ));

    let bad = put(&root, "bad.csv", "Path,Sex\nx.jpg,F\n");
    assert!(matches!(load(&bad), Err(DatasetError::NoClasses { .. })));
    let bad = put(&root, "bad.csv", "Sex,Edema\nF,1\n");
    assert!(matches!(
        load(&bad),
        Err(DatasetError::MissingColumn { column: "Path", .. })
    ));
    let bad = put(&root, "bad.csv", &format!("{CHEXPERT_HEADER}\n"));
    assert!(matches!(load(&bad), Err(DatasetError::NoSamples { path }) if path == bad));

    let elsewhere = TempDir::new().unwrap();
    match chexpert(elsewhere.path(), None, UncertainPolicy::Zeros) {
        Err(DatasetError::NotFound { tried, .. }) => assert_eq!(tried, [elsewhere.path().join("valid.csv")]),
        other => panic!("{other:?}"),
    }
}

/// Three 2x1x2 latents (float32 unless `f64`) labelled over two classes.
fn latents_fixture(f64: bool) -> TempDir {
    let dir = TempDir::new().unwrap();
    let x = Array4::from_shape_fn((3, 2, 1, 2), |(b, c, _, w)| (b * 4 + c * 2 + w) as f32 * 0.5);
    let path = dir.path().join("latents.npy");
    if f64 {
        write_npy(&path, &x.mapv(f64::from)).unwrap();
    } else {
        write_npy(&path, &x).unwrap();
    }
    put(
        dir.path(),
        "labels.csv",
        "Cardiomegaly,\"Pleural Effusion\"\r\n1,0\r\n0,1\r\n1.0,1.0\r\n",
    );
    dir
}

#[test]
fn latents_with_and_without_names() {
    for f64 in [false, true] {
        let dir = latents_fixture(f64);
        let root = dir.path();
        let ds = latents(root).unwrap();
        assert_eq!(ds.kind, DatasetKind::Latents);
        assert_eq!(ds.classes, ["Cardiomegaly", "Pleural Effusion"]);
        let names: Vec<&str> = ds.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["latent_00000", "latent_00001", "latent_00002"]);
        assert!(ds.samples.iter().all(|s| s.path == root.join("latents.npy")));
        let x = ds.latents.as_ref().unwrap();
        assert_eq!(x.shape(), [3, 2, 1, 2]);
        assert_eq!(x[[2, 1, 0, 1]], 5.5);
        assert_eq!(
            ds.labels_for(&strings(&["Pleural Effusion", "Cardiomegaly"])).unwrap(),
            array![[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
        );
    }

    let dir = latents_fixture(false);
    put(dir.path(), "names.txt", "x.png\r\ny.png\r\nz.png\r\n");
    let mut ds = latents(dir.path()).unwrap();
    let names: Vec<&str> = ds.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["x.png", "y.png", "z.png"]);
    ds.truncate(2);
    assert_eq!(ds.samples.len(), 2);
    let x = ds.latents.as_ref().unwrap();
    assert_eq!(x.shape(), [2, 2, 1, 2]);
    assert_eq!(x[[1, 1, 0, 1]], 3.5);
    assert_eq!(
        ds.labels_for(&strings(&["Cardiomegaly"])).unwrap(),
        array![[1.0], [0.0]]
    );
}

#[test]
fn latents_refusals() {
    let dir = latents_fixture(false);
    let root = dir.path();

    let labels = put(root, "labels.csv", "a,b\n1,0\n0,1\n");
    match latents(root) {
        Err(DatasetError::RowCount {
            path,
            found: 2,
            expected: 3,
            reference,
        }) => {
            assert_eq!(path, labels);
            assert_eq!(reference, root.join("latents.npy"));
        }
        other => panic!("{other:?}"),
    }

    put(root, "labels.csv", "a,b\n1,0\n0,0.5\n1,1\n");
    let err = latents(root).unwrap_err();
    assert!(
        matches!(&err, DatasetError::BadLabel { line: 3, column, .. } if column == "b"),
        "{err:?}"
    );
    assert!(err.to_string().contains("labels.csv"));

    put(root, "labels.csv", "a,\"b\n1,0\n");
    assert!(matches!(
        latents(root),
        Err(DatasetError::Csv {
            source: CsvError::UnterminatedQuote { line: 1 },
            ..
        })
    ));

    put(root, "labels.csv", "a,b\n1,0\n0,1\n1,1\n");
    let names = put(root, "names.txt", "x\ny\nz\nw\n");
    assert!(matches!(
        latents(root),
        Err(DatasetError::RowCount { path, found: 4, expected: 3, .. }) if path == names
    ));
    put(root, "names.txt", "x\ny\nx\n");
    assert!(matches!(
        latents(root),
        Err(DatasetError::DuplicateName { line: 3, .. })
    ));
    put(root, "names.txt", "x\n\nz\n");
    assert!(matches!(latents(root), Err(DatasetError::EmptyName { line: 2, .. })));
    std::fs::remove_file(root.join("names.txt")).unwrap();

    let npy = root.join("latents.npy");
    write_npy(&npy, &ndarray::Array3::<f32>::zeros((3, 2, 2))).unwrap();
    assert!(matches!(latents(root), Err(DatasetError::Npy { path, .. }) if path == npy));
    write_npy(&npy, &Array4::<i32>::zeros((3, 2, 1, 2))).unwrap();
    assert!(matches!(latents(root), Err(DatasetError::Npy { .. })));
    let mut x = Array4::<f32>::zeros((3, 2, 1, 2));
    x[[1, 0, 0, 0]] = f32::NAN;
    write_npy(&npy, &x).unwrap();
    assert!(matches!(latents(root), Err(DatasetError::Npy { .. })));
    std::fs::write(&npy, b"not an npy").unwrap();
    assert!(matches!(latents(root), Err(DatasetError::Npy { .. })));
    write_npy(&npy, &Array4::<f32>::zeros((0, 2, 1, 2))).unwrap();
    assert!(matches!(latents(root), Err(DatasetError::NoSamples { .. })));

    write_npy(&npy, &Array4::<f32>::zeros((3, 2, 1, 2))).unwrap();
    std::fs::remove_file(root.join("labels.csv")).unwrap();
    assert!(matches!(
        latents(root),
        Err(DatasetError::NotFound { tried, .. }) if tried == [root.join("labels.csv")]
    ));
    std::fs::remove_file(&npy).unwrap();
    let err = latents(root).unwrap_err();
    assert!(matches!(&err, DatasetError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("latents.npy"));
}

/// The real NIH table's header and first 2000 rows, with an empty image file
/// per row: every row parses, and the labels agree with a plain split of the
/// unquoted second field.
#[test]
#[ignore = "needs the NIH label table at /work/shared/data/nih-Data_Entry_2017_v2020.csv.gz"]
fn real_nih_table_first_rows() {
    let gz = Path::new("/work/shared/data/nih-Data_Entry_2017_v2020.csv.gz");
    assert!(gz.is_file(), "{} is not here", gz.display());
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().take(2001).collect();
    assert_eq!(lines[0], NIH_HEADER);
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    put(root, "Data_Entry_2017_v2020.csv", &(lines.join("\n") + "\n"));
    std::fs::create_dir(root.join("images")).unwrap();
    for line in &lines[1..] {
        std::fs::write(root.join("images").join(line.split(',').next().unwrap()), b"").unwrap();
    }
    let ds = nih(root, None, None).unwrap();
    assert_eq!(ds.samples.len(), 2000);
    assert_eq!(ds.samples[0].name, "00000001_000.png");
    assert_eq!(ds.samples[0].labels, one_hot(&[1], 15));
    for (sample, line) in ds.samples.iter().zip(&lines[1..]) {
        let findings: Vec<&str> = line.split(',').nth(1).unwrap().split('|').collect();
        for (class, &v) in ds.classes.iter().zip(&sample.labels) {
            assert_eq!(v == 1.0, findings.contains(&class.as_str()), "{line}");
        }
    }
}
