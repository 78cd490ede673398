//! Tests of the simulator: determinism, well-formed messages, homographies
//! fitted from its calibration points, ground-truth files.

use super::*;
use crate::spatial::Homography;

fn short(preset: NoisePreset, seed: u64) -> SimConfig {
    SimConfig {
        duration_s: 20.0,
        ..SimConfig::preset(preset, seed)
    }
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let a = simulate(&short(NoisePreset::Default, 5));
    let b = simulate(&short(NoisePreset::Default, 5));
    assert_eq!(a, b);
    let c = simulate(&short(NoisePreset::Default, 6));
    assert_ne!(a.messages, c.messages);
}

#[test]
fn messages_are_sorted_and_well_formed() {
    let out = simulate(&short(NoisePreset::Hard, 1));
    assert_eq!(out.messages.len(), 200 * out.cameras.len());
    for w in out.messages.windows(2) {
        assert!((w[0].ts_ns, &w[0].camera) < (w[1].ts_ns, &w[1].camera));
    }
    let mut dets = 0;
    for m in &out.messages {
        for o in &m.objects {
            dets += 1;
            assert!(
                o.bbox.iter().all(|v| (0.0..=1.0).contains(v)),
                "{:?}",
                o.bbox
            );
            assert!(o.bbox[0] < o.bbox[2] && o.bbox[1] < o.bbox[3]);
            let e = o.embedding.as_ref().unwrap();
            assert_eq!(e.len(), 32);
            let n: f32 = e.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-3);
        }
    }
    assert!(dets > 500, "{dets}");
    assert!(!out.gt_floor.is_empty());
}

#[test]
fn calibration_points_give_accurate_homographies() {
    let out = simulate(&short(NoisePreset::Clean, 2));
    for c in &out.cameras {
        assert!(
            c.image_points.len() >= 6,
            "{}: {}",
            c.id,
            c.image_points.len()
        );
        let h = Homography::from_points(&c.image_points, &c.floor_points).unwrap();
        assert!(h.reprojection_error(&c.image_points, &c.floor_points).1 < 0.05);
    }
    // Clean detections project to the floor within a few centimetres of the truth.
    let y = config_yaml(&out);
    assert!(y.starts_with("floors:\n") && y.contains("cameras:\n") && y.contains("calibration:"));
    assert!(!y.contains("url"));
}

#[test]
fn ground_truth_files_are_written() {
    let out = simulate(&short(NoisePreset::Clean, 3));
    let dir = tempfile::tempdir().unwrap();
    write_ground_truth(&out, dir.path()).unwrap();
    let floor = std::fs::read_to_string(dir.path().join("floor_gt.txt")).unwrap();
    assert_eq!(floor.lines().count(), out.gt_floor.len());
    for c in &out.cameras {
        let t = std::fs::read_to_string(dir.path().join(format!("{}.gt.txt", c.id))).unwrap();
        assert_eq!(t.lines().count(), out.gt_camera[&c.id].len());
        if let Some(l) = t.lines().next() {
            assert_eq!(l.split(',').count(), 10);
        }
    }
}
