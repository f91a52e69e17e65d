"""An mmdetection 3.x detector as a :class:`~tinysaver_det.detection.types.Detector`, and the pieces the
mmdet plug-in (:mod:`tinysaver_det.mmdet`) shares with it: FLOPs of an mmdet model and the conversion of
its ``pred_instances`` to :class:`~tinysaver_det.detection.types.Detections`.

Any mmdet config works as a base of the spine's :class:`~tinysaver_det.detection.cascade.Cascade`:
the model is built with ``mmdet.apis.init_detector``, images go through the config's own test pipeline
(as ``mmdet.apis.inference_detector`` does, from arrays), and its classes (``dataset_meta['classes']``,
from the checkpoint) are mapped to the dataset's category ids by name.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from tinysaver_det.framework_warnings import silence_framework_warnings

silence_framework_warnings()  # before mmengine loads pkg_resources

try:
    from mmcv import ops as mmcv_ops
    from mmcv.ops import multi_scale_deform_attn
    from mmcv.transforms import Compose
    from mmdet.apis import init_detector
    from mmdet.models.detectors import TwoStageDetector
    from mmdet.structures import DetDataSample
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.structures import InstanceData
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"{error.msg}: the mmdet adapter and plug-in need mmdetection 3.x; install the tested stack with "
        "`pip install -c constraints.txt -e \".[mmdet]\"` (see docs/setup.md)"
    ) from error

from tinysaver_det.detection.categories import category_lookup
from tinysaver_det.detection.types import DetectorBase, Detections, Prediction
from tinysaver_det.errors import TinySaverInputError
from tinysaver_det.flops import FlopCount, FlopsCache, count_flops, count_flops_without_running
from tinysaver_det.io import sha256_file
from tinysaver_det.timing import ModelClock

# mmcv modules whose arithmetic runs in compiled kernels that torch's dispatcher never sees, so the
# counter cannot count it: multi-scale deformable attention on CUDA (on CPU mmcv falls back to
# grid_sample, which the counter lists as ``grid_sampler_2d``; its linear projections are counted
# either way), deformable convolutions and RoIAlign on every device.
_OPAQUE_MODULES = (
    mmcv_ops.MultiScaleDeformableAttention,
    mmcv_ops.DeformConv2d,
    mmcv_ops.ModulatedDeformConv2d,
    mmcv_ops.RoIAlign,
)


def opaque_modules(model: torch.nn.Module) -> tuple[str, ...]:
    """Names (``mmcv.ops.<class>``) of the compiled mmcv modules in ``model`` whose FLOPs are not counted."""
    return tuple(
        sorted({f"mmcv.ops.{kind.__name__}" for module in model.modules() for kind in _OPAQUE_MODULES
                if isinstance(module, kind)})
    )


#: Named among the uncounted ops when a head's post-processing was left out of the count.
POST_PROCESSING = "predict_by_feat (the heads' post-processing: score filtering, box decoding, NMS)"


def _empty_predictions(*outputs, batch_img_metas, **options) -> list:
    """What a head's ``predict_by_feat`` returns for images with no detections."""
    return [
        InstanceData(bboxes=torch.zeros((0, 4)), scores=torch.zeros((0,)), labels=torch.zeros((0,), dtype=torch.long))
        for _ in batch_img_metas
    ]


class _DeformableAttentionInTorch:
    """Stands for mmcv's CUDA deformable-attention function: its torch version, which fake tensors can
    run (the CUDA kernel reads memory). Same count: the kernel is opaque to the counter, and the torch
    version's sampling and weighting (``grid_sampler_2d``, ``mul``, ``sum``) hold no matrix product."""

    @staticmethod
    def apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        return multi_scale_deform_attn.multi_scale_deformable_attn_pytorch(
            value, spatial_shapes, sampling_locations, attention_weights)


@contextmanager
def _deformable_attention_in_torch():
    kernel = multi_scale_deform_attn.MultiScaleDeformableAttnFunction
    multi_scale_deform_attn.MultiScaleDeformableAttnFunction = _DeformableAttentionInTorch
    try:
        yield
    finally:
        multi_scale_deform_attn.MultiScaleDeformableAttnFunction = kernel


