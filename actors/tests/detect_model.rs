//! Detection core against the real YOLOX model through ONNX Runtime, on real
//! images decoded by ffmpeg. Everything needed is installed by `scripts/setup`;
//! when something is missing these tests fail with a message naming it.

use std::path::{Path, PathBuf};

use nvr_actors::detect::bench::bench_raw;
use nvr_actors::detect::embed::{cosine, OnnxEmbedder, COLOUR_DESCRIPTOR_LEN};
use nvr_actors::detect::frames::read_frames;
use nvr_actors::detect::image::{decode_jpeg, encode_jpeg, resize_to_fit, RgbImage};
use nvr_actors::detect::nms::iou;
use nvr_actors::detect::{Backend, DetectedObject, Detector, DetectorOptions, RuntimeOptions};

/// A model with a `[1,3,H,W]` input whose single output is `[1,3,1,1]`
/// (GlobalAveragePool): loads fine in ONNX Runtime, but is not a detector.
const POOL_HEAD_ONNX: &[u8] = &[
    8, 8, 18, 9, 110, 118, 114, 45, 116, 101, 115, 116, 115, 58, 127, 10, 35, 10, 6, 105, 109, 97,
    103, 101, 115, 18, 6, 111, 117, 116, 112, 117, 116, 34, 17, 71, 108, 111, 98, 97, 108, 65, 118,
    101, 114, 97, 103, 101, 80, 111, 111, 108, 18, 9, 112, 111, 111, 108, 95, 104, 101, 97, 100,
    90, 43, 10, 6, 105, 109, 97, 103, 101, 115, 18, 33, 10, 31, 8, 1, 18, 27, 10, 2, 8, 1, 10, 2,
    8, 3, 10, 8, 18, 6, 104, 101, 105, 103, 104, 116, 10, 7, 18, 5, 119, 105, 100, 116, 104, 98,
    32, 10, 6, 111, 117, 116, 112, 117, 116, 18, 22, 10, 20, 8, 1, 18, 16, 10, 2, 8, 1, 10, 2, 8,
    3, 10, 2, 8, 1, 10, 2, 8, 1, 66, 4, 10, 0, 16, 13,
];
/// A toy re-ID model: `[N,3,64,32]` -> GlobalAveragePool -> `[N,3]`, the mean
/// normalised colour of each crop.
const MEAN_COLOUR_REID_ONNX: &[u8] = &[
    8, 8, 18, 9, 110, 118, 114, 45, 116, 101, 115, 116, 115, 58, 157, 1, 10, 35, 10, 6, 105, 109,
    97, 103, 101, 115, 18, 6, 112, 111, 111, 108, 101, 100, 34, 17, 71, 108, 111, 98, 97, 108, 65,
    118, 101, 114, 97, 103, 101, 80, 111, 111, 108, 10, 38, 10, 6, 112, 111, 111, 108, 101, 100,
    18, 6, 111, 117, 116, 112, 117, 116, 34, 7, 70, 108, 97, 116, 116, 101, 110, 42, 11, 10, 4, 97,
    120, 105, 115, 24, 1, 160, 1, 2, 18, 16, 109, 101, 97, 110, 95, 99, 111, 108, 111, 117, 114,
    95, 114, 101, 105, 100, 90, 33, 10, 6, 105, 109, 97, 103, 101, 115, 18, 23, 10, 21, 8, 1, 18,
    17, 10, 3, 18, 1, 110, 10, 2, 8, 3, 10, 2, 8, 64, 10, 2, 8, 32, 98, 25, 10, 6, 111, 117, 116,
    112, 117, 116, 18, 15, 10, 13, 8, 1, 18, 9, 10, 3, 18, 1, 110, 10, 2, 8, 3, 66, 4, 10, 0, 16,
    13,
];

fn data_dir() -> PathBuf {
    match std::env::var_os("NVR_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")),
    }
}

fn require(rel: &str) -> PathBuf {
    let p = data_dir().join(rel);
    assert!(p.is_file(), "{} is missing; run scripts/setup", p.display());
    p
}

fn dynamic_model() -> PathBuf {
    require("models/yolox_nano_dynamic.onnx")
}

