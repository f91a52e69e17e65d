"""Offline studies over the prediction cache (:mod:`tinysaver_det.detection.cache`): no detector runs.

* :mod:`~tinysaver_det.detection.studies.thresholds`: a saver/base pair swept over the exit threshold,
  with the saver-selection figures (``r_match``, ``dC_tr``);
* :mod:`~tinysaver_det.detection.studies.benchmark_table`: the paper's Table 1 (cost at each AP drop)
  for several pairs;
* :mod:`~tinysaver_det.detection.studies.router_comparison`: score functions, the learned
  post-evaluator and the oracle as routers;
* :mod:`~tinysaver_det.detection.studies.depths`: chains of 2 .. K models and their Pareto fronts;
* :mod:`~tinysaver_det.detection.studies.operating_points`: thresholds picked for a target on a
  calibration split and checked on a held-out split.

Their figures are drawn by :mod:`tinysaver_det.plots`. numpy and the standard library only.
"""
