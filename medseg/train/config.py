"""Moved to :mod:`medseg.model.config` (prediction reads the run's config too); this alias keeps
``from medseg.train.config import TrainConfig`` working for scripts (``bench/``). New code imports
:mod:`medseg.model.config`."""

from medseg.model.config import (  # noqa: F401
    AugmentationConfig,
    CascadeConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    PostprocessConfig,
    SamplingConfigYaml,
    ScheduleConfig,
    SlidingWindowConfig,
    TrainConfig,
    config_dict,
    load_config,
    resolve_class_weights,
    resolve_keep_largest,
)
