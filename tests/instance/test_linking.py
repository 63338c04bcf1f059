"""Cross-slice linking: a lesion that splits, two that touch, one that skips a slice."""

import numpy as np

from medseg.instance.linking import SliceDetections, link_lesions, link_slices

SHAPE = (20, 20)


def _box(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


def _slice(*masks, labels=None, scores=None):
    if not masks:
        return SliceDetections.empty(SHAPE)
    n = len(masks)
    return SliceDetections(np.stack(masks), np.asarray(labels or [1] * n, np.int64),
                           np.asarray(scores or [0.9] * n, np.float32))


def test_a_lesion_that_splits_stays_one_lesion():
    slices = [_slice(_box(5, 15, 5, 15)),                         # one blob
              _slice(_box(5, 15, 5, 9), _box(5, 15, 11, 15)),     # splits into two pieces
              _slice(_box(5, 15, 5, 9), _box(5, 15, 11, 15))]
    ids, lesions = link_slices(slices)
    assert len(lesions) == 1
    assert ids[:, :, 1][6, 6] == ids[:, :, 1][6, 12] == ids[:, :, 0][10, 10] == 1
    assert lesions[1].pixels == 100 + 2 * (40 + 40)


def test_two_touching_lesions_stay_two():
    # Side by side in every slice, sharing a border (columns 9 | 10), never overlapping.
    slices = [_slice(_box(5, 15, 2, 10), _box(5, 15, 10, 18)) for _ in range(4)]
    ids, lesions = link_slices(slices)
    assert len(lesions) == 2
    left, right = ids[8, 5, :], ids[8, 15, :]
    assert len(set(left)) == 1 and len(set(right)) == 1 and left[0] != right[0]
    # A slight drift across slices does not mix them up either.
    drift = [_slice(_box(5, 15, 2 + d, 10 + d), _box(5, 15, 10 + d, 18 + d)) for d in (0, 1, 2)]
    ids, lesions = link_slices(drift)
    assert len(lesions) == 2 and ids[8, 3, 0] == ids[8, 4, 2] and ids[8, 11, 0] == ids[8, 13, 2]


def test_a_lesion_that_skips_a_slice_is_bridged_up_to_max_gap():
    blob = _box(6, 12, 6, 12)
    slices = [_slice(blob), _slice(blob), _slice(), _slice(blob), _slice(blob)]
    ids, lesions = link_slices(slices, max_gap=1)
    assert len(lesions) == 1 and set(np.unique(ids[8, 8, :])) == {0, 1}
    ids, lesions = link_slices(slices, max_gap=0)
    assert len(lesions) == 2 and ids[8, 8, 0] == 1 and ids[8, 8, 3] == 2
    two_gaps = [_slice(blob), _slice(), _slice(), _slice(blob)]
    assert len(link_slices(two_gaps, max_gap=1)[1]) == 2
    assert len(link_slices(two_gaps, max_gap=2)[1]) == 1


def test_overlap_threshold_classes_and_scores():
    a, b = _box(0, 10, 0, 10), _box(0, 10, 8, 18)  # |a n b| = 20, smaller area 100 -> overlap 0.2
    assert len(link_slices([_slice(a), _slice(b)], link_overlap=0.3)[1]) == 2
    assert len(link_slices([_slice(a), _slice(b)], link_overlap=0.2)[1]) == 1
    # Another class never links.
    assert len(link_slices([_slice(a, labels=[1]), _slice(a, labels=[2])])[1]) == 2
    # Within a slice, the higher score owns the overlap; a lesion's score is its best detection's.
    ids, lesions = link_slices([_slice(_box(0, 10, 0, 10), _box(0, 10, 5, 15), scores=[0.6, 0.8])])
    assert ids[5, 7, 0] == 2 and (ids[:, :, 0] == 1).sum() == 50 and (ids[:, :, 0] == 2).sum() == 100
    assert lesions[1].score == np.float32(0.6) and abs(lesions[2].score - 0.8) < 1e-6
    ids, lesions = link_slices([_slice(a, scores=[0.5]), _slice(_box(0, 5, 0, 10), scores=[1.0])])
    assert lesions[1].score == 1.0 and lesions[1].pixels == 150


def test_link_lesions_hysteresis():
    """Two thresholds: faint slices join a lesion that is clear somewhere, a faint lesion alone
    is dropped, and without a link threshold every detection is thresholded on its own."""
    a, b = _box(0, 8, 0, 8), _box(12, 20, 12, 20)  # 64 pixels each
    # lesion A: scores 0.4, 0.9, 0.4 over slices 0-2; lesion B: 0.4 in slice 1 only
    slices = [_slice(a, scores=[0.4]), _slice(a, b, scores=[0.9, 0.4]), _slice(a, scores=[0.4])]
    ids, lesions = link_lesions(slices, 0.8, link_score_threshold=0.3)
    assert list(lesions) == [1] and lesions[1].score == np.float32(0.9)
    assert (ids == 1).sum() == 192 and ids[15, 15, 1] == 0  # A on all 3 slices, B gone
    ids, lesions = link_lesions(slices, 0.8)  # per detection: only the 0.9 slice
    assert list(lesions) == [1] and (ids == 1).sum() == 64 and ids[5, 5, 1] == 1 and not ids[:, :, 0].any()
    ids, lesions = link_lesions(slices, 0.3, link_score_threshold=0.5)  # link above the lesion threshold: no effect
    assert len(lesions) == 2 and (ids == 1).sum() == 192 and (ids == 2).sum() == 64
    ids, lesions = link_lesions(slices, 0.95, link_score_threshold=0.3)
    assert lesions == {} and not ids.any()


def test_no_detections_anywhere():
    ids, lesions = link_slices([_slice(), _slice()])
    assert ids.shape == (*SHAPE, 2) and not ids.any() and lesions == {}