fn frames(rel: &str, start: usize, step: usize, n: usize) -> Vec<RgbImage> {
    let path = require(rel);
    let frames = read_frames(&path, start, step, n).unwrap_or_else(|e| {
        panic!(
            "decoding {} with ffmpeg: {e} (run scripts/setup)",
            path.display()
        )
    });
    assert_eq!(
        frames.len(),
        n,
        "expected {n} frames from {}",
        path.display()
    );
    frames
}

fn detector(model: &Path, input_size: u32) -> Detector {
    let mut opts = DetectorOptions::new(model);
    opts.input_size = input_size;
    opts.threads = 2;
    Detector::load(opts)
        .unwrap_or_else(|e| panic!("loading {}: {e} (run scripts/setup)", model.display()))
}

fn persons(objs: &[DetectedObject]) -> Vec<&DetectedObject> {
    objs.iter().filter(|o| o.label == "person").collect()
}

/// A plausible standing pedestrian in the 768x576 vtest scene.
fn assert_plausible_pedestrian(o: &DetectedObject, img: &RgbImage, ctx: &str) {
    let b = o.bbox;
    for v in b {
        assert!(
            (0.0..=1.0).contains(&v),
            "{ctx}: bbox not normalised: {b:?}"
        );
    }
    assert!(b[2] > b[0] && b[3] > b[1], "{ctx}: empty bbox {b:?}");
    let w_px = (b[2] - b[0]) * img.width as f32;
    let h_px = (b[3] - b[1]) * img.height as f32;
    assert!(
        h_px > w_px * 1.2,
        "{ctx}: person box not tall: {w_px:.0}x{h_px:.0} px {b:?}"
    );
    assert!(
        (0.03..0.5).contains(&(b[3] - b[1])),
        "{ctx}: implausible person height {b:?}"
    );
    assert!((0.3..=1.0).contains(&o.score), "{ctx}: score {}", o.score);
}

#[test]
fn astronaut_is_exactly_one_person() {
    let img = frames("samples/astronaut.png", 0, 1, 1).remove(0);
    assert_eq!((img.width, img.height), (512, 512));
    let mut det = detector(&dynamic_model(), 416);
    assert_eq!(det.model_name(), "yolox_nano_dynamic");
    assert_eq!(det.backend(), "cpu");
    assert_eq!(det.fallback_reason(), None);
    let objs = det.detect(&img, 0.5).unwrap();
    let people = persons(&objs);
    assert_eq!(people.len(), 1, "expected exactly one person, got {objs:?}");
    let p = people[0];
    // Hand-labelled from the picture: hair top to the bottom edge, from her
    // right arm at the left edge to the suit's left side near x = 365 px.
    let expected = [20.0 / 512.0, 15.0 / 512.0, 365.0 / 512.0, 1.0];
    let overlap = iou(&p.bbox, &expected);
    println!(
        "astronaut person {:?} score {:.3} iou {overlap:.3}",
        p.bbox, p.score
    );
    assert!(
        overlap >= 0.6,
        "person box {:?} has IoU {overlap:.3} with {expected:?}",
        p.bbox
    );
    assert_eq!(p.class_id, 0);
    assert!(p.embedding.is_none(), "embeddings were not requested");
}

#[test]
fn vtest_pedestrians_at_each_input_size() {
    // Frames 0, 100, 200, 300: between three and about eight pedestrians each.
    let imgs = frames("samples/vtest.avi", 0, 100, 4);
    let model = dynamic_model();
    for size in [320u32, 416, 640] {
        let mut det = detector(&model, size);
        assert_eq!(det.input_size(), size);
        let mut total = 0;
        for (k, img) in imgs.iter().enumerate() {
            let objs = det.detect(img, 0.3).unwrap();
            let people = persons(&objs);
            println!(
                "size {size} frame {}: {} persons {:?}",
                k * 100,
                people.len(),
                people.iter().map(|p| (p.bbox, p.score)).collect::<Vec<_>>()
            );
            assert!(
                people.len() >= 2,
                "size {size} frame {}: only {} persons: {objs:?}",
                k * 100,
                people.len()
            );
            assert!(
                people.len() <= 15,
                "size {size} frame {}: {} persons: {objs:?}",
                k * 100,
                people.len()
            );
            for p in &people {
                assert_plausible_pedestrian(p, img, &format!("size {size} frame {}", k * 100));
            }
            // Class-aware NMS left no duplicate person boxes.
            for i in 0..people.len() {
                for j in (i + 1)..people.len() {
                    assert!(iou(&people[i].bbox, &people[j].bbox) <= 0.45);
                }
            }
            total += people.len();
        }
        assert!(total >= 10, "size {size}: {total} persons over 4 frames");
    }
}

