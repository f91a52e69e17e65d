# TinySaver on COCO val2017: YOLOv8n saver (Ultralytics, 37.3 AP) -> DINO-4scale R-50 12e base (mmdet, 49.0 AP).
#
#   python tools/test_mmdet.py configs/tinysaver_yolov8n_dino-4scale-r50_coco.py \
#       --checkpoint dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth
#
# Data paths as in tinysaver_yolov8n_rtmdet-l_coco.py (override with --cfg-options).
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', './_base_/tinysaver_yolov8n_coco.py']
custom_imports = dict(imports=['tinysaver_det.mmdet'], allow_failed_imports=False)

_base_.model.backbone.init_cfg = None  # inference only: no ImageNet weights to download
model = dict(_delete_=True, base=_base_.model, **_base_.tinysaver)  # saver, threshold: see _base_/

test_evaluator = [_base_.test_evaluator, dict(type='TinySaverRouting')]