class MMDetFlops:
    """Per-image GFLOPs of an mmdet detector's ``predict`` at a padded input shape ``(h, w)``.

    ``predict`` is counted, not ``_forward``: it is what runs, and some detectors (Co-DETR) do not
    implement ``_forward``. It is counted once per shape on a blank image, without running the model
    (:func:`~tinysaver_det.flops.count_flops_without_running`), in the first of these ways that works:

    1. the whole ``predict`` on fake tensors (mmdet's DETR-family detectors);
    2. ``predict`` on fake tensors with every head's ``predict_by_feat`` (post-processing: score
       filtering, whose output size depends on the scores, and mmcv's compiled NMS) answering no
       boxes: what one-stage heads and Co-DINO need. Post-processing has no convolution or matrix
       product, so the count is the same; :data:`POST_PROCESSING` is named among the uncounted ops.
       Not for two-stage detectors, whose RoI head works on the proposals post-processing makes;
    3. ``predict`` run for real, as before (a warning says so): the parts whose work depends on the
       image (the RoI heads of two-stage detectors) are counted at the blank image's proposals.

    mmcv's compiled NMS is invisible to the counter in every case. On a GPU, ways 1 and 2 run mmcv's
    deformable attention in its torch version (:class:`_DeformableAttentionInTorch`): same count.

    Args:
        model: the mmdet detector.
        running: count on a real forward (way 3) at every shape: the reference the others are tested against.
    """

    def __init__(self, model: torch.nn.Module, running: bool = False) -> None:
        self._model = model
        self._running = running
        self._counts = FlopsCache(self._count_blank_image)
        self._opaque = opaque_modules(model)

    def __call__(self, shape: tuple[int, int]) -> float:
        return self._counts(tuple(int(side) for side in shape)).gflops

    @property
    def uncounted_ops(self) -> tuple[str, ...]:
        """Aten ops the counter saw but does not count, plus the opaque mmcv modules of the model."""
        return tuple(sorted({*self._counts.uncounted_ops, *self._opaque}))

    def _count_blank_image(self, shape: tuple[int, int]) -> FlopCount:
        if self._running:
            return count_flops(self._predict_blank_image(shape))
        try:
            with _deformable_attention_in_torch():
                return count_flops_without_running(self._predict_blank_image(shape), self._model)
        except Exception:  # any op that fake tensors cannot run (see count_flops_without_running): try way 2
            pass
        failure = "two-stage detector"
        if not isinstance(self._model, TwoStageDetector):
            try:
                with _deformable_attention_in_torch():
                    count = count_flops_without_running(self._predict_blank_image(shape, post_processing=False),
                                                        self._model)
                return FlopCount(count.gflops, tuple(sorted({*count.uncounted_ops, POST_PROCESSING})))
            except Exception as error:  # as above: way 3
                failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        warnings.warn(
            f"{type(self._model).__name__}: fake tensors cannot run its predict ({failure}); its GFLOPs at "
            f"{shape[0]}x{shape[1]} are counted on a real forward", stacklevel=2,
        )
        return count_flops(self._predict_blank_image(shape))

    def _predict_blank_image(self, shape: tuple[int, int], post_processing: bool = True):
        """A call of ``predict`` on a blank image of ``shape``, made inside the call (so that it is fake
        when counted without running); without ``post_processing``, the heads answer no boxes."""
        parameter = next(self._model.parameters())
        sample = DetDataSample(metainfo=dict(
            img_shape=shape, batch_input_shape=shape, pad_shape=shape, ori_shape=shape, scale_factor=(1.0, 1.0)
        ))

        def predict():
            if not post_processing:  # instance attributes: count_flops_without_running puts the modules back
                for module in self._model.modules():
                    if hasattr(module, "predict_by_feat"):
                        module.predict_by_feat = _empty_predictions
            image = torch.zeros((1, 3, *shape), device=parameter.device, dtype=parameter.dtype)
            return self._model.predict(image, [sample], rescale=False)

        return predict


def is_cascade_config(config: Config) -> bool:
    """Whether ``config`` is a TinySaver cascade config: its model is a ``TinySaverDetector`` (scope prefix or not)."""
    model = config.get("model")
    return isinstance(model, Mapping) and str(model.get("type", "")).rsplit(".", 1)[-1] == "TinySaverDetector"


def check_base_config(config: Config) -> None:
    """Refuse a TinySaver cascade config (``model.type='TinySaverDetector'``) where a base detector's config is
    expected: mmdet would fail deep inside ``init_detector`` (no ``model.backbone``), naming nothing.

    Raises:
        TinySaverInputError: naming the config.
    """
    if is_cascade_config(config):
        raise TinySaverInputError(
            f"config {config.filename or '(given as a Config)'} is a TinySaver cascade config, not a base detector "
            "config: pass the base's own config (test-mmdet runs a cascade config)"
        )


def instances_to_detections(instances, image_id: int, category_ids: np.ndarray | None = None) -> Detections:
    """mmdet ``pred_instances`` (xyxy ``bboxes``, ``scores``, contiguous ``labels``) as Detections.

    Args:
        instances: an ``InstanceData`` with tensor fields.
        image_id: the image's id.
        category_ids: ``category_ids[label]`` is the dataset id of a label; ``None`` keeps the labels.
    """
    labels = instances.labels.detach().cpu().numpy().astype(np.int64)
    return Detections(
        image_id,
        instances.bboxes.detach().cpu().numpy(),
        instances.scores.detach().cpu().numpy(),
        labels if category_ids is None else category_ids[labels],
    )


