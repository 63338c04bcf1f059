"""The second lesion family of the phantom generator (liver metastases, other label names and
numbers) and ``data.classes: auto`` picking each family's lesion class from the labels."""

import numpy as np
import pytest
from scipy import ndimage

from medseg.config import ConfigError
from medseg.data.layout import load_dataset
from medseg.data.phantoms import FAMILY_LABELS, generate_case, write_phantom_dataset
from medseg.instance.config import instance_config_from_dict
from medseg.instance.trainer import resolve_classes


def test_metastases_family_has_its_own_labels_and_lesions_in_the_liver():
    assert FAMILY_LABELS["metastases"] == {"background": 0, "metastasis": 1, "liver": 2, "spleen": 3, "kidney": 4}
    for index in range(3):
        _, lab, info = generate_case(1, "small", index, family="metastases")
        a = lab.array
        assert set(np.unique(a)) <= {0, 1, 2, 3, 4} and info["family"] == "metastases"
        assert all(t["host"] == "liver" for t in info["tumours"]) and 1 <= len(info["tumours"]) <= 6
        cc, n = ndimage.label(a == 1, np.ones((3, 3, 3)))
        assert n == info["n_tumours"]                     # metastases do not touch each other
        for i in range(1, n + 1):                         # each one lies in (touches) the liver
            ring = ndimage.binary_dilation(cc == i, np.ones((3, 3, 3))) & (cc != i)
            assert (a[ring] == 2).any()
    # the default family is unchanged by the option
    a0, l0, i0 = generate_case(0, "small", 1)
    a1, l1, i1 = generate_case(0, "small", 1, family="abdomen")
    assert np.array_equal(a0.array, a1.array) and np.array_equal(l0.array, l1.array) and i0 == i1 and "family" not in i0


def test_classes_auto_picks_each_family_lesion_class(tmp_path):
    cfg = instance_config_from_dict({"task": "instance"})
    assert cfg.data.classes == "auto"
    for family, expect in (("abdomen", {"tumour": 4}), ("metastases", {"metastasis": 1})):
        spec = load_dataset(write_phantom_dataset(tmp_path / family, cases=6, seed=0, family=family))
        assert resolve_classes(cfg, spec.labels, spec) == expect
    named = instance_config_from_dict({"task": "instance", "data": {"classes": ["tumour"]}})
    with pytest.raises(ConfigError, match=r"data.classes: 'tumour' is not a foreground label of this dataset; "
                                          r"use one of metastasis, liver, spleen, kidney"):
        resolve_classes(named, spec.labels, spec)
