//! MOT-challenge text format: read detections, write tracker output, run a
//! whole sequence through the tracker.
