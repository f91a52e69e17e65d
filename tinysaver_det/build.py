"""The one builder of a cascade: its models from their specs, its exit rules, its classes, and the
checks that tie them together.

Every assembly goes through here: the front door (:class:`~tinysaver_det.api.TinySaver`, its
``from_operating_point``), ``eval``, ``multistage-run`` and the mmdet plug-in
(:class:`~tinysaver_det.mmdet.TinySaverDetector`, which builds its saver with :func:`build_detector`
and :func:`stage_needs_features`). The rules it owns:

* a stage whose confidence is a router that reads the model's own features (a feature
  post-evaluator) gets that model built with ``features=True``, and an mmdet model, which captures
  none, is refused there by name;
* classes: with a dataset (``category_ids_by_name``) every model answers in the dataset's ids, and
  ``class_map`` (``{model class name: target class name}``) gives renamed classes of the models
  before the last their target's id; without one the last model's classes (``names``) are the
  target, and each earlier model is pointed at them by name (``class_map`` for renamed ones);
* an operating point file (``tinysaver pick``) gives the models (each weights file sha256-checked),
  the exit rules and the class map at once.

The threshold: users give ``t`` (one per stage but the last); it is
:attr:`~tinysaver_det.core.policy.ExitPolicy.threshold` of each stage's exit rule, and
``Cascade(saver, base, threshold)``'s ``threshold``. The frameworks are imported lazily, by the
adapters this builds.

Example::

    from tinysaver_det.build import build_cascade

    cascade = build_cascade(["demo:pico", "demo:s"], t=0.25)        # a 2-stage Cascade
    ladder = build_cascade(["demo:pico", "demo:n", "demo:s"], t=[0.21, 0.07])
    picked = build_cascade(operating_point="runs/pick/operating_point.json")
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from tinysaver_det.core.policy import DEFAULT_MIN_SCORE, ExitPolicy
from tinysaver_det.detection.categories import normalize_name
from tinysaver_det.detection.types import Detector, RemappableDetector, detector_names
from tinysaver_det.errors import TinySaverInputError

#: What a model spec may be (see :func:`build_detector`).
ModelSpec = object


def stage_needs_features(policy: ExitPolicy | None) -> bool:
    """Whether the model a stage's exit rule reads must capture its own features (a feature router).

    >>> stage_needs_features(ExitPolicy(0.25, "mean"))
    False
    """
    if policy is None:
        return False
    from tinysaver_det.detection.router_files import router_needs_saver_features

    return router_needs_saver_features(policy.confidence)


def with_class_map(category_ids_by_name: Mapping[str, int] | None,
                   class_map: Mapping[str, str] | None) -> Mapping[str, int] | None:
    """A dataset's ``{name: id}`` plus each renamed model class (``class_map``: model name -> dataset name)
    under its dataset name's id; None (no dataset) stays None.

    >>> with_class_map({"person": 1}, {"human": "Person"})
    {'person': 1, 'human': 1}
    """
    if category_ids_by_name is None or not class_map:
        return category_ids_by_name
    ids = {normalize_name(name): i for name, i in category_ids_by_name.items()}
    return {**category_ids_by_name, **{model_name: ids[normalize_name(target)] for model_name, target in class_map.items()
                                       if normalize_name(target) in ids}}


def _is_yolo_object(spec) -> bool:
    """An ``ultralytics.YOLO`` (or any Ultralytics model object), told apart without importing Ultralytics."""
    return type(spec).__module__.split(".")[0] == "ultralytics"


def build_detector(
    spec: ModelSpec,
    role: str = "model",
    *,
    category_ids_by_name: Mapping[str, int] | None = None,
    class_map: Mapping[str, str] | None = None,
    device: str | None = None,
    half: bool = False,
    imgsz: int | None = None,
    features: bool = False,
    nms: str | None = None,
    **options,
) -> Detector:
    """A Detector for one model spec.

    Args:
        spec: Ultralytics weights (a path, an official name such as ``yolov8n.pt``, a demo name such
            as ``demo:pico``), an ``ultralytics.YOLO`` object, an mmdet config (``.py``: random weights)
            or a ``(config, checkpoint)`` pair, or any :class:`~tinysaver_det.detection.types.Detector`
            (returned as it is: it was built by its owner).
        role: how the model is named in errors (``saver``, ``base``, ``stage 2``).
        category_ids_by_name: a dataset's ``{name: id}``; None: the model's own class indices.
        class_map: renamed classes of this model, ``{its name: dataset name}`` (with a dataset only).
        device, half, imgsz: the adapter's (None: its default). ``half`` and ``imgsz`` are refused
            for an mmdet model by :func:`~tinysaver_det.adapters.create_detector`.
        features: capture the model's own features (a YOLO only).
        nms: a YOLO model's NMS mode (:mod:`~tinysaver_det.detection.nms_mode`; None: the adapter's
            default, the validator's); not given to an mmdet model, whose NMS is its config's.
        options: more adapter options (``conf``, ``iou``, ``max_det``, ``class_names``, ``checkpoint``...).

    Raises:
        TinySaverInputError: a spec of no known kind, a pair that is not (config, checkpoint), features
            asked of an mmdet model.
    """
    from tinysaver_det.adapters import create_detector, is_mmdet_config, resolve_weights

    ids = with_class_map(category_ids_by_name, class_map)
    common = dict(device=device, half=half, **options)
    if _is_yolo_object(spec):
        return create_detector(spec, ids, imgsz=imgsz, features=features or None, nms=nms, **common)
    if isinstance(spec, (tuple, list)):
        if len(spec) != 2 or not is_mmdet_config(spec[0]):
            raise TinySaverInputError(f"{role}: a pair must be (mmdet config .py, checkpoint), got {spec!r}")
        spec, common["checkpoint"] = spec
    if isinstance(spec, (str, os.PathLike)):
        spec = resolve_weights(spec)
        if is_mmdet_config(spec):
            if features:
                raise TinySaverInputError(f"{role} {spec}: its exit rule reads a YOLO model's own features "
                                          "(a feature router); an mmdet model captures none")
            return create_detector(spec, ids, imgsz=imgsz, **common)
        return create_detector(spec, ids, imgsz=imgsz, features=features or None, nms=nms, **common)
    if isinstance(spec, Detector):
        return spec
    raise TinySaverInputError(
        f"{role}: expected weights (path or name), a YOLO object, an mmdet config or a Detector, got {type(spec).__name__}"
    )


def target_names(detector: Detector, role: str) -> dict[int, str]:
    """The classes a cascade answers in when there is no dataset: ``detector``'s ``names``, required.

    Raises:
        TinySaverInputError: the detector has no ``names``.
    """
    names = detector_names(detector)
    if not names:
        raise TinySaverInputError(
            f"{role} {detector.name!r} has no class names: a Detector used as {role} needs a `names` "
            "dict {class id: name} (the ids its detections carry)"
        )
    return names


def map_onto_names(detector: Detector, names: Mapping[int, str], class_map: Mapping[str, str] | None,
                   role: str = "saver", target: str = "base") -> None:
    """Point ``detector``'s classes at the target's ids (``names``: ``{id: name}``), by name.

    ``class_map`` is ``{detector class name: target class name}`` for renamed classes. A
    :class:`~tinysaver_det.detection.types.RemappableDetector` (the Ultralytics adapter) is re-mapped;
    any other Detector must already answer in the target's ids, with the same names.

    Raises:
        TinySaverInputError: a class_map name the detector or the target lacks, a class of the
            detector that the target lacks, ids/names that are not the target's.
    """
    class_map = dict(class_map or {})
    by_name = {normalize_name(name): index for index, name in names.items()}
    if isinstance(detector, RemappableDetector):
        own = {normalize_name(n) for n in detector.class_names.values()}
        unknown = sorted(k for k in class_map if normalize_name(k) not in own)
        if unknown:
            raise TinySaverInputError(f"class_map: {unknown} are not classes of the {role} {detector.name!r}")
        targets = {name: index for index, name in names.items()}
        for name, target_name in class_map.items():
            if normalize_name(target_name) not in by_name:
                raise TinySaverInputError(
                    f"class_map: {name!r} -> {target_name!r}, but the {target} has no class {target_name!r}"
                )
            targets[name] = by_name[normalize_name(target_name)]
        detector.map_classes(targets, among=f"the {target}'s classes (class_map={{{role} name: {target} name}} "
                                            "maps renamed ones)")
        return
    wrong = {i: n for i, n in target_names(detector, role).items()
             if i not in names or normalize_name(names[i]) != normalize_name(class_map.get(n, n))}
    if wrong:
        raise TinySaverInputError(f"{role} {detector.name!r}: class ids/names {wrong} are not the {target}'s {dict(names)}")


def exit_policies(n_rules: int, policy=None, t=None, confidence="mean",
                  min_score: float = DEFAULT_MIN_SCORE) -> list[ExitPolicy]:
    """One exit rule per stage but the last: ``policy`` (an ExitPolicy, or one per stage) or ``t``
    (one threshold, or one per stage) with ``confidence`` (one, or one per stage) and ``min_score``.

    >>> exit_policies(2, t=[0.3, 0.1], confidence="max")[1]
    ExitPolicy(threshold=0.1, confidence='max', min_score=0.05)

    Raises:
        TinySaverInputError: both or neither of ``policy`` and ``t``, counts that do not fit, a
            threshold below 0 or a min_score outside [0, 1].
    """
    if (policy is None) == (t is None):
        raise TinySaverInputError("give the exit rule either as policy=ExitPolicy(...) or as t= (not both, not neither)")

    def per_stage(value, what: str) -> list:
        values = list(value) if isinstance(value, (list, tuple)) else [value] * n_rules
        if len(values) != n_rules:
            raise TinySaverInputError(f"{what}: {len(values)} given for {n_rules + 1} stages (one per stage but the last)")
        return values

    if policy is not None:
        rules = per_stage(policy, "policy")
        if not all(isinstance(rule, ExitPolicy) for rule in rules):
            raise TinySaverInputError(f"policy must be an ExitPolicy (or one per stage), got {policy!r}")
        return rules
    try:
        return [ExitPolicy(threshold, option, min_score)
                for threshold, option in zip(per_stage(t, "t"), per_stage(confidence, "confidence"))]
    except (TypeError, ValueError) as error:
        raise TinySaverInputError(str(error)) from None


def build_cascade(
    models: Sequence[ModelSpec] | None = None,
    policy: ExitPolicy | Sequence[ExitPolicy] | None = None,
    *,
    t: float | Sequence[float] | None = None,
    confidence="mean",
    min_score: float = DEFAULT_MIN_SCORE,
    operating_point=None,
    category_ids_by_name: Mapping[str, int] | None = None,
    class_map: Mapping[str, str] | None = None,
    device: str | None = None,
    half: bool = False,
    imgsz: int | None = None,
    nms: str | None = None,
    run_base_on_all: bool = False,
):
    """The cascade of ``models`` (cheapest first) under their exit rules, or the one an operating point file records.

    Args:
        models: K >= 2 model specs (see :func:`build_detector`), cheapest first: ``[saver, base]``
            for TinySaver.
        policy: the exit rule(s): one :class:`~tinysaver_det.core.policy.ExitPolicy`, or one per
            stage but the last. Or give ``t``:
        t: exit threshold(s) (``ExitPolicy.threshold``), with ``confidence`` (a name of
            ``CONFIDENCE_FUNCTIONS``, a router file or object; one, or one per stage) and ``min_score``.
        operating_point: an ``operating_point.json`` (``tinysaver pick``; 2 or K stages; a path or an
            :class:`~tinysaver_det.operating_point.OperatingPointFile`): models,
            exit rules and class map at once; then give no ``models``, ``policy`` or ``t``.
        category_ids_by_name: the dataset's ``{name: id}`` (evaluation); None: the last model's
            classes (``names``), the others mapped onto them by name.
        class_map: ``{model class name: target class name}`` for classes of the models before the
            last named differently (an operating point records its own).
        device, half: for every model built here (None/False: each adapter's default).
        imgsz: inference size of the Ultralytics models (an mmdet model's comes from its config).
        nms: the Ultralytics models' NMS mode (None: the validator's; an operating point records its own).
        run_base_on_all: run every stage on every image (``--full``: sweepable records); routing and
            the cost counted are unchanged.

    Returns:
        A :class:`~tinysaver_det.detection.cascade.Cascade` for 2 models (``.saver``, ``.base``,
        ``.policy``), else a :class:`~tinysaver_det.detection.cascade.MultiStageCascade`.

    Raises:
        TinySaverInputError: a wrong spec, rule or class, a changed weights/router file of an
            operating point, fewer than 2 models.
    """
    from tinysaver_det.detection.cascade import Cascade, MultiStageCascade

    detectors, policies = build_stages(models, policy, t=t, confidence=confidence, min_score=min_score,
                                       operating_point=operating_point, category_ids_by_name=category_ids_by_name,
                                       class_map=class_map, device=device, half=half, imgsz=imgsz, nms=nms)
    if len(detectors) == 2:
        return Cascade(detectors[0], detectors[1], policies[0], run_base_on_all=run_base_on_all)
    return MultiStageCascade(detectors, policies, run_all=run_base_on_all)


def build_stages(models: Sequence[ModelSpec] | None = None, policy=None, *, t=None, confidence="mean",
                 min_score: float = DEFAULT_MIN_SCORE, operating_point=None, category_ids_by_name=None,
                 class_map=None, device: str | None = None, half: bool = False, imgsz: int | None = None,
                 nms: str | None = None):
    """The detectors and exit rules of a cascade (what :func:`build_cascade` assembles), for a caller that
    assembles them itself (``multistage-run``'s :class:`~tinysaver_det.detection.cascade.MultiStageCascade`
    for any K, 2 included). Arguments as :func:`build_cascade`'s.

    Returns:
        ``(detectors, policies)``: K detectors, cheapest first, and K - 1 exit rules.
    """
    if operating_point is not None:
        if models is not None or policy is not None or t is not None or nms is not None:
            raise TinySaverInputError("operating_point gives the models, their NMS mode and the exit rule: "
                                      "give no models, policy, t or nms")
        from tinysaver_det.operating_point import OperatingPointFile, read_operating_point

        point = (operating_point if isinstance(operating_point, OperatingPointFile)
                 else read_operating_point(operating_point))
        policies, class_map, n = point.exit_policies(), point.class_map, point.n_stages

        def make(k: int, ids, features: bool) -> Detector:
            return point.build_model(k, ids, device=device, half=half, features=features)
    else:
        if models is None or isinstance(models, (str, os.PathLike)) or len(models) < 2:
            raise TinySaverInputError(f"models: a cascade needs at least 2 models, cheapest first, got {models!r}")
        n = len(models)
        policies = exit_policies(n - 1, policy, t, confidence, min_score)

        def make(k: int, ids, features: bool) -> Detector:
            size = None if _is_mmdet_spec(models[k]) else imgsz  # an mmdet model's size is its test pipeline's
            return build_detector(models[k], _role(k, n), category_ids_by_name=ids, device=device, half=half,
                                  imgsz=size, features=features, nms=nms)
    last = n - 1
    if category_ids_by_name is not None:  # every model answers in the dataset's ids: built cheapest first
        ids = with_class_map(category_ids_by_name, class_map)
        detectors = [make(k, ids, stage_needs_features(policies[k])) for k in range(last)]
        return [*detectors, make(last, category_ids_by_name, False)], policies
    # No dataset: the last model's classes are the answer's, so it is built first.
    final = make(last, None, False)  # the last stage answers every image it reaches: it needs no router
    names = target_names(final, _role(last, n))
    detectors = []
    for k in range(last):
        detectors.append(make(k, None, stage_needs_features(policies[k])))
        map_onto_names(detectors[k], names, class_map, _role(k, n), _role(last, n))
    return [*detectors, final], policies


def _is_mmdet_spec(spec) -> bool:
    """An mmdet config or a ``(config, checkpoint)`` pair."""
    from tinysaver_det.adapters import is_mmdet_config

    return is_mmdet_config(spec) or (isinstance(spec, (tuple, list)) and bool(spec) and is_mmdet_config(spec[0]))


def _role(k: int, n: int) -> str:
    """``saver``/``base`` for a 2-model cascade, ``stage k`` (from 0) for a longer one."""
    if n == 2:
        return ("saver", "base")[k]
    return f"stage {k}"