class MMDetDetector(DetectorBase):
    """An mmdet detector (config + checkpoint) behind the Detector protocol.

    Args:
        config: an mmdet detector config: a ``.py`` file or an ``mmengine.Config``. Its test pipeline
            (``test_dataloader.dataset.pipeline``) sets the input size, as in mmdet.
        category_ids_by_name: the dataset's ``{category name: id}``; the model's classes map by name.
            ``None``: no dataset, the model's own labels are the ids (:attr:`names`).
        checkpoint: weights to load; their ``meta.dataset_meta.classes`` name the model's classes.
            Without a checkpoint the model keeps random weights and COCO's 80 classes (mmdet's rule).
        device: torch device string (``"cpu"``, ``"cuda:0"``; a bare GPU index such as ``"0"``, as
            Ultralytics and ``tools/eval_coco.py --device`` take it, means that CUDA device).
        cfg_options: overrides merged into the config (``--cfg-options`` style keys).
        name: how the model is named in tables and errors; default: the config's file stem.
    """

    def __init__(
        self,
        config: str | Path | Config,
        category_ids_by_name: Mapping[str, int] | None = None,
        checkpoint: str | Path | None = None,
        *,
        device: str = "cpu",
        cfg_options: dict | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(config, (str, Path)):
            if not Path(config).is_file():
                raise FileNotFoundError(f"mmdet config not found: {config}")
            config = Config.fromfile(str(config))
        check_base_config(config)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        self.name = name or Path(config.filename or "mmdet").stem
        self._config_file = Path(config.filename).resolve() if config.filename else None
        self._checkpoint = None if checkpoint is None else Path(checkpoint).resolve()
        self._device = str(device)
        # palette='random' skips building the test dataset, which init_detector does only for colours.
        self.model = init_detector(
            config, None if checkpoint is None else str(checkpoint), palette="random",
            device=f"cuda:{device}" if str(device).isdigit() else device,
            cfg_options=cfg_options,
        )
        #: ``{label: name}`` of the model itself.
        self.class_names = dict(enumerate(self.model.dataset_meta["classes"]))
        if category_ids_by_name is None:  # no dataset: the model's own labels
            category_ids_by_name = {name: label for label, name in self.class_names.items()}
        self.category_ids = category_lookup(self.class_names, category_ids_by_name, self.name)
        #: ``{output id: class name}``.
        self.names = {int(self.category_ids[label]): str(name) for label, name in self.class_names.items()}
        pipeline = copy.deepcopy(get_test_pipeline_cfg(self.model.cfg))
        pipeline[0].type = "mmdet.LoadImageFromNDArray"  # the cascade hands over decoded BGR arrays
        self.pipeline = Compose(pipeline)
        self._flops = MMDetFlops(self.model)
        self._clock = ModelClock()

    @property
    def uncounted_ops(self) -> tuple[str, ...]:
        """Ops that ran but are not in the GFLOPs (see :class:`MMDetFlops`)."""
        return self._flops.uncounted_ops

    @cached_property
    def settings(self) -> dict:
        """What makes this model's predictions, for a run's ``run.json`` and an operating point:

        ``weights`` (the config file, absolute; None for a Config built in memory) with its
        ``config_sha256``, ``checkpoint`` (None: random weights) with its ``sha256`` (the learned
        weights' hash, as every adapter's ``sha256``), ``category_ids`` (label -> output id) and
        ``device``. The config's sha256 is of the file itself, not of the ``_base_`` files it reads."""
        return {
            "name": self.name,
            "weights": None if self._config_file is None else str(self._config_file),
            "config_sha256": None if self._config_file is None else sha256_file(self._config_file),
            "checkpoint": None if self._checkpoint is None else str(self._checkpoint),
            "sha256": None if self._checkpoint is None else sha256_file(self._checkpoint),
            "category_ids": self.category_ids.tolist(),
            "device": self._device,
        }

    def predict(self, images: Sequence[np.ndarray], image_ids: Sequence[int]) -> Prediction:
        """Detect on a batch of BGR uint8 images: test pipeline, one ``test_step``, boxes in original pixels.

        Seconds cover the pipeline (resize, pad), the forward pass and post-processing, as the
        Ultralytics adapter's do. GFLOPs are counted at the padded batch shape the model ran.
        """
        if len(images) != len(image_ids):
            raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
        if not images:
            return Prediction([], [], [], [])
        def run():
            batch = pseudo_collate(
                [self.pipeline(dict(img=image, img_id=int(image_id))) for image, image_id in zip(images, image_ids)]
            )
            with torch.no_grad():
                return self.model.test_step(batch)

        samples, seconds = self._clock.time(run)
        seconds /= len(images)
        shape = tuple(int(side) for side in samples[0].batch_input_shape)
        gflops = self._flops(shape)
        detections = [
            instances_to_detections(sample.pred_instances, image_id, self.category_ids)
            for sample, image_id in zip(samples, image_ids)
        ]
        n = len(images)
        return Prediction(detections, [gflops] * n, [seconds] * n, [shape] * n)