#[test]
fn frame_zero_finds_the_three_walkers() {
    // Hand-labelled from frame 0 (768x576): three people.
    let expected: [[f32; 4]; 3] = [
        [252.0, 219.0, 284.0, 308.0],
        [499.0, 156.0, 531.0, 233.0],
        [638.0, 239.0, 686.0, 322.0],
    ];
    let img = frames("samples/vtest.avi", 0, 1, 1).remove(0);
    let mut det = detector(&dynamic_model(), 640);
    let objs = det.detect(&img, 0.3).unwrap();
    for e in expected {
        let n = [e[0] / 768.0, e[1] / 576.0, e[2] / 768.0, e[3] / 576.0];
        let best = persons(&objs)
            .iter()
            .map(|p| iou(&p.bbox, &n))
            .fold(0.0f32, f32::max);
        assert!(
            best >= 0.5,
            "no person matches {e:?} (best IoU {best:.2}): {objs:?}"
        );
    }
}

#[test]
fn downscaled_and_jpeg_frames_give_the_same_normalised_boxes() {
    let img = frames("samples/vtest.avi", 0, 1, 1).remove(0);
    let mut det = detector(&dynamic_model(), 416);
    let full = det.detect(&img, 0.3).unwrap();
    // What a camera publishes: downscaled, JPEG-encoded; the detector decodes it.
    let small = resize_to_fit(&img, 480);
    assert_eq!((small.width, small.height), (480, 360));
    let decoded = decode_jpeg(&encode_jpeg(&small, 85).unwrap()).unwrap();
    let via_jpeg = det.detect(&decoded, 0.3).unwrap();
    let (a, b) = (persons(&full), persons(&via_jpeg));
    assert!(!a.is_empty());
    for p in &a {
        let best = b
            .iter()
            .map(|q| iou(&p.bbox, &q.bbox))
            .fold(0.0f32, f32::max);
        assert!(
            best >= 0.6,
            "person {:?} lost after downscale+JPEG: {b:?}",
            p.bbox
        );
    }
}

#[test]
fn label_filter_and_embeddings() {
    let img = frames("samples/vtest.avi", 0, 1, 1).remove(0);
    let mut opts = DetectorOptions::new(dynamic_model());
    opts.threads = 2;
    opts.labels = vec!["person".into()];
    opts.embeddings = true;
    let mut det = Detector::load(opts.clone()).unwrap();
    let objs = det.detect(&img, 0.25).unwrap();
    assert!(objs.len() >= 2, "{objs:?}");
    for o in &objs {
        assert_eq!(o.label, "person");
        let e = o.embedding.as_ref().expect("person without embedding");
        assert_eq!(e.len(), COLOUR_DESCRIPTOR_LEN);
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    }
    opts.labels = vec!["car".into()];
    let mut cars = Detector::load(opts.clone()).unwrap();
    let objs = cars.detect(&img, 0.25).unwrap();
    assert!(
        objs.iter()
            .all(|o| o.label == "car" && o.embedding.is_none()),
        "{objs:?}"
    );
    opts.labels = vec!["unicorn".into()];
    let err = Detector::load(opts).unwrap_err().to_string();
    assert!(err.contains("unicorn"), "{err}");
}

