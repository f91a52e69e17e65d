# TinySaver on COCO val2017: YOLOv8n saver (Ultralytics, 37.3 AP) -> RTMDet-L base (mmdet, 51.3 AP).
#
#   python tools/test_mmdet.py configs/tinysaver_yolov8n_rtmdet-l_coco.py \
#       --checkpoint rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth
#
# The base is mmdet's own RTMDet-L config; --checkpoint loads its model-zoo weights. The saver's
# yolov8n.pt is downloaded by Ultralytics by name (or give a local path in model.saver.weights).
# Data: mmdet's layout, data/coco/{val2017,annotations/instances_val2017.json}; elsewhere, override
#   --cfg-options test_dataloader.dataset.data_root=/data/coco/ test_evaluator.0.ann_file=/data/coco/annotations/instances_val2017.json
_base_ = ['mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py', './_base_/tinysaver_yolov8n_coco.py']
custom_imports = dict(imports=['tinysaver_det.mmdet'], allow_failed_imports=False)

_base_.model.backbone.init_cfg = None  # inference only: no ImageNet weights to download
model = dict(_delete_=True, base=_base_.model, **_base_.tinysaver)  # saver, threshold: see _base_/

test_evaluator = [_base_.test_evaluator, dict(type='TinySaverRouting')]
custom_hooks = []  # RTMDet's EMA and pipeline-switch hooks serve training only