/// The appearance model `scripts/setup` exports (MobileNetV2 to its
/// 320-channel bottleneck) on the walkers of the sample footage: each
/// person's crop two frames later is more alike than any other person's, and the
/// detector appends the model's embedding to the colour descriptor.
#[test]
fn appearance_model_recognises_the_walkers_a_moment_later() {
    let reid = require("models/mobilenetv2_reid.onnx");
    let imgs = frames("samples/vtest.avi", 0, 2, 2);
    let mut opts = DetectorOptions::new(dynamic_model());
    opts.threads = 2;
    opts.labels = vec!["person".into()];
    opts.embeddings = true;
    let mut plain = Detector::load(opts.clone()).unwrap();
    opts.reid_model = Some(reid.clone());
    let mut det = Detector::load(opts).unwrap();
    assert_eq!(det.appearance(), "colour+mobilenetv2_reid");
    assert_eq!(plain.appearance(), "colour");
    let a = det.detect(&imgs[0], 0.4).unwrap();
    let b = det.detect(&imgs[1], 0.4).unwrap();
    assert_eq!(
        a.iter().map(|o| o.bbox).collect::<Vec<_>>(),
        plain
            .detect(&imgs[0], 0.4)
            .unwrap()
            .iter()
            .map(|o| o.bbox)
            .collect::<Vec<_>>(),
        "the appearance model changed the boxes"
    );
    assert!(a.len() >= 3, "{a:?}");
    for o in a.iter().chain(&b) {
        let e = o.embedding.as_ref().expect("person without embedding");
        assert_eq!(e.len(), COLOUR_DESCRIPTOR_LEN + 320);
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    }
    // The model alone: crops of one person two frames apart (matched by box
    // overlap) against every other person of the later frame.
    let mut emb = OnnxEmbedder::load(&reid, &RuntimeOptions::default()).unwrap();
    assert_eq!(emb.input_hw(), (128, 64));
    let ea = emb
        .embed(&imgs[0], &a.iter().map(|o| o.bbox).collect::<Vec<_>>())
        .unwrap();
    let eb = emb
        .embed(&imgs[1], &b.iter().map(|o| o.bbox).collect::<Vec<_>>())
        .unwrap();
    let mut checked = 0;
    for (i, p) in a.iter().enumerate() {
        let (j, overlap) = b
            .iter()
            .enumerate()
            .map(|(j, q)| (j, iou(&p.bbox, &q.bbox)))
            .fold((0, 0.0f32), |best, x| if x.1 > best.1 { x } else { best });
        if overlap < 0.3 {
            continue;
        }
        let same = cosine(&ea[i], &eb[j]);
        for (k, other) in eb.iter().enumerate() {
            if k != j && iou(&p.bbox, &b[k].bbox) < 0.1 {
                let diff = cosine(&ea[i], other);
                assert!(
                    same > diff,
                    "person {:?}: {same:.3} to itself, {diff:.3} to {:?}",
                    p.bbox,
                    b[k].bbox
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} people matched across frames");
    // A model that is not a [N,3,H,W] -> [N,D] embedder is refused at load.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("pool_head.onnx");
    std::fs::write(&bad, POOL_HEAD_ONNX).unwrap();
    let mut opts = DetectorOptions::new(dynamic_model());
    opts.embeddings = true;
    opts.reid_model = Some(bad);
    let err = Detector::load(opts).unwrap_err().to_string();
    assert!(
        err.contains("reid_model") && err.contains("pool_head"),
        "{err}"
    );
}

#[test]
fn fixed_size_model_uses_its_own_input_size() {
    let model = require("models/yolox_nano.onnx");
    let mut det = detector(&model, 640);
    assert_eq!(det.input_size(), 416);
    let img = frames("samples/vtest.avi", 0, 1, 1).remove(0);
    assert!(persons(&det.detect(&img, 0.3).unwrap()).len() >= 2);
}

#[test]
fn wrong_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Not an ONNX file at all.
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    let err = Detector::load(DetectorOptions::new(&text))
        .unwrap_err()
        .to_string();
    println!("text file: {err}");
    assert!(err.contains("notes.onnx"), "{err}");
    assert!(!err.contains('\n'), "multi-line error: {err}");

    // A valid ONNX model whose output is not a detection head.
    let pool = dir.path().join("pool_head.onnx");
    std::fs::write(&pool, POOL_HEAD_ONNX).unwrap();
    let err = Detector::load(DetectorOptions::new(&pool))
        .unwrap_err()
        .to_string();
    println!("wrong output: {err}");
    assert!(
        err.contains("pool_head.onnx") && err.contains("output") && err.contains("[1,3,1,1]"),
        "{err}"
    );
    assert!(!err.contains('\n'), "multi-line error: {err}");

    // The YOLOX model declared as an Ultralytics one.
    let mut opts = DetectorOptions::new(require("models/yolox_nano.onnx"));
    opts.model_type = "yolov8".parse().unwrap();
    let err = Detector::load(opts).unwrap_err().to_string();
    println!("wrong type: {err}");
    assert!(
        err.contains("yolov8") && err.contains("[1,3549,85]"),
        "{err}"
    );

    // Missing file.
    let err = Detector::load(DetectorOptions::new(dir.path().join("absent.onnx")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("absent.onnx") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn unavailable_backend_fails_or_falls_back() {
    let mut opts = DetectorOptions::new(dynamic_model());
    opts.backend = "cuda".parse().unwrap();
    opts.device_id = 0;
    let err = Detector::load(opts.clone()).unwrap_err().to_string();
    println!("cuda: {err}");
    assert!(
        err.contains("cuda") && err.contains("not available"),
        "{err}"
    );

    opts.allow_cpu_fallback = true;
    let mut det = Detector::load(opts).unwrap();
    assert_eq!(det.backend(), "cpu");
    let reason = det.fallback_reason().expect("fallback reason");
    assert!(reason.contains("cuda"), "{reason}");
    let img = frames("samples/astronaut.png", 0, 1, 1).remove(0);
    assert_eq!(persons(&det.detect(&img, 0.5).unwrap()).len(), 1);

    for b in [Backend::Rocm, Backend::CoreMl, Backend::OpenVino] {
        let mut opts = DetectorOptions::new(dynamic_model());
        opts.backend = b;
        let err = Detector::load(opts).unwrap_err().to_string();
        assert!(err.contains(b.as_str()), "{err}");
    }
}

#[test]
fn onnx_embedder_runs_a_real_model_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mean_colour_reid.onnx");
    std::fs::write(&path, MEAN_COLOUR_REID_ONNX).unwrap();
    let mut emb = OnnxEmbedder::load(&path, &RuntimeOptions::default()).unwrap();
    assert_eq!(emb.input_hw(), (64, 32));
    // Left half red, right half blue.
    let mut img = RgbImage::filled(80, 60, [20, 20, 220]);
    for y in 0..60 {
        for x in 0..40 {
            let i = (y * 80 + x) * 3;
            img.data[i..i + 3].copy_from_slice(&[220, 20, 20]);
        }
    }
    let out = emb
        .embed(
            &img,
            &[
                [0.0, 0.0, 0.5, 1.0],
                [0.5, 0.0, 1.0, 1.0],
                [0.05, 0.1, 0.45, 0.9],
            ],
        )
        .unwrap();
    assert_eq!(out.len(), 3);
    for v in &out {
        assert_eq!(v.len(), 3);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    assert!(
        cosine(&out[0], &out[2]) > 0.999,
        "same colour crops differ: {out:?}"
    );
    assert!(
        cosine(&out[0], &out[1]) < 0.9,
        "red and blue crops too similar: {out:?}"
    );
    assert!(emb.embed(&img, &[]).unwrap().is_empty());
}

#[test]
fn raw_benchmark_runs() {
    let model = dynamic_model();
    for size in [320u32, 416] {
        let b = bench_raw(&model, size, 30, 2)
            .unwrap_or_else(|e| panic!("bench_raw: {e} (run scripts/setup)"));
        println!(
            "bench_raw {} size {size}: {:.1} fps, mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms ({} iterations, 2 threads)",
            model.display(),
            b.fps,
            b.mean_ms,
            b.p50_ms,
            b.p99_ms,
            b.iterations
        );
        assert_eq!(b.input_size, size);
        assert_eq!(b.iterations, 30);
        assert!(b.fps > 0.0 && b.p50_ms > 0.0 && b.p99_ms >= b.p50_ms);
    }
}

/// Objects of two runs agree: same count, labels, and scores and boxes
/// within float tolerance.
fn assert_same_objects(a: &[DetectedObject], b: &[DetectedObject], ctx: &str) {
    assert_eq!(a.len(), b.len(), "{ctx}: {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.label, y.label, "{ctx}");
        assert!((x.score - y.score).abs() <= 1e-3, "{ctx}: {x:?} vs {y:?}");
        for k in 0..4 {
            assert!(
                (x.bbox[k] - y.bbox[k]).abs() <= 1e-3,
                "{ctx}: {x:?} vs {y:?}"
            );
        }
    }
}

#[test]
fn batched_results_equal_single_frame_results_on_real_footage() {
    let mut imgs = frames("samples/vtest.avi", 0, 40, 5);
    // Another size in the same batch: its own letterbox geometry.
    imgs.push(frames("samples/astronaut.png", 0, 1, 1).remove(0));
    let mut d = detector(&dynamic_model(), 416);
    assert!(
        d.batchable(),
        "the dynamic model from scripts/setup batches: {:?}",
        d.batch_note()
    );
    let thresholds = [0.3, 0.5, 0.3, 0.4, 0.3, 0.5];
    let singles: Vec<Vec<DetectedObject>> = imgs
        .iter()
        .zip(thresholds)
        .map(|(img, t)| d.detect(img, t).unwrap())
        .collect();
    let refs: Vec<&RgbImage> = imgs.iter().collect();
    let batched = d.detect_batch(&refs, &thresholds).unwrap();
    assert_eq!(batched.len(), imgs.len());
    let people: usize = singles.iter().map(|o| persons(o).len()).sum();
    assert!(people >= 12, "{people} persons in 6 frames");
    for (i, (s, b)) in singles.iter().zip(&batched).enumerate() {
        assert_same_objects(s, b, &format!("frame {i}"));
    }
    // Batches of other sizes split the same way.
    let pair = d.detect_batch(&refs[4..6], &thresholds[4..6]).unwrap();
    assert_same_objects(&singles[4], &pair[0], "pair 0");
    assert_same_objects(&singles[5], &pair[1], "pair 1");
}

#[test]
fn a_model_that_cannot_batch_runs_one_frame_per_call() {
    let imgs = frames("samples/vtest.avi", 0, 50, 2);
    let refs: Vec<&RgbImage> = imgs.iter().collect();
    // Fixed batch dimension.
    let mut fixed = detector(&require("models/yolox_nano.onnx"), 416);
    assert!(!fixed.batchable());
    assert!(
        fixed.batch_note().is_some_and(|n| n.contains("fixed")),
        "{:?}",
        fixed.batch_note()
    );
    // Symbolic batch dimension but a head that reshapes to a batch of 1:
    // the load-time check must find that a batch gives other outputs.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("renamed_batch.onnx");
    let py = data_dir().join("pyenv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing; run scripts/setup",
        py.display()
    );
    let status = std::process::Command::new(&py)
        .args([
            "-c",
            "import sys, onnx\nm = onnx.load(sys.argv[1])\nm.graph.input[0].type.tensor_type.shape.dim[0].dim_param = 'batch'\nfor o in m.graph.output:\n    o.type.tensor_type.shape.dim[0].dim_param = 'batch'\nonnx.save(m, sys.argv[2])",
        ])
        .arg(require("models/yolox_nano.onnx"))
        .arg(&renamed)
        .status()
        .expect("python of scripts/setup");
    assert!(status.success(), "writing {}", renamed.display());
    let mut unpatched = detector(&renamed, 416);
    assert!(
        !unpatched.batchable(),
        "a wrongly batching model was accepted"
    );
    assert!(
        unpatched
            .batch_note()
            .is_some_and(|n| n.contains("batch of 2")),
        "{:?}",
        unpatched.batch_note()
    );
    for d in [&mut fixed, &mut unpatched] {
        let singles: Vec<_> = imgs.iter().map(|i| d.detect(i, 0.4).unwrap()).collect();
        let batched = d.detect_batch(&refs, &[0.4, 0.4]).unwrap();
        for (s, b) in singles.iter().zip(&batched) {
            assert_same_objects(s, b, "one frame per call");
        }
    }
}

#[test]
fn warm_up_measures_each_batch_size() {
    let mut d = detector(&dynamic_model(), 320);
    let t = d.warm_up(&[1, 2], 1).unwrap();
    assert_eq!(t.iter().map(|t| t.batch).collect::<Vec<_>>(), vec![1, 2]);
    assert!(t.iter().all(|t| t.call_ms > 0.0 && t.fps() > 0.0), "{t:?}");
}
